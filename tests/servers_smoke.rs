//! Smoke test of the test infrastructure: every shared server that scripts/test starts answers,
//! and the per-test spawners (Gateway, PrefectServer), the CLI runner and the leak check work.

mod support;

use reqwest::{Client, StatusCode};
use support::{Gateway, PrefectServer, Role};

const FLOWS_FILTER: &str = "/flows/filter";
const FLOWS_CREATE: &str = "/flows/";
const GW_KEY_RW: &str = "pnu_FAKE_SMOKE_RW_0001";
const GW_KEY_RO: &str = "pnu_FAKE_SMOKE_RO_0001";
const GW_KEY_RW_NEW: &str = "pnu_FAKE_SMOKE_RW_0002";

fn client() -> Client {
    Client::new()
}

async fn get_status(url: &str) -> StatusCode {
    client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .status()
}

/// POST a JSON body with an optional bearer key; returns the status.
async fn post(url: &str, body: &str, bearer: Option<&str>) -> StatusCode {
    let mut request = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(key) = bearer {
        request = request.bearer_auth(key);
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
        .status()
}

#[tokio::test]
async fn prefect_servers_answer_and_enforce_their_settings() {
    for base in [
        support::prefect_url(),
        support::prefect_auth_url(),
        support::prefect_csrf_url(),
    ] {
        assert_eq!(
            get_status(&format!("{base}/health")).await,
            StatusCode::OK,
            "{base}/health"
        );
    }
    let plain = support::prefect_url();
    assert_eq!(
        post(&format!("{plain}{FLOWS_FILTER}"), "{}", None).await,
        StatusCode::OK
    );

    let auth = support::prefect_auth_url();
    let filter = format!("{auth}{FLOWS_FILTER}");
    assert_eq!(post(&filter, "{}", None).await, StatusCode::UNAUTHORIZED);
    let (user, password) = support::prefect_auth_string()
        .split_once(':')
        .map(|(u, p)| (u.to_owned(), p.to_owned()))
        .unwrap();
    let authed = client()
        .post(&filter)
        .basic_auth(user, Some(password))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(authed.status(), StatusCode::OK);

    let csrf = support::prefect_csrf_url();
    assert_eq!(
        post(&format!("{csrf}{FLOWS_FILTER}"), "{}", None).await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn shared_gateway_checks_keys() {
    let gw = support::gateway_url();
    assert_eq!(get_status(&format!("{gw}/health")).await, StatusCode::OK);
    let filter = format!("{gw}{FLOWS_FILTER}");
    assert_eq!(
        post(&filter, "{}", Some(&support::gateway_rw_key())).await,
        StatusCode::OK
    );
    assert_eq!(
        post(&filter, "{}", Some(&support::gateway_ro_key())).await,
        StatusCode::OK
    );
    assert_eq!(
        post(&filter, "{}", Some("pnu_FAKE_UNKNOWN")).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn postgres_accepts_the_etl_user() {
    let (db, connection) = tokio_postgres::connect(&support::postgres_url(), tokio_postgres::NoTls)
        .await
        .expect("connect to postgres");
    tokio::spawn(connection);
    let row = db
        .query_one("SELECT current_user::text, current_database()::text", &[])
        .await
        .expect("query");
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("etl".to_owned(), "etl".to_owned())
    );
}

#[tokio::test]
async fn openbao_answers_with_the_root_token() {
    let addr = support::vault_addr();
    assert_eq!(
        get_status(&format!("{addr}/v1/sys/health")).await,
        StatusCode::OK
    );
    let mounts = client()
        .get(format!("{addr}/v1/sys/mounts"))
        .header("X-Vault-Token", support::vault_token())
        .send()
        .await
        .unwrap();
    assert_eq!(mounts.status(), StatusCode::OK);
    assert_eq!(
        get_status(&format!("{addr}/v1/sys/mounts")).await,
        StatusCode::FORBIDDEN
    );
    assert!(
        support::bao_bin().is_file(),
        "CREDCHAIN_TEST_BAO_BIN is not a file"
    );
}

#[tokio::test]
async fn moto_answers_and_has_credentials() {
    let endpoint = support::aws_endpoint();
    assert_eq!(
        get_status(&format!("{endpoint}/moto-api/")).await,
        StatusCode::OK
    );
    assert!(
        !support::aws_access_key_id().is_empty() && !support::aws_secret_access_key().is_empty()
    );
    assert_eq!(support::aws_region(), "us-east-1");
}

#[tokio::test]
async fn private_gateway_enforces_and_rotates_keys() {
    let mut gw = Gateway::start(
        &support::prefect_url(),
        &[(GW_KEY_RW, Role::Rw), (GW_KEY_RO, Role::Ro)],
    );
    let filter = format!("{}{FLOWS_FILTER}", gw.url());
    let create = format!("{}{FLOWS_CREATE}", gw.url());
    assert_eq!(
        get_status(&format!("{}/health", gw.url())).await,
        StatusCode::OK
    );
    let denied = client()
        .post(&filter)
        .bearer_auth("pnu_FAKE_UNKNOWN")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    assert!(
        denied.headers().contains_key("www-authenticate"),
        "401 without WWW-Authenticate"
    );
    assert_eq!(post(&filter, "{}", Some(GW_KEY_RW)).await, StatusCode::OK);
    assert_eq!(
        post(&create, r#"{"name":"smoke-flow"}"#, Some(GW_KEY_RO)).await,
        StatusCode::FORBIDDEN
    );

    gw.set_keys(&[(GW_KEY_RW_NEW, Role::Rw)]);
    assert_eq!(
        post(&filter, "{}", Some(GW_KEY_RW)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&filter, "{}", Some(GW_KEY_RW_NEW)).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn private_prefect_server_starts_empty() {
    let server = PrefectServer::start(&[]);
    let flows = client()
        .post(format!("{}{FLOWS_FILTER}", server.url()))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(flows.status(), StatusCode::OK);
    assert_eq!(flows.text().await.unwrap(), "[]");
}

#[test]
fn credchain_binary_runs_with_a_clean_environment() {
    let out = support::run_credchain(&["--help"], &[("PREFECT_API_KEY", "pnu_FAKE_SMOKE_HELP")]);
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert!(
        out.stdout.contains("credchain") || out.stdout.contains("Usage"),
        "unexpected --help output"
    );
    support::assert_no_secret(&out.all_output(), &["pnu_FAKE_SMOKE_HELP"]);
}

#[test]
fn assert_no_secret_passes_when_absent() {
    support::assert_no_secret("token=[REDACTED]", &["pnu_FAKE_x", "hunter2"]);
}

#[test]
#[should_panic(expected = "secret #1 (7 bytes) leaked")]
fn assert_no_secret_names_the_leak_by_index() {
    support::assert_no_secret("password is hunter2", &["pnu_FAKE_x", "hunter2"]);
}

#[test]
#[should_panic(expected = "is not set: run the tests through scripts/test")]
fn missing_server_variable_fails_the_test() {
    support::test_var("CREDCHAIN_TEST_SURELY_NOT_SET");
}
