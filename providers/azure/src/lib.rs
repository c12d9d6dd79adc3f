//! Azure Key Vault source for credchain: each key is read from one secret (`PREFECT_API_KEY`
//! from `PREFECT-API-KEY`), logging in through the Azure identity chain a user expects (client
//! secret, workload identity, managed identity, Azure CLI).
//!
//! Built on the official `azure_security_keyvault_secrets` and `azure_identity` crates. Where
//! they do not do what credchain needs, this crate plugs into their extension points:
//! its own reqwest transport (extra CA certificates, timeouts, one retry policy), its own
//! managed identity credential (a one-second probe of the metadata service), its own client
//! assertion (the federated token file read on every login) and its own Azure CLI executor
//! (the injected `PATH`, a timeout). See `docs/azure.md` for the options.

mod classify;
pub mod config;
mod credential;
mod http;
pub mod naming;
mod source;

use std::sync::Arc;

use credchain_core::{CredentialSource, Environment, SourceError, SourceSettings};

pub use config::{AzureConfig, CredentialKind};
pub use source::AzureSource;

/// Builds an Azure source from its `[[sources]]` table, for credchain's source registry.
pub fn build(
    settings: SourceSettings,
    options: toml::Table,
    env: Arc<dyn Environment>,
) -> Result<Arc<dyn CredentialSource>, SourceError> {
    Ok(Arc::new(AzureSource::from_options(settings, options, env)?))
}
