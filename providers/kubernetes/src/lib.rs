//! credchain's Kubernetes Secrets source: reads keys from the `data` of a Secret through the
//! API server, from inside a pod (the service account's token, CA and namespace) or through a
//! kubeconfig.
//!
//! The crate's parts: `config` (options, variables, and which way to the API server),
//! `connect` (the kube client and the in-cluster token, re-read for every request), `object`
//! (the Secret as the API returns it, decoded one key at a time), `errors` (what 401, 403,
//! 404 and 5xx mean) and `source` (the [`KubernetesSource`] itself). Mounted Secret volumes are
//! read by credchain's `file` source instead. User documentation: `docs/kubernetes.md`.

#![forbid(unsafe_code)]

mod config;
mod connect;
mod errors;
mod names;
mod object;
mod source;

use std::sync::Arc;

use credchain_core::{CredentialSource, Environment, SourceError, SourceSettings};

pub use config::{
    KubernetesConfig, Target, DEFAULT_CONNECT_TIMEOUT, DEFAULT_NAMESPACE, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SERVICE_ACCOUNT_DIR, HOME_KUBECONFIG, KUBECONFIG_VAR, SERVICE_HOST_VAR,
    SERVICE_PORT_VAR,
};
pub use source::KubernetesSource;

/// Builds a `type = "kubernetes"` source for credchain's source registry.
pub fn build(
    settings: SourceSettings,
    options: toml::Table,
    env: Arc<dyn Environment>,
) -> Result<Arc<dyn CredentialSource>, SourceError> {
    Ok(Arc::new(KubernetesSource::from_options(
        settings,
        options,
        env.as_ref(),
    )?))
}
