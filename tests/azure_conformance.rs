//! The conformance suite for the Azure Key Vault source, against the Key Vault double, logging
//! in with a client secret.
#![cfg(feature = "azure")]

#[path = "doubles/azure_kv.rs"]
mod azure_kv;
mod conformance;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_kv::{AzureKv, Behaviour, CLIENT_ID, CLIENT_SECRET, TENANT};
use conformance::Fixture;
use credchain::core::{CredentialSource, MapEnv, SourceSettings};
use credchain_azure::{naming::natural_name, AzureSource};
use tempfile::TempDir;

/// Longer than the source's `timeout`.
const SLOW: Duration = Duration::from_secs(10);

/// The double and a source reading it with a 1 s timeout and one retry.
struct AzureFixture {
    kv: AzureKv,
    _dir: TempDir,
    source: Arc<dyn CredentialSource>,
}

impl AzureFixture {
    async fn start() -> AzureFixture {
        let kv = AzureKv::start().await;
        let dir = tempfile::tempdir().unwrap();
        let options = format!(
            "{}credential = 'client_secret'\ntimeout = '1s'\nmax_retries = 1\n",
            kv.options(dir.path())
        );
        let env = MapEnv::new([
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_CLIENT_ID", CLIENT_ID),
            ("AZURE_CLIENT_SECRET", CLIENT_SECRET),
        ]);
        let table: toml::Table = toml::from_str(&options).unwrap();
        let source =
            AzureSource::from_options(SourceSettings::new("azure"), table, Arc::new(env)).unwrap();
        AzureFixture {
            kv,
            _dir: dir,
            source: Arc::new(source),
        }
    }
}

#[async_trait]
impl Fixture for AzureFixture {
    fn source(&self) -> Arc<dyn CredentialSource> {
        self.source.clone()
    }

    async fn put(&self, key: &str, value: &str) {
        self.kv.put(&natural_name(key), value);
    }

    async fn remove(&self, key: &str) {
        self.kv.remove(&natural_name(key));
    }

    async fn deny(&self) -> bool {
        self.kv.set(Behaviour::Fail(403));
        true
    }

    async fn make_unavailable(&self) -> bool {
        self.kv.set(Behaviour::Fail(500));
        true
    }

    async fn make_slow(&self) -> bool {
        self.kv.set(Behaviour::Slow(SLOW));
        true
    }
}

conformance::conformance_tests!(key_vault_suite, AzureFixture::start().await;
    found, absent, empty_is_absent, invalid_control_char_is_hidden,
    rotated_between_two_reads, denied, unavailable, slow);
