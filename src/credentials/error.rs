//! Why the rotating cache could not supply a value. Messages name keys and sources, never values.

use std::sync::Arc;
use std::time::Duration;

use crate::chain::ResolveError;
use crate::exit::{Exit, Failure};

/// A failure of [`super::Credentials`]. Cheap to clone, because every caller of a shared
/// resolution receives the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredError {
    /// The chain could not resolve the key.
    #[error("cannot resolve {key}")]
    ResolveKey {
        /// The key.
        key: String,
        /// What the chain said.
        #[source]
        source: Arc<ResolveError>,
    },
    /// A server rejected the value, and its source kept returning it.
    #[error(
        "the server rejected {key} from source `{source_name}` ({location}), and the source \
         still returns the same value{}",
        waited_text(*waited)
    )]
    ReplaceRejected {
        /// The key.
        key: String,
        /// The source that supplied the rejected value.
        source_name: String,
        /// Where in the source (a variable, a file and line, a secret path).
        location: String,
        /// How long re-reads were retried.
        waited: Duration,
    },
    /// Refreshing failed, and the last good value is older than `max_stale` allows.
    #[error(
        "cannot refresh {key} from source `{source_name}`, and its last good value is past \
         max_stale ({})",
        humantime::format_duration(*max_stale)
    )]
    RefreshKey {
        /// The key.
        key: String,
        /// The source of the last good value.
        source_name: String,
        /// The link's `max_stale`.
        max_stale: Duration,
        /// Why the refresh failed.
        #[source]
        source: Arc<ResolveError>,
    },
}

fn waited_text(waited: Duration) -> String {
    match waited.as_secs() {
        0 => String::new(),
        secs => format!(" after {secs} s of re-reading"),
    }
}

impl CredError {
    pub(super) fn resolve(key: &str, error: ResolveError) -> Self {
        CredError::ResolveKey {
            key: key.to_string(),
            source: Arc::new(error),
        }
    }

    pub(super) fn stale(
        key: &str,
        source_name: &str,
        max_stale: Duration,
        error: ResolveError,
    ) -> Self {
        CredError::RefreshKey {
            key: key.to_string(),
            source_name: source_name.to_string(),
            max_stale,
            source: Arc::new(error),
        }
    }

    /// The key disappeared while a rejected value of it was being replaced.
    pub(super) fn vanished(key: &str) -> Self {
        Self::resolve(
            key,
            ResolveError::NotFound {
                key: key.to_string(),
                tried: Vec::new(),
            },
        )
    }

    /// The key concerned.
    pub fn key(&self) -> &str {
        match self {
            CredError::ResolveKey { key, .. }
            | CredError::ReplaceRejected { key, .. }
            | CredError::RefreshKey { key, .. } => key,
        }
    }

    /// The source the failure is about, when one is known.
    pub fn source_name(&self) -> Option<&str> {
        match self {
            CredError::ResolveKey { source, .. } => source.source_name(),
            CredError::ReplaceRejected { source_name, .. }
            | CredError::RefreshKey { source_name, .. } => Some(source_name),
        }
    }

    /// How the process should exit because of it.
    pub fn exit(&self) -> Exit {
        let of = |error: &ResolveError| match error.kind() {
            None => Exit::KeyNotFound,
            Some(kind) => Exit::for_source_error(kind),
        };
        match self {
            CredError::ResolveKey { source, .. } | CredError::RefreshKey { source, .. } => {
                of(source)
            }
            CredError::ReplaceRejected { .. } => Exit::Unauthorized,
        }
    }

    /// What the user should do about it.
    pub fn hint(&self) -> String {
        match self {
            CredError::ResolveKey { key, source, .. } if source.kind().is_none() => format!(
                "set {key} in the environment or .env, or add a source that holds it to the config"
            ),
            CredError::ResolveKey { .. } | CredError::RefreshKey { .. } => {
                let name = self.source_name().unwrap_or("the failing source");
                format!("check source `{name}` with `credchain doctor`")
            }
            CredError::ReplaceRejected {
                key, source_name, ..
            } => format!(
                "put a valid {key} in source `{source_name}` (or rotate it there), then run the \
                 command again"
            ),
        }
    }
}

impl From<CredError> for Failure {
    fn from(error: CredError) -> Self {
        let hint = error.hint();
        Failure::new(error.exit(), error).hint(hint)
    }
}
