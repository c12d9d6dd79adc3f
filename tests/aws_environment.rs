//! The AWS source where the SDK reads the process environment and `$HOME/.aws` itself:
//! no credentials anywhere with an instance metadata endpoint that accepts connections and never
//! answers ("not configured" promptly, and the chain moves on), and credentials from a profile.
//!
//! Each test re-runs this test binary as a child with a cleared environment, `HOME` in a fresh
//! directory and `AWS_EC2_METADATA_SERVICE_ENDPOINT` pointing at a listener that never accepts
//! (the kernel completes the handshake; nothing ever answers). The child runs the same test
//! function, which sees the marker variable and runs the scenario.
#![cfg(feature = "aws")]

mod aws_admin;
#[path = "conformance/capture.rs"]
mod capture;
mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use aws_admin::{unique, Admin};
use capture::Capture;
use credchain::chain::{Chain, Link};
use credchain::sources::EnvSource;
use credchain_aws::AwsSource;
use credchain_core::{CredentialSource, ErrorKind, MapEnv, ProcessEnv, SourceSettings};

/// Set in the child's environment: run the scenario instead of spawning.
const CHILD: &str = "CREDCHAIN_AWS_ENVIRONMENT_CHILD";
/// Not a timing assertion: only a guard that turns a hang into a failure.
const HANG_GUARD: Duration = Duration::from_secs(20);
const KEY: &str = "PREFECT_API_KEY";
const FALLBACK: &str = "pnu_FAKE_FROM_ENV_SOURCE";

#[test]
fn silent_metadata_endpoint_with_a_region_is_not_configured() {
    in_clean_env(
        "silent_metadata_endpoint_with_a_region_is_not_configured",
        &[("AWS_REGION", "us-east-1")],
        no_credentials,
    );
}

#[test]
fn silent_metadata_endpoint_without_a_region_is_not_configured() {
    in_clean_env(
        "silent_metadata_endpoint_without_a_region_is_not_configured",
        &[],
        no_credentials,
    );
}

#[test]
fn aws_profile_supplies_credentials_region_and_endpoint() {
    let vars = profile_vars(&[("AWS_PROFILE", "moto")]);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    in_clean_env(
        "aws_profile_supplies_credentials_region_and_endpoint",
        &vars,
        || from_profile("", &[]),
    );
}

#[test]
fn profile_named_in_the_config_wins_over_key_variables() {
    let vars = profile_vars(&[
        ("AWS_ACCESS_KEY_ID", "AKIAFAKEWRONGWRONG00"),
        ("AWS_SECRET_ACCESS_KEY", "FAKEwrongSECRETwrong"),
    ]);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    in_clean_env(
        "profile_named_in_the_config_wins_over_key_variables",
        &vars,
        || from_profile("profile = 'moto'", &["FAKEwrongSECRETwrong"]),
    );
}

/// In the parent: spawns this test in a clean environment and checks that it passed. In the
/// child: runs `scenario`.
fn in_clean_env(test: &str, vars: &[(&str, &str)], scenario: fn()) {
    if std::env::var_os(CHILD).is_some() {
        return scenario();
    }
    let home = tempfile::tempdir().unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let output = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env_clear()
        .env(CHILD, "1")
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint)
        .envs(vars.iter().copied())
        .output()
        .expect("run this test binary as a child");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the child failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the child did not run the scenario:\n{text}"
    );
    drop(silent);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn aws_source(options: &str) -> AwsSource {
    let table: toml::Table = toml::from_str(options).unwrap();
    AwsSource::from_options(SourceSettings::new("aws"), table, &ProcessEnv).unwrap()
}

/// No credentials: the fetch and `diagnose` say "not configured", and a chain moves on.
fn no_credentials() {
    runtime().block_on(async {
        let capture = Capture::start();
        let aws = aws_source("secret_id = 'prod/etl'");

        let outcome = tokio::time::timeout(HANG_GUARD, aws.fetch(KEY))
            .await
            .expect("the AWS source hung on a silent metadata endpoint");
        capture.record(&outcome);
        let err = outcome.unwrap_err();
        println!("aws fetch: {}: {err} ({:?})", err.kind(), err.hint());
        assert_eq!(err.kind(), ErrorKind::NotConfigured, "{err}");

        let diagnosis = tokio::time::timeout(HANG_GUARD, aws.diagnose())
            .await
            .expect("diagnose hung");
        assert_eq!(diagnosis.unwrap_err().kind(), ErrorKind::NotConfigured);

        let chain = Chain::new(vec![link(Arc::new(aws), "aws"), link(env_source(), "env")]);
        let found = tokio::time::timeout(HANG_GUARD, chain.resolve(KEY))
            .await
            .expect("the chain hung")
            .expect("the chain moves past the unconfigured AWS source");
        assert_eq!(found.resolved.provenance.source, "env");
        capture.assert_hidden(&[FALLBACK]);
    });
}

/// The moto test variables for the child (the parent panics when they are missing), with a
/// profile `moto` written into the child's `HOME` by the scenario, plus `extra`.
fn profile_vars(extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        ("CREDCHAIN_TEST_AWS_ENDPOINT", support::aws_endpoint()),
        ("CREDCHAIN_TEST_AWS_REGION", support::aws_region()),
        (
            "CREDCHAIN_TEST_AWS_ACCESS_KEY_ID",
            support::aws_access_key_id(),
        ),
        (
            "CREDCHAIN_TEST_AWS_SECRET_ACCESS_KEY",
            support::aws_secret_access_key(),
        ),
    ];
    vars.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    vars
}

/// Writes `~/.aws/config` and `~/.aws/credentials` with a profile `moto`, whose region and
/// endpoint are the only ones set anywhere.
fn write_profile(home: &Path, admin: &Admin) {
    let dir = home.join(".aws");
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "[profile moto]\nregion = {}\nendpoint_url = {}\n",
        admin.region, admin.endpoint
    );
    std::fs::write(dir.join("config"), config).unwrap();
    let credentials = format!(
        "[moto]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        admin.key_id, admin.secret_key
    );
    std::fs::write(dir.join("credentials"), credentials).unwrap();
}

/// Reads a secret with credentials, region and endpoint from the profile `moto`.
fn from_profile(extra_options: &str, hidden: &[&str]) {
    runtime().block_on(async {
        let capture = Capture::start();
        let admin = Admin::new();
        write_profile(Path::new(&std::env::var("HOME").unwrap()), &admin);
        let id = unique("profile");
        let key = format!("pnu_FAKE_PROFILE_{}", id.len());
        admin
            .create_text(&id, &format!("{{\"{KEY}\": \"{key}\"}}"))
            .await;
        let aws = aws_source(&format!("secret_id = '{id}'\n{extra_options}"));

        let found = aws
            .fetch(KEY)
            .await
            .unwrap()
            .expect("the key through the profile");
        assert_eq!(found.value.expose(), key);
        let details = aws.diagnose().await.unwrap().details.join("\n");
        assert!(details.contains("credentials from Profile"), "{details}");
        assert!(
            details.contains(&format!("region {}", admin.region)),
            "{details}"
        );
        let endpoint = format!("endpoint {}", admin.endpoint);
        assert!(details.contains(&endpoint), "{details}");
        capture.record_debug(&details);
        let mut secrets = vec![key.as_str(), admin.secret_key.as_str()];
        secrets.extend(hidden);
        capture.assert_hidden(&secrets);
    });
}

fn link(source: Arc<dyn CredentialSource>, name: &str) -> Link {
    Link {
        source,
        settings: SourceSettings::new(name),
    }
}

fn env_source() -> Arc<dyn CredentialSource> {
    let env = MapEnv::new([(KEY, FALLBACK)]);
    Arc::new(EnvSource::new(SourceSettings::new("env"), Arc::new(env)))
}
