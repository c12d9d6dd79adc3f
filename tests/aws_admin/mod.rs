//! Test helpers for the AWS source: an SDK client on the moto server (with the IAM key that
//! scripts/test created) to create and stage secrets, unique names, and building sources.
#![allow(dead_code)] // each test binary uses part of this module

use std::sync::atomic::{AtomicUsize, Ordering};

use credchain_aws::sdk::aws_credential_types::Credentials;
use credchain_aws::sdk::aws_sdk_secretsmanager::config::{BehaviorVersion, Region};
use credchain_aws::sdk::aws_sdk_secretsmanager::primitives::Blob;
use credchain_aws::sdk::aws_sdk_secretsmanager::{Client, Config};
use credchain_aws::AwsSource;
use credchain_core::{MapEnv, SourceSettings};

use crate::support;

/// A client on moto with the allow-all IAM key, and that key for the sources under test.
pub struct Admin {
    /// The SDK client.
    pub client: Client,
    /// moto's address.
    pub endpoint: String,
    /// The region the tests use.
    pub region: String,
    /// The IAM access key id.
    pub key_id: String,
    /// The IAM secret access key.
    pub secret_key: String,
}

impl Admin {
    /// A client from the `CREDCHAIN_TEST_AWS_*` variables (panics when they are missing).
    pub fn new() -> Admin {
        let endpoint = support::aws_endpoint();
        let region = support::aws_region();
        let key_id = support::aws_access_key_id();
        let secret_key = support::aws_secret_access_key();
        let credentials = Credentials::new(&key_id, &secret_key, None, None, "test");
        let config = Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.clone()))
            .endpoint_url(&endpoint)
            .credentials_provider(credentials)
            .build();
        Admin {
            client: Client::from_conf(config),
            endpoint,
            region,
            key_id,
            secret_key,
        }
    }

    /// The variables a source needs to reach moto with the test key.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret_key.clone()),
            ("AWS_REGION".into(), self.region.clone()),
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
        ]
    }

    /// Creates a secret holding `text`; returns its version id.
    pub async fn create_text(&self, name: &str, text: &str) -> String {
        let out = self
            .client
            .create_secret()
            .name(name)
            .secret_string(text)
            .send()
            .await;
        out.expect("create_secret")
            .version_id
            .expect("a version id")
    }

    /// Creates a secret holding `bytes` as `SecretBinary`; returns its version id.
    pub async fn create_binary(&self, name: &str, bytes: &[u8]) -> String {
        let out = self
            .client
            .create_secret()
            .name(name)
            .secret_binary(Blob::new(bytes))
            .send()
            .await;
        out.expect("create_secret")
            .version_id
            .expect("a version id")
    }

    /// Puts a new version holding `text` under `stage` (AWSCURRENT when `None`); returns its id.
    pub async fn put(&self, name: &str, text: &str, stage: Option<&str>) -> String {
        let mut request = self
            .client
            .put_secret_value()
            .secret_id(name)
            .secret_string(text);
        if let Some(stage) = stage {
            request = request.version_stages(stage);
        }
        request
            .send()
            .await
            .expect("put_secret_value")
            .version_id
            .expect("a version id")
    }

    /// The `AWSCURRENT` text of a secret (sent with the stage: see moto's quirk), if it exists.
    pub async fn current(&self, name: &str) -> Option<String> {
        let request = self
            .client
            .get_secret_value()
            .secret_id(name)
            .version_stage("AWSCURRENT");
        request.send().await.ok().and_then(|out| out.secret_string)
    }

    /// Moves `AWSCURRENT` from version `from` to version `to`.
    pub async fn promote(&self, name: &str, to: &str, from: &str) {
        self.client
            .update_secret_version_stage()
            .secret_id(name)
            .version_stage("AWSCURRENT")
            .move_to_version_id(to)
            .remove_from_version_id(from)
            .send()
            .await
            .expect("update_secret_version_stage");
    }
}

/// A name no other test (or earlier run on the same server) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("credchain-test/{prefix}-{}-{nanos}-{n}", std::process::id())
}

/// A source named `aws` built from TOML `options` (which may hold a `[keys]` table) with the
/// variables `env`.
pub fn source(options: &str, env: &[(String, String)]) -> AwsSource {
    let mut table: toml::Table = toml::from_str(options).expect("test options are TOML");
    let mut settings = SourceSettings::new("aws");
    if let Some(toml::Value::Table(keys)) = table.remove("keys") {
        for (key, spec) in keys {
            settings
                .keys
                .insert(key, spec.as_str().expect("a string").to_string());
        }
    }
    let env = MapEnv::new(env.iter().cloned());
    AwsSource::from_options(settings, table, &env).expect("valid options")
}
