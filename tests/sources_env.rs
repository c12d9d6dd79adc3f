//! The `env` source: the conformance suite over a swappable environment, and its own rules
//! (trimming, quotes kept with a warning, non-UTF-8, `keys` overrides).

mod conformance;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use conformance::{Capture, Fixture};
use credchain::core::{CredentialSource, Environment, ErrorKind, Lifetime, MapEnv, SourceSettings};
use credchain::sources;

/// An environment whose contents the fixture replaces wholesale, as a rotation would.
#[derive(Debug, Default)]
struct SwapEnv(RwLock<MapEnv>);

impl Environment for SwapEnv {
    fn var_os(&self, key: &str) -> Option<OsString> {
        self.0.read().unwrap().var_os(key)
    }
}

struct EnvFixture {
    vars: Mutex<BTreeMap<String, String>>,
    env: Arc<SwapEnv>,
    source: Arc<dyn CredentialSource>,
}

impl EnvFixture {
    fn new() -> Self {
        let env = Arc::new(SwapEnv::default());
        let source = sources::build(
            "env",
            SourceSettings::new("env"),
            toml::Table::new(),
            env.clone(),
        )
        .expect("the env source builds");
        EnvFixture {
            vars: Mutex::default(),
            env,
            source,
        }
    }

    fn swap(&self, change: impl FnOnce(&mut BTreeMap<String, String>)) {
        let mut vars = self.vars.lock().unwrap();
        change(&mut vars);
        *self.env.0.write().unwrap() = MapEnv::new(vars.clone());
    }
}

#[async_trait]
impl Fixture for EnvFixture {
    fn source(&self) -> Arc<dyn CredentialSource> {
        self.source.clone()
    }

    async fn put(&self, key: &str, value: &str) {
        self.swap(|vars| {
            vars.insert(key.to_owned(), value.to_owned());
        });
    }

    async fn remove(&self, key: &str) {
        self.swap(|vars| {
            vars.remove(key);
        });
    }
}

conformance::conformance_tests!(env_conformance, EnvFixture::new());

fn env_source(pairs: &[(&str, &str)], keys: &[(&str, &str)]) -> Arc<dyn CredentialSource> {
    let mut settings = SourceSettings::new("env");
    for (key, location) in keys {
        settings
            .keys
            .insert((*key).to_owned(), (*location).to_owned());
    }
    let env = Arc::new(MapEnv::new(pairs.iter().copied()));
    sources::build("env", settings, toml::Table::new(), env).unwrap()
}

#[tokio::test]
async fn env_key_with_trailing_newline_resolves_to_16_characters() {
    let capture = Capture::start();
    let source = env_source(&[("PREFECT_API_KEY", "pnu_FAKE_KEY_001\n")], &[]);
    let outcome = source.fetch("PREFECT_API_KEY").await;
    capture.record(&outcome);
    let resolved = outcome.unwrap().unwrap();
    assert_eq!(resolved.value.len(), 16);
    assert!(resolved.value.expose() == "pnu_FAKE_KEY_001");
    assert_eq!(resolved.provenance.location, "PREFECT_API_KEY");
    assert_eq!(resolved.lifetime, Lifetime::Static);
    capture.assert_hidden(&["pnu_FAKE_KEY_001"]);
}

#[tokio::test]
async fn env_value_with_inner_newline_is_invalid_and_not_shown() {
    let capture = Capture::start();
    let source = env_source(&[("PREFECT_API_KEY", "pnu_A\nB")], &[]);
    let outcome = source.fetch("PREFECT_API_KEY").await;
    capture.record(&outcome);
    let err = outcome.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.to_string().contains("PREFECT_API_KEY"), "{err}");
    assert!(!capture.text().contains("pnu_A"));
}

#[tokio::test]
async fn env_auth_string_in_quotes_keeps_them_and_warns_naming_the_key() {
    let capture = Capture::start();
    let source = env_source(&[("PREFECT_API_AUTH_STRING", "\"admin:FAKEpass\"")], &[]);
    let outcome = source.fetch("PREFECT_API_AUTH_STRING").await;
    capture.record(&outcome);
    let resolved = outcome.unwrap().unwrap();
    assert!(resolved.value.expose() == "\"admin:FAKEpass\"");

    let logs = capture.text();
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0].contains("PREFECT_API_AUTH_STRING"), "{logs}");
    capture.assert_hidden(&["admin:FAKEpass", "FAKEpass"]);
}

#[tokio::test]
async fn env_whitespace_only_value_is_absent() {
    let source = env_source(&[("PREFECT_API_KEY", " \t\r\n")], &[]);
    assert!(source.fetch("PREFECT_API_KEY").await.unwrap().is_none());
}

#[tokio::test]
async fn env_unset_variable_is_absent() {
    let source = env_source(&[], &[]);
    assert!(source.fetch("PREFECT_API_KEY").await.unwrap().is_none());
}

#[derive(Debug)]
struct NonUtf8Env;

impl Environment for NonUtf8Env {
    fn var_os(&self, _key: &str) -> Option<OsString> {
        Some(OsString::from_vec(b"pnu_FAKE_\xff_BYTES".to_vec()))
    }
}

#[tokio::test]
async fn env_non_utf8_value_is_invalid_and_not_shown() {
    let capture = Capture::start();
    let source = sources::build(
        "env",
        SourceSettings::new("env"),
        toml::Table::new(),
        Arc::new(NonUtf8Env),
    )
    .unwrap();
    let outcome = source.fetch("PREFECT_API_KEY").await;
    capture.record(&outcome);
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Invalid);
    capture.assert_hidden(&["pnu_FAKE_", "_BYTES"]);
}

#[tokio::test]
async fn env_keys_override_reads_another_variable_and_a_json_field() {
    let capture = Capture::start();
    let source = env_source(
        &[
            ("ETL_SECRETS", r#"{"api_key": "pnu_FAKE_JSON_004"}"#),
            ("LEGACY_URL", "http://127.0.0.1:4200/api"),
        ],
        &[
            ("PREFECT_API_KEY", "ETL_SECRETS#api_key"),
            ("PREFECT_API_URL", "LEGACY_URL"),
        ],
    );
    let key = source.fetch("PREFECT_API_KEY").await;
    capture.record(&key);
    let key = key.unwrap().unwrap();
    assert!(key.value.expose() == "pnu_FAKE_JSON_004");
    assert_eq!(key.provenance.location, "ETL_SECRETS#api_key");

    let url = source.fetch("PREFECT_API_URL").await.unwrap().unwrap();
    assert_eq!(url.provenance.location, "LEGACY_URL");
    capture.assert_hidden(&["pnu_FAKE_JSON_004"]);
}
