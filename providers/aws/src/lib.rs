//! AWS Secrets Manager source for credchain: one secret holding a JSON object whose fields are
//! named like the keys, or a plain-text secret per key, read at a version stage or version id,
//! with the `AWSPENDING` rotation window offered after a server rejects the current value.
//!
//! The AWS configuration comes from the SDK's default chain (environment, profile, web
//! identity, ECS, instance metadata); see `docs/aws.md` for the options, variables and errors.

mod classify;
mod config;
mod source;
mod store;

use std::sync::Arc;

use credchain_core::{CredentialSource, Environment, SourceError, SourceSettings};

pub use config::{
    AwsConfig, EnvCredentials, EnvKeys, Setting, Version, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT,
    DEFAULT_VERSION_STAGE, PENDING_STAGE,
};
pub use source::AwsSource;
pub use store::{
    CREDENTIALS_LOAD_TIMEOUT, METADATA_ATTEMPTS, METADATA_TIMEOUT, NOT_CONFIGURED_MEMORY,
};

/// Builds the source of a `[[sources]]` table with `type = "aws"`, in the shape of credchain's
/// source registry. See [`AwsSource::from_options`].
pub fn build(
    settings: SourceSettings,
    options: toml::Table,
    env: Arc<dyn Environment>,
) -> Result<Arc<dyn CredentialSource>, SourceError> {
    Ok(Arc::new(AwsSource::from_options(settings, options, &*env)?))
}

/// The SDK crates this source is built on, at the versions it uses, for programs that build
/// their own clients next to it (the integration tests create secrets with them).
pub mod sdk {
    pub use aws_config;
    pub use aws_credential_types;
    pub use aws_sdk_secretsmanager;
}
