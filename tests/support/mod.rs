//! Shared helpers for integration tests: the addresses of the test servers that scripts/test
//! starts, per-test private servers, running the credchain binary, and secret-leak checks.
//!
//! Use from a test file with `mod support;`. Every accessor panics when its variable is missing:
//! a test that needs a server fails, it never skips. See docs/testing.md.
#![allow(dead_code, unused_imports)] // each test binary uses only part of this module

mod cli;
mod gateway;
mod prefect;
mod process;
mod secrets;

pub use cli::{run_credchain, Cli, CliOutput};
pub use gateway::{Gateway, Role};
pub use prefect::PrefectServer;
pub use secrets::assert_no_secret;

use std::path::PathBuf;

/// The value of a `CREDCHAIN_TEST_*` variable; panics with how to get it when it is not set.
pub fn test_var(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{name} is not set: run the tests through scripts/test, which starts the servers \
             (or `scripts/test-servers start` and `. .test-servers/env` for a manual run)"
        ),
    }
}

/// Prefect server A (no auth, services on), e.g. `http://127.0.0.1:PORT/api`.
pub fn prefect_url() -> String {
    test_var("CREDCHAIN_TEST_PREFECT_URL")
}

/// Prefect server B, which requires HTTP Basic auth with [`prefect_auth_string`].
pub fn prefect_auth_url() -> String {
    test_var("CREDCHAIN_TEST_PREFECT_AUTH_URL")
}

/// The `user:password` that Prefect server B expects (`PREFECT_API_AUTH_STRING`).
pub fn prefect_auth_string() -> String {
    test_var("CREDCHAIN_TEST_PREFECT_AUTH_STRING")
}

/// Prefect server C, with CSRF protection on.
pub fn prefect_csrf_url() -> String {
    test_var("CREDCHAIN_TEST_PREFECT_CSRF_URL")
}

/// The shared bearer-key gateway in front of Prefect A, e.g. `http://127.0.0.1:PORT/api`.
/// Do not rotate its keys: start a private [`Gateway`] for that.
pub fn gateway_url() -> String {
    test_var("CREDCHAIN_TEST_GATEWAY_URL")
}

/// A read-write key of the shared gateway.
pub fn gateway_rw_key() -> String {
    test_var("CREDCHAIN_TEST_GATEWAY_RW_KEY")
}

/// A read-only key of the shared gateway.
pub fn gateway_ro_key() -> String {
    test_var("CREDCHAIN_TEST_GATEWAY_RO_KEY")
}

/// `postgres://etl:…@127.0.0.1:PORT/etl`: database and owner `etl`, password auth over TCP.
pub fn postgres_url() -> String {
    test_var("CREDCHAIN_TEST_POSTGRES_URL")
}

/// The OpenBao dev server (Vault API), e.g. `http://127.0.0.1:PORT`.
pub fn vault_addr() -> String {
    test_var("CREDCHAIN_TEST_VAULT_ADDR")
}

/// The OpenBao dev server's root token.
pub fn vault_token() -> String {
    test_var("CREDCHAIN_TEST_VAULT_TOKEN")
}

/// The moto server (AWS API with SigV4 verification), e.g. `http://127.0.0.1:PORT`.
pub fn aws_endpoint() -> String {
    test_var("CREDCHAIN_TEST_AWS_ENDPOINT")
}

/// Access key id of moto's allow-all IAM user.
pub fn aws_access_key_id() -> String {
    test_var("CREDCHAIN_TEST_AWS_ACCESS_KEY_ID")
}

/// Secret access key of moto's allow-all IAM user.
pub fn aws_secret_access_key() -> String {
    test_var("CREDCHAIN_TEST_AWS_SECRET_ACCESS_KEY")
}

/// The AWS region the tests use (`us-east-1`).
pub fn aws_region() -> String {
    test_var("CREDCHAIN_TEST_AWS_REGION")
}

/// The `bao` binary (OpenBao CLI and server).
pub fn bao_bin() -> PathBuf {
    test_var("CREDCHAIN_TEST_BAO_BIN").into()
}

/// The `nginx` binary.
pub fn nginx_bin() -> PathBuf {
    test_var("CREDCHAIN_TEST_NGINX_BIN").into()
}

/// The test venv's python (has prefect, boto3, moto).
pub fn python_bin() -> PathBuf {
    test_var("CREDCHAIN_TEST_PYTHON").into()
}

/// The test venv's `prefect` command.
pub fn prefect_bin() -> PathBuf {
    test_var("CREDCHAIN_TEST_PREFECT_BIN").into()
}

/// A migrated, empty Prefect database to copy into a new server's home.
pub fn prefect_template_db() -> PathBuf {
    test_var("CREDCHAIN_TEST_PREFECT_TEMPLATE_DB").into()
}

/// The directory of this test run's servers (logs, and the registry of spawned servers that
/// scripts/test stops if a test could not).
pub fn run_dir() -> PathBuf {
    test_var("CREDCHAIN_TEST_RUN_DIR").into()
}
