//! The conformance suite for the Kubernetes source, against the API double: once through a
//! kubeconfig over HTTP, once in-cluster over TLS with the service account files.
#![cfg(feature = "kubernetes")]

mod conformance;
#[path = "doubles/kube_api.rs"]
mod kube_api;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use conformance::Fixture;
use credchain::core::{CredentialSource, MapEnv, SourceSettings};
use credchain_kubernetes::KubernetesSource;
use kube_api::{Behaviour, KubeApi};
use tempfile::TempDir;

const TOKEN: &str = "FAKE_SA_TOKEN_conformance_001";
const NS: &str = "etl";
const SECRET: &str = "prefect";
/// Longer than the source's `timeout`.
const SLOW: Duration = Duration::from_secs(10);

/// The double, the files pointing at it, and a source reading Secret `etl/prefect`.
struct KubeFixture {
    api: KubeApi,
    _dir: TempDir,
    source: Arc<dyn CredentialSource>,
}

impl KubeFixture {
    /// Through a kubeconfig, over plain HTTP.
    async fn kubeconfig() -> KubeFixture {
        let api = KubeApi::start(TOKEN).await;
        let dir = tempfile::tempdir().unwrap();
        let path = api.write_kubeconfig(dir.path(), TOKEN, NS);
        let options = format!("kubeconfig = '{}'", path.display());
        let source = build(&options, MapEnv::default());
        KubeFixture {
            api,
            _dir: dir,
            source,
        }
    }

    /// In-cluster: service account files in a temp dir, TLS with the double's CA.
    async fn in_cluster() -> KubeFixture {
        let api = KubeApi::start_tls(TOKEN).await;
        let dir = tempfile::tempdir().unwrap();
        api.write_service_account(dir.path(), TOKEN, NS);
        let port = api.addr().port().to_string();
        let env = MapEnv::new([
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1".to_string()),
            ("KUBERNETES_SERVICE_PORT", port),
        ]);
        let options = format!("service_account_dir = '{}'", dir.path().display());
        let source = build(&options, env);
        KubeFixture {
            api,
            _dir: dir,
            source,
        }
    }
}

/// The source with `extra` options, a 1 s timeout, reading Secret `prefect`.
fn build(extra: &str, env: MapEnv) -> Arc<dyn CredentialSource> {
    let options = format!("secret = '{SECRET}'\ntimeout = '1s'\n{extra}");
    let table: toml::Table = toml::from_str(&options).unwrap();
    Arc::new(
        KubernetesSource::from_options(SourceSettings::new("kubernetes"), table, &env).unwrap(),
    )
}

#[async_trait]
impl Fixture for KubeFixture {
    fn source(&self) -> Arc<dyn CredentialSource> {
        self.source.clone()
    }

    async fn put(&self, key: &str, value: &str) {
        self.api.put(NS, SECRET, key, value.as_bytes());
    }

    async fn remove(&self, key: &str) {
        self.api.remove_key(NS, SECRET, key);
    }

    async fn deny(&self) -> bool {
        self.api.set(Behaviour::Fail(403));
        true
    }

    async fn make_unavailable(&self) -> bool {
        self.api.set(Behaviour::Fail(500));
        true
    }

    async fn make_slow(&self) -> bool {
        self.api.set(Behaviour::Slow(SLOW));
        true
    }
}

conformance::conformance_tests!(kubeconfig_suite, KubeFixture::kubeconfig().await;
    found, absent, empty_is_absent, invalid_control_char_is_hidden,
    rotated_between_two_reads, denied, unavailable, slow);

conformance::conformance_tests!(in_cluster_suite, KubeFixture::in_cluster().await;
    found, absent, empty_is_absent, invalid_control_char_is_hidden,
    rotated_between_two_reads, denied, unavailable, slow);
