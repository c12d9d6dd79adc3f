//! The client's rules against a scripted server on paused time: headers, URL joining, auth
//! choice, CSRF, retries, 401 rotation, 403, and that no secret reaches an error or a log.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use credchain_core::{Lifetime, MapEnv, SourceSettings};
use tokio::time::Instant;

use super::fake::{csrf_disabled, reply, with_header, FakeServer, Seen};
use super::transport::TransportError;
use super::*;
use crate::chain::{Chain, Link};
use crate::credentials::fake::{Fake, Step};
use crate::credentials::Credentials;
use crate::exit::{error_chain, Exit};
use crate::sources::EnvSource;

const URL: &str = "http://prefect.test:4200/api";
const KEY_A: &str = "pnu_FAKE_KEY_A_0001";
const KEY_B: &str = "pnu_FAKE_KEY_B_0002";

fn env_link(pairs: &[(&str, &str)]) -> Link {
    let env = Arc::new(MapEnv::new(pairs.iter().copied()));
    Link {
        source: Arc::new(EnvSource::new(SourceSettings::new("env"), env)),
        settings: SourceSettings::new("env"),
    }
}

fn env_creds(pairs: &[(&str, &str)]) -> Credentials {
    Credentials::new(Chain::new(vec![env_link(pairs)]))
}

/// The URL from the environment, the key from a fake store with these steps.
fn rotating_creds(steps: &[Step], bound: u64) -> (Credentials, Arc<Fake>) {
    let fake = Fake::keyed(API_KEY, Lifetime::Remote { expires_in: None }, steps);
    let store = Link {
        source: fake.clone(),
        settings: SourceSettings::new("fake"),
    };
    let chain = Chain::new(vec![env_link(&[("PREFECT_API_URL", URL)]), store]);
    let creds = Credentials::with_rejection_backoff(chain, Duration::from_secs(bound));
    (creds, fake)
}

async fn client(creds: Credentials, server: &Arc<FakeServer>) -> PrefectClient {
    PrefectClient::builder(creds)
        .transport(server.clone())
        .build()
        .await
        .unwrap()
}

/// A plain server: CSRF off, health true, version, flows.
fn plain(seen: &Seen) -> Result<transport::Incoming, TransportError> {
    match seen.path.split('?').next().unwrap() {
        "/api/csrf-token" => csrf_disabled(),
        "/api/health" => reply(200, "true"),
        "/api/admin/version" => reply(200, r#""3.9.1""#),
        "/api/flows/filter" => reply(200, r#"[{"id":"1","name":"main-etl","extra":1}]"#),
        "/api/flows/count" => reply(200, "1"),
        "/api/flows/" => reply(201, r#"{"id":"1","name":"main-etl","tags":[]}"#),
        _ => reply(404, r#"{"detail":"Not Found"}"#),
    }
}

fn accepts_only(
    key: &'static str,
) -> impl Fn(&Seen) -> Result<transport::Incoming, TransportError> {
    move |seen| {
        if seen.header("authorization") == format!("Bearer {key}") {
            plain(seen)
        } else {
            reply(401, r#"{"detail":"missing or unknown API key"}"#)
        }
    }
}

#[tokio::test(start_paused = true)]
async fn every_request_carries_version_agent_and_bearer_key() {
    let server = FakeServer::new(plain);
    let c = client(
        env_creds(&[("PREFECT_API_URL", URL), (API_KEY, KEY_A)]),
        &server,
    )
    .await;
    assert_eq!(c.auth_mode(), AuthMode::Bearer);
    let flows = c.read_flows(1).await.unwrap();
    assert_eq!(flows[0].name, "main-etl");
    assert_eq!(
        server.lines(),
        ["GET /api/csrf-token", "POST /api/flows/filter"]
    );
    for seen in server.seen() {
        assert_eq!(seen.header("x-prefect-api-version"), "0.8.4");
        assert!(seen.header("user-agent").starts_with("credchain/"));
        assert_eq!(seen.header("authorization"), format!("Bearer {KEY_A}"));
        assert!(seen.headers.get("authorization").unwrap().is_sensitive());
    }
    let post = &server.seen()[1];
    assert_eq!(post.header("content-type"), "application/json");
    assert_eq!(post.body.as_deref(), Some(&br#"{"limit":1}"#[..]));
    assert_eq!(server.seen()[0].header("content-type"), "");
}

#[tokio::test(start_paused = true)]
async fn auth_string_is_sent_as_basic_and_nothing_as_nothing() {
    let server = FakeServer::new(plain);
    let pairs = [("PREFECT_API_URL", URL), (AUTH_STRING, "admin:FAKEpass")];
    let c = client(env_creds(&pairs), &server).await;
    assert_eq!(c.auth_mode(), AuthMode::Basic);
    c.server_version().await.unwrap();
    assert_eq!(
        server.seen()[0].header("authorization"),
        "Basic YWRtaW46RkFLRXBhc3M="
    );

    let server = FakeServer::new(plain);
    let c = client(env_creds(&[("PREFECT_API_URL", URL)]), &server).await;
    assert_eq!(c.auth_mode(), AuthMode::None);
    c.server_version().await.unwrap();
    assert!(server.seen()[0].headers.get("authorization").is_none());
}

#[tokio::test(start_paused = true)]
async fn api_and_api_slash_send_the_same_paths() {
    let mut lines = Vec::new();
    for url in [URL, "http://prefect.test:4200/api/"] {
        let server = FakeServer::new(plain);
        let c = client(env_creds(&[("PREFECT_API_URL", url)]), &server).await;
        c.health().await.unwrap();
        c.read_flows(1).await.unwrap();
        c.create_flow("main-etl").await.unwrap();
        lines.push(server.lines());
    }
    assert_eq!(lines[0], lines[1]);
    assert_eq!(
        lines[0],
        [
            "GET /api/health",
            "GET /api/csrf-token",
            "POST /api/flows/filter",
            "POST /api/flows/"
        ]
    );
}

async fn setup_error(pairs: &[(&str, &str)]) -> (SetupError, Arc<FakeServer>) {
    let server = FakeServer::new(plain);
    let error = PrefectClient::builder(env_creds(pairs))
        .transport(server.clone())
        .build()
        .await
        .unwrap_err();
    (error, server)
}

#[tokio::test]
async fn both_key_and_auth_string_fail_before_any_request() {
    let pairs = [
        ("PREFECT_API_URL", URL),
        (API_KEY, KEY_A),
        (AUTH_STRING, "admin:FAKEpass"),
    ];
    let (error, server) = setup_error(&pairs).await;
    assert!(matches!(error, SetupError::ChooseAuth { .. }), "{error:?}");
    assert_eq!(error.exit(), Exit::Usage);
    assert!(server.seen().is_empty());
    let text = format!("{} {}", error_chain(&error), error.hint());
    assert!(
        !text.contains(KEY_A) && !text.contains("FAKEpass"),
        "{text}"
    );
}

#[tokio::test]
async fn cloud_url_without_key_fails_before_any_request() {
    let cloud = "https://api.prefect.cloud/api/accounts/a/workspaces/w";
    let (error, server) = setup_error(&[("PREFECT_API_URL", cloud)]).await;
    assert!(
        matches!(error, SetupError::RequireCloudKey { .. }),
        "{error:?}"
    );
    assert_eq!(error.exit(), Exit::Usage);
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn url_without_api_path_fails_before_any_request() {
    let (error, server) = setup_error(&[("PREFECT_API_URL", "http://127.0.0.1:4200")]).await;
    assert!(matches!(
        error,
        SetupError::ParseApiUrl(UrlError::CheckApiPath { .. })
    ));
    assert_eq!(error.exit(), Exit::Usage);
    assert!(
        error.hint().contains("http://127.0.0.1:4200/api"),
        "{}",
        error.hint()
    );
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn missing_url_is_a_missing_key() {
    let (error, _) = setup_error(&[(API_KEY, KEY_A)]).await;
    assert!(matches!(error, SetupError::FindApiUrl));
    assert_eq!(error.exit(), Exit::KeyNotFound);
}

/// A server with CSRF protection on; `invalid_first` refuses the first token once.
fn csrf_server(invalid_first: bool) -> Arc<FakeServer> {
    let issued = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(Mutex::new(!invalid_first));
    FakeServer::new(move |seen| {
        if seen.path.starts_with("/api/csrf-token?client=") {
            let n = issued.fetch_add(1, Ordering::SeqCst);
            let body =
                format!(r#"{{"token":"tok{n}","client":"c","expiration":"2999-01-01T00:00:00Z"}}"#);
            return reply(200, &body);
        }
        if seen.method != reqwest::Method::GET {
            if seen.header("prefect-csrf-token").is_empty()
                || seen.header("prefect-csrf-client").is_empty()
            {
                return reply(403, r#"{"detail":"Missing CSRF token."}"#);
            }
            let mut done = refused.lock().unwrap();
            if !*done {
                *done = true;
                return reply(
                    403,
                    r#"{"detail":"Invalid CSRF token or client identifier."}"#,
                );
            }
        }
        plain(seen)
    })
}

#[tokio::test(start_paused = true)]
async fn csrf_token_is_fetched_once_and_sent_on_writes_only() {
    let server = csrf_server(false);
    let c = client(env_creds(&[("PREFECT_API_URL", URL)]), &server).await;
    c.create_flow("main-etl").await.unwrap();
    c.read_flows(1).await.unwrap();
    c.server_version().await.unwrap();
    let seen = server.seen();
    assert_eq!(
        server.lines(),
        [
            "GET /api/csrf-token",
            "POST /api/flows/",
            "POST /api/flows/filter",
            "GET /api/admin/version"
        ]
    );
    let client_id = seen[0].path.split("client=").nth(1).unwrap().to_string();
    for post in &seen[1..3] {
        assert_eq!(post.header("prefect-csrf-token"), "tok0");
        assert_eq!(post.header("prefect-csrf-client"), client_id);
    }
    assert_eq!(seen[3].header("prefect-csrf-token"), "");
}

#[tokio::test(start_paused = true)]
async fn invalid_csrf_token_is_fetched_again_and_the_request_resent_once() {
    let server = csrf_server(true);
    let c = client(env_creds(&[("PREFECT_API_URL", URL)]), &server).await;
    c.create_flow("main-etl").await.unwrap();
    assert_eq!(
        server.lines(),
        [
            "GET /api/csrf-token",
            "POST /api/flows/",
            "GET /api/csrf-token",
            "POST /api/flows/"
        ]
    );
    assert_eq!(server.seen()[3].header("prefect-csrf-token"), "tok1");
}

#[tokio::test(start_paused = true)]
async fn csrf_off_is_remembered_and_cloud_never_asks() {
    let server = FakeServer::new(plain);
    let c = client(env_creds(&[("PREFECT_API_URL", URL)]), &server).await;
    c.create_flow("a").await.unwrap();
    c.create_flow("b").await.unwrap();
    assert_eq!(
        server.lines(),
        [
            "GET /api/csrf-token",
            "POST /api/flows/",
            "POST /api/flows/"
        ]
    );

    let cloud = "https://api.prefect.cloud/api/accounts/a/workspaces/w";
    let server = FakeServer::new(|_: &Seen| reply(200, r#"{"id":"1","name":"a"}"#));
    let c = client(
        env_creds(&[("PREFECT_API_URL", cloud), (API_KEY, KEY_A)]),
        &server,
    )
    .await;
    c.create_flow("a").await.unwrap();
    assert_eq!(server.lines(), ["POST /api/accounts/a/workspaces/w/flows/"]);
}

#[tokio::test(start_paused = true)]
async fn fractional_retry_after_is_honoured() {
    let calls = Arc::new(AtomicUsize::new(0));
    let server = FakeServer::new(move |seen| {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return with_header(
                reply(429, r#"{"detail":"slow down"}"#),
                "retry-after",
                "1.5",
            );
        }
        plain(seen)
    });
    let c = client(env_creds(&[("PREFECT_API_URL", URL)]), &server).await;
    assert_eq!(c.server_version().await.unwrap(), "3.9.1");
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "one retry");
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_millis(1500), "waited {gap:?}");
    assert!(gap <= Duration::from_millis(1800), "waited {gap:?}");
}

#[tokio::test(start_paused = true)]
async fn persistent_503_fails_after_the_retries_with_the_server_text() {
    let server =
        FakeServer::new(|_: &Seen| reply(503, r#"{"exception_message":"Service Unavailable"}"#));
    let c = client(env_creds(&[("PREFECT_API_URL", URL)]), &server).await;
    let started = Instant::now();
    let error = c.server_version().await.unwrap_err();
    assert_eq!(server.seen().len(), 1 + DEFAULT_MAX_RETRIES as usize);
    assert!(
        matches!(
            error,
            RequestError::Status {
                status: 503,
                attempts: 6,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.exit(), Exit::WorkFailed);
    let text = error.to_string();
    assert!(
        text.contains("Service Unavailable") && text.contains(URL),
        "{text}"
    );
    // 1 + 2 + 4 + 8 + 16 s, each ±20 %.
    let waited = started.elapsed().as_secs_f64();
    assert!((24.8..=37.2).contains(&waited), "{waited}");
}

#[tokio::test(start_paused = true)]
async fn refused_connection_fails_at_once_before_any_answer() {
    let server = FakeServer::new(|_: &Seen| Err(TransportError::Refused));
    let c = client(env_creds(&[("PREFECT_API_URL", URL)]), &server).await;
    let error = c.health().await.unwrap_err();
    assert_eq!(server.seen().len(), 1);
    assert_eq!(error.exit(), Exit::Unreachable);
    assert_eq!(error.kind(), "connection_refused");
    assert!(error.to_string().contains("prefect.test:4200"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_fails_after_one_timeout_before_any_answer() {
    let server = FakeServer::new(|_: &Seen| Err(TransportError::Timeout));
    let c = client(env_creds(&[("PREFECT_API_URL", URL)]), &server).await;
    let error = c.health().await.unwrap_err();
    assert_eq!(server.seen().len(), 1, "not retried");
    assert_eq!(error.kind(), "timeout");
    assert!(
        error.hint().contains("sent no whole answer"),
        "{}",
        error.hint()
    );
}

#[tokio::test(start_paused = true)]
async fn refused_connection_is_retried_once_the_server_answered() {
    let calls = Arc::new(AtomicUsize::new(0));
    let server = FakeServer::new(move |seen| match calls.fetch_add(1, Ordering::SeqCst) {
        1 | 2 => Err(TransportError::Refused),
        _ => plain(seen),
    });
    let c = client(env_creds(&[("PREFECT_API_URL", URL)]), &server).await;
    c.health().await.unwrap();
    c.health().await.unwrap();
    assert_eq!(server.seen().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn tls_failures_are_never_retried() {
    let calls = Arc::new(AtomicUsize::new(0));
    let server = FakeServer::new(move |seen| match calls.fetch_add(1, Ordering::SeqCst) {
        0 => plain(seen),
        _ => Err(TransportError::Tls(
            "the certificate is signed by an unknown authority".into(),
        )),
    });
    let c = client(env_creds(&[("PREFECT_API_URL", URL)]), &server).await;
    c.health().await.unwrap();
    let error = c.health().await.unwrap_err();
    assert_eq!(server.seen().len(), 2);
    assert_eq!(error.kind(), "tls");
    assert!(
        error.to_string().contains("prefect.test")
            && error.to_string().contains("unknown authority")
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_401s_cost_one_read_of_the_store() {
    let (creds, fake) = rotating_creds(&[Step::Value(KEY_A), Step::Value(KEY_B)], 30);
    let server = FakeServer::new(accepts_only(KEY_B));
    let c = client(creds, &server).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.server_version().await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), "3.9.1");
    }
    assert_eq!(fake.reads(), 2, "the first read and one after the rotation");
    let sent: Vec<String> = server
        .seen()
        .iter()
        .map(|s| s.header("authorization"))
        .collect();
    assert!(sent
        .iter()
        .all(|h| *h == format!("Bearer {KEY_A}") || *h == format!("Bearer {KEY_B}")));
    assert_eq!(sent.iter().filter(|h| h.ends_with(KEY_B)).count(), 50);
}

#[tokio::test(start_paused = true)]
async fn lagging_store_is_read_again_after_a_backoff() {
    let a = Step::Value(KEY_A);
    let (creds, fake) = rotating_creds(&[a, a, a, Step::Value(KEY_B)], 30);
    let server = FakeServer::new(accepts_only(KEY_B));
    let c = client(creds, &server).await;
    let started = Instant::now();
    assert_eq!(c.server_version().await.unwrap(), "3.9.1");
    let sent: Vec<String> = server
        .seen()
        .iter()
        .map(|s| s.header("authorization"))
        .collect();
    assert_eq!(
        sent,
        [format!("Bearer {KEY_A}"), format!("Bearer {KEY_B}")],
        "A once, then B"
    );
    assert_eq!(fake.reads(), 4);
    assert!(started.elapsed() >= Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn key_that_stays_rejected_fails_with_exit_4_naming_the_source() {
    let (creds, _fake) = rotating_creds(&[Step::Value(KEY_A)], 5);
    let server = FakeServer::new(accepts_only(KEY_B));
    let c = client(creds, &server).await;
    let started = Instant::now();
    let error = c.server_version().await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert_eq!(server.seen().len(), 1, "the rejected key is not sent again");
    assert_eq!(error.exit(), Exit::Unauthorized);
    let text = format!("{} {}", error_chain(&error), error.hint());
    assert!(text.contains("fake") && text.contains(API_KEY), "{text}");
    assert!(text.contains("same value"), "{text}");
    assert!(!text.contains(KEY_A), "{text}");
}

#[tokio::test(start_paused = true)]
async fn forbidden_is_reported_and_never_retried_with_a_new_key() {
    let (creds, fake) = rotating_creds(&[Step::Value(KEY_A), Step::Value(KEY_B)], 30);
    let server = FakeServer::new(|seen: &Seen| match seen.method {
        reqwest::Method::GET => plain(seen),
        _ => reply(403, r#"{"detail":"read-only API key"}"#),
    });
    let c = client(creds, &server).await;
    let error = c.create_flow("main-etl").await.unwrap_err();
    assert_eq!(error.exit(), Exit::Forbidden);
    assert!(error.to_string().contains("read-only API key"), "{error}");
    assert_eq!(fake.reads(), 1);
    assert_eq!(server.lines(), ["GET /api/csrf-token", "POST /api/flows/"]);
}

#[tokio::test(start_paused = true)]
async fn unauthorized_without_credentials_says_to_set_one() {
    let server = FakeServer::new(|_: &Seen| reply(401, r#"{"exception_message":"Unauthorized"}"#));
    let c = client(env_creds(&[("PREFECT_API_URL", URL)]), &server).await;
    let error = c.server_version().await.unwrap_err();
    assert_eq!(error.exit(), Exit::Unauthorized);
    assert!(
        error.hint().contains("PREFECT_API_AUTH_STRING"),
        "{}",
        error.hint()
    );
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn health_answered_by_the_ui_means_the_api_path_is_wrong() {
    for answer in [reply(404, r#"{"detail":"Not Found"}"#), {
        let mut html = reply(200, "<!DOCTYPE html><html></html>");
        if let Ok(a) = html.as_mut() {
            a.headers
                .insert("content-type", "text/html".parse().unwrap());
        }
        html
    }] {
        let answer = Mutex::new(Some(answer));
        let server = FakeServer::new(move |_: &Seen| answer.lock().unwrap().take().unwrap());
        let c = client(
            env_creds(&[("PREFECT_API_URL", "http://h:4200/prefect")]),
            &server,
        )
        .await;
        let error = c.health().await.unwrap_err();
        assert_eq!(error.exit(), Exit::Usage);
        assert!(
            error.hint().contains("http://h:4200/prefect/api"),
            "{}",
            error.hint()
        );
    }
}

/// Collects everything logged while it is the default subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn no_secret_reaches_a_log_line_or_an_error() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let a = Step::Value(KEY_A);
    let (creds, _) = rotating_creds(&[a, a, Step::Value(KEY_B)], 30);
    let c = client(creds, &FakeServer::new(accepts_only(KEY_B))).await;
    c.read_flows(1).await.unwrap();
    let (creds, _) = rotating_creds(&[a], 3);
    let c = client(creds, &FakeServer::new(accepts_only(KEY_B))).await;
    let error = c.read_flows(1).await.unwrap_err();
    tracing::error!(error = %error_chain(&error), debug = ?error, "final");

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("prefect request"),
        "debug lines were captured: {logs}"
    );
    for secret in [KEY_A, KEY_B, "FAKE_KEY"] {
        assert!(!logs.contains(secret), "{secret} leaked into: {logs}");
    }
}
