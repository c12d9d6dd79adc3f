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

pub use config::{
    AwsConfig, EnvCredentials, EnvKeys, Setting, Version, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT,
    DEFAULT_VERSION_STAGE, PENDING_STAGE,
};
pub use source::AwsSource;
pub use store::{CREDENTIALS_LOAD_TIMEOUT, METADATA_ATTEMPTS, METADATA_TIMEOUT};

/// The SDK crates this source is built on, at the versions it uses, for programs that build
/// their own clients next to it (the integration tests create secrets with them).
pub mod sdk {
    pub use aws_config;
    pub use aws_credential_types;
    pub use aws_sdk_secretsmanager;
}
