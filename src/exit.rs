//! Exit codes, and the one error type every command returns to `main`.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the work failed (a flow run failed, rows rejected over the threshold) |
//! | 2 | usage or configuration error |
//! | 3 | a required key was found in no source |
//! | 4 | authentication rejected after re-resolution (401) |
//! | 5 | permission denied (403) |
//! | 6 | server or store unreachable (connect, DNS, TLS, timeout) |

use std::fmt;

use credchain_core::ErrorKind;

use crate::chain::ResolveError;
use crate::config::ConfigError;

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Exit {
    /// 0: success.
    Success,
    /// 1: the work failed.
    WorkFailed,
    /// 2: usage or configuration error.
    Usage,
    /// 3: a required key was found in no source.
    KeyNotFound,
    /// 4: authentication rejected after re-resolution.
    Unauthorized,
    /// 5: permission denied.
    Forbidden,
    /// 6: server or store unreachable.
    Unreachable,
    /// A child's own exit code, passed through by `credchain exec`.
    Passthrough(u8),
}

impl Exit {
    /// The numeric process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::WorkFailed => 1,
            Exit::Usage => 2,
            Exit::KeyNotFound => 3,
            Exit::Unauthorized => 4,
            Exit::Forbidden => 5,
            Exit::Unreachable => 6,
            Exit::Passthrough(code) => code,
        }
    }

    /// The exit code for a source failure of this kind.
    pub fn for_source_error(kind: ErrorKind) -> Exit {
        match kind {
            ErrorKind::NotConfigured | ErrorKind::Invalid => Exit::Usage,
            ErrorKind::Denied => Exit::Forbidden,
            ErrorKind::Unavailable => Exit::Unreachable,
        }
    }
}

/// A command's failure: what to print, and how to exit. Its message and its causes never hold
/// a secret.
pub struct Failure {
    /// How to exit.
    pub exit: Exit,
    /// What failed, with its causes.
    pub error: anyhow::Error,
    /// One line saying what to do, when known.
    pub hint: Option<String>,
}

impl Failure {
    /// A failure with this exit code.
    pub fn new(exit: Exit, error: impl Into<anyhow::Error>) -> Self {
        Failure {
            exit,
            error: error.into(),
            hint: None,
        }
    }

    /// A failure from a message.
    pub fn msg(exit: Exit, message: impl fmt::Display) -> Self {
        Failure::new(exit, anyhow::anyhow!("{message}"))
    }

    /// Adds what to do about it.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The error and its causes on one line, `outer: inner: innermost`.
    pub fn chain_text(&self) -> String {
        error_chain(self.error.as_ref())
    }
}

pub use credchain_core::error_chain;

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Failure({:?}, {})", self.exit, self.chain_text())
    }
}

impl From<ConfigError> for Failure {
    fn from(error: ConfigError) -> Self {
        let hint = match &error {
            ConfigError::BuildSource { error, .. } => error.hint().map(str::to_string),
            ConfigError::MissingEnvFile { .. } => {
                Some("check the --env-file path, or leave it out to use ./.env".into())
            }
            _ => None,
        };
        let mut failure = Failure::new(Exit::Usage, error);
        failure.hint =
            hint.or_else(|| Some("fix the config file; see examples/credchain.toml".into()));
        failure
    }
}

impl From<ResolveError> for Failure {
    fn from(error: ResolveError) -> Self {
        match &error {
            ResolveError::NotFound { key, .. } => {
                let hint = format!(
                    "set {key} in the environment or .env, or add a source that holds it to the config"
                );
                Failure::new(Exit::KeyNotFound, error).hint(hint)
            }
            ResolveError::FetchKey {
                error: inner,
                source_name,
                ..
            } => {
                let exit = Exit::for_source_error(inner.kind());
                let hint = inner.hint().map(str::to_string).unwrap_or_else(|| {
                    format!("check source `{source_name}` with `credchain doctor`, or mark it `optional = true`")
                });
                Failure::new(exit, error).hint(hint)
            }
        }
    }
}
