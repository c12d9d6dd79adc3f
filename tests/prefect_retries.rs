//! The client's retry layer over a real socket: a fractional `Retry-After` is waited out once
//! (the gap is measured at the server, between the two requests it received), and a server that
//! keeps answering 503 fails after the configured retries with its own error text.

mod prefect_fake;

use std::sync::Arc;
use std::time::Duration;

use credchain::chain::{Chain, Link};
use credchain::config::PrefectSettings;
use credchain::credentials::Credentials;
use credchain::exit::Exit;
use credchain::prefect::{PrefectClient, RequestError};
use credchain::sources::EnvSource;
use credchain_core::{MapEnv, SourceSettings};
use prefect_fake::{prefect_like, Answer, FakePrefect};

async fn client(url: &str, max_retries: u32) -> PrefectClient {
    let env = Arc::new(MapEnv::new([("PREFECT_API_URL", url)]));
    let link = Link {
        source: Arc::new(EnvSource::new(SourceSettings::new("env"), env)),
        settings: SourceSettings::new("env"),
    };
    let settings = PrefectSettings {
        max_retries,
        ..PrefectSettings::default()
    };
    PrefectClient::builder(Credentials::new(Chain::new(vec![link])))
        .settings(&settings)
        .first_backoff(Duration::from_millis(10))
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn fractional_retry_after_is_waited_out_once() {
    let fake = FakePrefect::start(|seen, n| match n {
        0 => Answer::json(429, r#"{"detail":"Too many requests"}"#).with("retry-after", "1.5"),
        _ => prefect_like(seen),
    })
    .await;
    let version = client(&fake.url(), 5).await.server_version().await.unwrap();
    assert_eq!(version, "3.9.1");
    let seen = fake.seen();
    assert_eq!(seen.len(), 2, "exactly one retry");
    let gap = seen[1].at - seen[0].at;
    assert!(
        gap >= Duration::from_millis(1500),
        "the retry came {gap:?} after the 429"
    );
}

#[tokio::test]
async fn persistent_503_fails_after_the_configured_retries_with_the_server_text() {
    let fake = FakePrefect::start(|_, _| {
        Answer::json(503, r#"{"exception_message":"Service Unavailable"}"#)
    })
    .await;
    let error = client(&fake.url(), 5)
        .await
        .read_flows(1)
        .await
        .unwrap_err();
    // One GET /csrf-token (answered 503 six times) is where it stops.
    assert_eq!(fake.seen().len(), 6, "{:?}", fake.lines());
    match &error {
        RequestError::Status {
            status: 503,
            attempts: 6,
            detail,
            ..
        } => assert_eq!(detail, "Service Unavailable"),
        other => panic!("{other:?}"),
    }
    assert_eq!(error.exit(), Exit::WorkFailed);
    assert!(error.to_string().contains(&fake.url()), "{error}");
}

#[tokio::test]
async fn a_smaller_retry_budget_is_honoured() {
    let fake = FakePrefect::start(|_, _| Answer::json(502, "bad gateway")).await;
    let error = client(&fake.url(), 2)
        .await
        .server_version()
        .await
        .unwrap_err();
    assert_eq!(fake.seen().len(), 3);
    assert!(error.to_string().contains("bad gateway"), "{error}");
}
