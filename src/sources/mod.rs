//! The built-in credential sources (process environment, `.env` file, directory of files) and
//! the registry that builds any kind of source from its `[[sources]]` table.

pub mod dotenv;
pub mod env;
pub mod file;
pub mod stamp;

use std::io;
use std::path::Path;
use std::sync::Arc;

use credchain_core::{CredentialSource, Environment, SourceError, SourceSettings};
use serde::de::DeserializeOwned;

pub use dotenv::DotenvSource;
pub use env::EnvSource;
pub use file::FileSource;
pub use stamp::{file_stamp, FileStamp};

/// Builds one kind of source from its common settings and the rest of its table.
///
/// Provider crates export a function of this shape, so adding one is a feature-gated line in
/// [`BUILDERS`].
pub type Builder = fn(
    SourceSettings,
    toml::Table,
    Arc<dyn Environment>,
) -> Result<Arc<dyn CredentialSource>, SourceError>;

/// Every kind of source this build can make. To add a provider crate, add a line such as
/// `#[cfg(feature = "vault")] ("vault", credchain_vault::build),` (its name is already in
/// [`FEATURE_KINDS`]).
const BUILDERS: &[(&str, Builder)] = &[
    ("env", env::build),
    ("dotenv", dotenv::build),
    ("file", file::build),
    #[cfg(feature = "azure")]
    ("azure", credchain_azure::build),
    #[cfg(feature = "vault")]
    ("vault", credchain_vault::build),
    #[cfg(feature = "kubernetes")]
    ("kubernetes", credchain_kubernetes::build),
    #[cfg(feature = "aws")]
    ("aws", credchain_aws::build),
];

/// Kinds supplied by provider crates, each behind the cargo feature of the same name. A kind
/// listed here but missing from [`BUILDERS`] is one whose feature is off in this build.
const FEATURE_KINDS: &[&str] = &["vault", "aws", "azure", "kubernetes"];

/// Builds the source of kind `kind` (the `type` of a `[[sources]]` table). `options` holds the
/// table without the common fields, which the config loader has moved into `settings`.
///
/// An unknown kind, a kind whose cargo feature is off, an unknown option or a bad option value
/// is an [`credchain_core::ErrorKind::Invalid`] error naming the kind or the field.
pub fn build(
    kind: &str,
    settings: SourceSettings,
    options: toml::Table,
    env: Arc<dyn Environment>,
) -> Result<Arc<dyn CredentialSource>, SourceError> {
    match BUILDERS.iter().find(|(name, _)| *name == kind) {
        Some((_, builder)) => builder(settings, options, env),
        None => Err(unknown_kind(kind)),
    }
}

/// The kinds this build knows, in the order of [`BUILDERS`].
pub fn known_kinds() -> Vec<&'static str> {
    BUILDERS.iter().map(|(name, _)| *name).collect()
}

/// The chain used when there is no config file: the process environment, then the `.env` file
/// at `env_file` (relative to the working directory). A missing `.env` is "not configured", so
/// the chain simply moves past it.
pub fn default_chain(
    env_file: &Path,
    env: Arc<dyn Environment>,
) -> Vec<(SourceSettings, Arc<dyn CredentialSource>)> {
    let env_settings = SourceSettings::new("env");
    let dotenv_settings = SourceSettings::new("dotenv");
    let shown = shown_path(env_file);
    vec![
        (
            env_settings.clone(),
            Arc::new(EnvSource::new(env_settings, env.clone())),
        ),
        (
            dotenv_settings.clone(),
            Arc::new(DotenvSource::new(dotenv_settings, shown, env)),
        ),
    ]
}

/// Reads a kind's options table into its options struct (which should deny unknown fields).
/// The error names the kind and the offending field; the config loader adds the source's name.
pub fn parse_options<T: DeserializeOwned>(
    kind: &str,
    options: toml::Table,
) -> Result<T, SourceError> {
    options.try_into().map_err(|err: toml::de::Error| {
        SourceError::invalid(format!("`{kind}` options: {}", err.message().trim_end()))
            .with_hint("see docs/sources.md for the options of each source type")
    })
}

fn unknown_kind(kind: &str) -> SourceError {
    let known = known_kinds().join(", ");
    if FEATURE_KINDS.contains(&kind) {
        SourceError::invalid(format!(
            "type `{kind}` needs the cargo feature `{kind}`, which this build \
             of credchain does not have (types in this build: {known})"
        ))
        .with_hint(format!("rebuild credchain with `--features {kind}`"))
    } else {
        SourceError::invalid(format!(
            "unknown type `{kind}` (types in this build: {known})"
        ))
    }
}

/// A path as the user wrote it, without a leading `./`, for provenance and messages.
fn shown_path(path: &Path) -> String {
    match path.strip_prefix(".") {
        Ok(rest) if !rest.as_os_str().is_empty() => rest.display().to_string(),
        _ => path.display().to_string(),
    }
}

/// Maps a failure to read `what` (a file or directory, as the user configured it) to the
/// category the chain acts on. Like every message of these sources, it leaves naming the source
/// to the chain. A missing file is handled by the caller, since it means
/// "absent" for one source and "not configured" for another.
fn read_failure(what: &str, err: io::Error) -> SourceError {
    let message = format!("cannot read {what}");
    match err.kind() {
        io::ErrorKind::PermissionDenied => SourceError::denied(message)
            .with_hint("give the user running credchain read access to it"),
        io::ErrorKind::IsADirectory | io::ErrorKind::NotADirectory | io::ErrorKind::InvalidData => {
            SourceError::invalid(message)
        }
        _ => SourceError::unavailable(message),
    }
    .with_cause(err)
}

/// Decodes file contents as UTF-8 without printing them.
fn decode_utf8(key: &str, what: &str, bytes: Vec<u8>) -> Result<String, SourceError> {
    String::from_utf8(bytes).map_err(|err| {
        zeroize::Zeroize::zeroize(&mut err.into_bytes());
        SourceError::invalid(format!(
            "the value of {key} in {what} is not valid UTF-8; the value is not shown"
        ))
    })
}

#[cfg(test)]
mod tests;
