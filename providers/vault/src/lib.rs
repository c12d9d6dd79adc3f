//! credchain's HashiCorp Vault (and OpenBao) source: reads keys from fields of KV v1 and v2
//! secrets, logs in with a token, AppRole, JWT or Kubernetes auth, and keeps the token fresh.
//!
//! The crate's parts: `config` (options and `VAULT_*` variables), `http` (the client, timeouts,
//! error text), `login` (one login through vaultrs), `session` (the shared token, its renewal and
//! re-login), `kv` (mounts, versions, reads) and `source` (the [`VaultSource`] itself).
//! User documentation: `docs/vault.md`.

#![forbid(unsafe_code)]

mod config;
mod http;
mod kv;
mod login;
mod session;
mod source;

pub use config::{
    AuthConfig, KvVersion, SecretIdSource, VaultConfig, DEFAULT_APPROLE_MOUNT,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_JWT_MOUNT, DEFAULT_KUBERNETES_MOUNT,
    DEFAULT_KUBERNETES_TOKEN_FILE, DEFAULT_REQUEST_TIMEOUT, TOKEN_HELPER_FILE,
};
pub use source::VaultSource;

use std::sync::Arc;

use credchain_core::{CredentialSource, Environment, SourceError, SourceSettings};

/// Builds the source of a `[[sources]]` table with `type = "vault"`, in the shape of credchain's
/// source registry. See [`VaultSource::from_options`].
pub fn build(
    settings: SourceSettings,
    options: toml::Table,
    env: Arc<dyn Environment>,
) -> Result<Arc<dyn CredentialSource>, SourceError> {
    Ok(Arc::new(VaultSource::from_options(
        settings, options, &*env,
    )?))
}
