//! The `aws` source through the credchain binary: a config file naming a JSON secret on moto,
//! `credchain get` printing the key, and a wrong secret key ending in exit 5 with a message
//! that names the secret and no key; a refused endpoint ends in exit 6 with a readable cause.
#![cfg(feature = "aws")]

mod aws_admin;
mod support;

use aws_admin::{unique, Admin};
use support::{assert_no_secret, Cli};

const KEY: &str = "PREFECT_API_KEY";

/// A directory holding a `credchain.toml` with one `aws` source reading `secret_id`.
fn config_dir(secret_id: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[[sources]]\ntype = \"aws\"\nsecret_id = \"{secret_id}\"\n");
    std::fs::write(dir.path().join("credchain.toml"), config).unwrap();
    dir
}

fn cli(admin: &Admin, dir: &tempfile::TempDir, secret_key: &str) -> Cli {
    Cli::new()
        .cwd(dir.path())
        .env("AWS_ACCESS_KEY_ID", &admin.key_id)
        .env("AWS_SECRET_ACCESS_KEY", secret_key)
        .env("AWS_REGION", &admin.region)
        .env("AWS_ENDPOINT_URL", &admin.endpoint)
}

#[tokio::test]
async fn get_prints_the_key_from_a_json_secret() {
    let admin = Admin::new();
    let id = unique("cli");
    let key = format!("pnu_FAKE_CLI_{}", id.len());
    admin
        .create_text(&id, &format!("{{\"{KEY}\": \"{key}\"}}"))
        .await;
    let dir = config_dir(&id);

    let out = cli(&admin, &dir, &admin.secret_key)
        .args(["--config", "credchain.toml", "get", KEY])
        .run();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim_end(), key);
    assert_no_secret(&out.stderr, &[&key, &admin.secret_key]);
}

#[tokio::test]
async fn wrong_secret_key_exits_5_naming_the_secret_not_the_key() {
    let admin = Admin::new();
    let id = unique("cli-denied");
    let key = format!("pnu_FAKE_CLI_DENIED_{}", id.len());
    admin
        .create_text(&id, &format!("{{\"{KEY}\": \"{key}\"}}"))
        .await;
    let dir = config_dir(&id);
    let wrong = format!("{}WRONG", admin.secret_key);

    let out = cli(&admin, &dir, &wrong)
        .args(["--config", "credchain.toml", "get", KEY])
        .run();
    assert_eq!(out.code, Some(5), "denied is exit 5: {}", out.stderr);
    assert!(
        out.stderr.contains(&id),
        "the message names the secret: {}",
        out.stderr
    );
    assert_no_secret(&out.all_output(), &[&key, &wrong, &admin.secret_key]);
}

#[tokio::test]
async fn an_endpoint_that_refuses_connections_exits_6_with_a_readable_cause() {
    let admin = Admin::new();
    let dir = config_dir("cli-refused");
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);

    let out = cli(&admin, &dir, &admin.secret_key)
        .env("AWS_ENDPOINT_URL", &endpoint)
        .args(["--config", "credchain.toml", "get", KEY])
        .run();
    assert_eq!(out.code, Some(6), "unavailable is exit 6: {}", out.stderr);
    assert!(
        out.stderr.contains("could not connect") && out.stderr.contains("Connection refused"),
        "{}",
        out.stderr
    );
    // The causes' own text, not the SDK's internal structures.
    assert!(!out.stderr.contains("ConnectorError {"), "{}", out.stderr);
    assert_no_secret(&out.all_output(), &[&admin.secret_key]);
}
