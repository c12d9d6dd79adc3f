//! The `env` source: values from the process environment, read through [`Environment`].

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use async_trait::async_trait;
use credchain_core::value;
use credchain_core::{
    CredentialSource, Diagnosis, Environment, Lifetime, Provenance, Resolved, SourceError,
    SourceSettings,
};
use serde::Deserialize;

/// The `env` source takes no options besides the common ones.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvOptions {}

/// Reads each key from the environment variable of the same name, or from the variable its
/// `keys` override names (`KEY = "OTHER_VAR"` or `KEY = "OTHER_VAR#field"` for a JSON field).
///
/// Trailing CR, LF, space and tab are removed; an empty or blank value is absent; a control
/// character inside, or a value that is not UTF-8, is an invalid error that does not show the
/// value. A value wrapped in matching quotes keeps them, with one warning per key.
#[derive(Debug)]
pub struct EnvSource {
    settings: SourceSettings,
    env: Arc<dyn Environment>,
}

impl EnvSource {
    /// A source reading `env`.
    pub fn new(settings: SourceSettings, env: Arc<dyn Environment>) -> Self {
        EnvSource { settings, env }
    }
}

/// The registry's constructor for `type = "env"`.
pub(super) fn build(
    settings: SourceSettings,
    options: toml::Table,
    env: Arc<dyn Environment>,
) -> Result<Arc<dyn CredentialSource>, SourceError> {
    let EnvOptions {} = super::parse_options("env", options)?;
    Ok(Arc::new(EnvSource::new(settings, env)))
}

#[async_trait]
impl CredentialSource for EnvSource {
    fn name(&self) -> &str {
        &self.settings.name
    }

    async fn fetch(&self, key: &str) -> Result<Option<Resolved>, SourceError> {
        let address = self.settings.address(key, str::to_owned)?;
        let Some(raw) = self.env.var_os(&address.location) else {
            tracing::debug!(key, variable = %address.location, "environment variable not set");
            return Ok(None);
        };
        let origin = format!("environment variable {}", address.location);
        let raw = into_utf8(raw).ok_or_else(|| {
            SourceError::invalid(format!(
                "{origin} is not valid UTF-8; the value is not shown"
            ))
        })?;
        let field = address.field.as_deref();
        let Some(value) = value::select(key, &origin, raw, field)? else {
            return Ok(None);
        };
        if field.is_none() && is_wrapped_in_quotes(value.expose()) {
            warn_quoted_once(key, &address.location);
        }
        Ok(Some(Resolved {
            value,
            provenance: Provenance {
                source: self.settings.name.clone(),
                location: address.to_string(),
                version: None,
            },
            lifetime: Lifetime::Static,
        }))
    }

    async fn diagnose(&self) -> Result<Diagnosis, SourceError> {
        let mut diagnosis = Diagnosis::default();
        diagnosis
            .details
            .push("reads the process environment".to_owned());
        Ok(diagnosis)
    }
}

/// The value as UTF-8, or `None` (after wiping the bytes) when it is not.
fn into_utf8(raw: OsString) -> Option<String> {
    String::from_utf8(raw.into_vec())
        .map_err(|err| zeroize::Zeroize::zeroize(&mut err.into_bytes()))
        .ok()
}

/// Whether the value starts and ends with the same quote character (`"..."` or `'...'`).
pub(crate) fn is_wrapped_in_quotes(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.len() >= 2 && matches!(bytes[0], b'"' | b'\'') && bytes[bytes.len() - 1] == bytes[0]
}

/// Warns about a quoted value once per key per process: quotes in an environment variable are
/// usually left over from a file read by a tool that does not strip them (`docker --env-file`).
fn warn_quoted_once(key: &str, variable: &str) {
    static WARNED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let first = WARNED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key.to_owned());
    if first {
        tracing::warn!(
            key,
            variable,
            "the value of {key} is wrapped in quote characters, which are kept as part of it; \
             remove them from {variable} if they are not part of the value"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_in_quotes_needs_matching_ends() {
        assert!(is_wrapped_in_quotes("\"a\""));
        assert!(is_wrapped_in_quotes("''"));
        assert!(!is_wrapped_in_quotes("\"a'"));
        assert!(!is_wrapped_in_quotes("\""));
        assert!(!is_wrapped_in_quotes("a\""));
    }

    #[test]
    fn non_utf8_bytes_are_refused() {
        assert_eq!(into_utf8(OsString::from("ok")).as_deref(), Some("ok"));
        assert_eq!(into_utf8(OsString::from_vec(vec![b'a', 0xff])), None);
    }
}
