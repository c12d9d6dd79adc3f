//! No AWS credentials anywhere, and an instance metadata endpoint that accepts connections and
//! never answers: the AWS source must say "not configured" promptly (within its own metadata
//! timeouts), and the chain must move on to the next source.
//!
//! The SDK reads the process environment and `$HOME/.aws` itself, so each test re-runs this
//! test binary as a child with a cleared environment, `HOME` in an empty directory and
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT` pointing at a listener that never accepts (the kernel
//! completes the handshake; nothing ever answers). The child runs the same test function, which
//! sees the marker variable and runs the scenario.
#![cfg(feature = "aws")]

#[path = "conformance/capture.rs"]
mod capture;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use capture::Capture;
use credchain::chain::{Chain, Link};
use credchain::sources::EnvSource;
use credchain_aws::AwsSource;
use credchain_core::{CredentialSource, ErrorKind, MapEnv, ProcessEnv, SourceSettings};

/// Set in the child's environment: run the scenario instead of spawning.
const CHILD: &str = "CREDCHAIN_AWS_NO_CREDENTIALS_CHILD";
/// Not a timing assertion: only a guard that turns a hang into a failure.
const HANG_GUARD: Duration = Duration::from_secs(20);
const KEY: &str = "PREFECT_API_KEY";
const FALLBACK: &str = "pnu_FAKE_FROM_ENV_SOURCE";

#[test]
fn silent_metadata_endpoint_with_a_region_is_not_configured() {
    in_clean_env(
        "silent_metadata_endpoint_with_a_region_is_not_configured",
        &[("AWS_REGION", "us-east-1")],
    );
}

#[test]
fn silent_metadata_endpoint_without_a_region_is_not_configured() {
    in_clean_env(
        "silent_metadata_endpoint_without_a_region_is_not_configured",
        &[],
    );
}

/// In the parent: spawns this test in a clean environment and checks that it passed. In the
/// child: runs the scenario.
fn in_clean_env(test: &str, vars: &[(&str, &str)]) {
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

fn scenario() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let capture = Capture::start();
        let table: toml::Table = toml::from_str("secret_id = 'prod/etl'").unwrap();
        let aws = AwsSource::from_options(SourceSettings::new("aws"), table, &ProcessEnv).unwrap();

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
