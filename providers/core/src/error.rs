//! Error categories of a credential source, which decide what the chain does next.

use std::error::Error as StdError;
use std::fmt;

/// What kind of failure a source met. The chain moves on after [`ErrorKind::NotConfigured`]
/// and stops on every other kind, unless the source is marked `optional`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The store is not set up in this environment (no address, no credentials, no file).
    NotConfigured,
    /// The store refused us (401 or 403 after one re-authentication).
    Denied,
    /// The store could not be reached or failed (connect error, timeout, 5xx).
    Unavailable,
    /// The configuration or the stored data is wrong.
    Invalid,
}

impl ErrorKind {
    /// A short lowercase label for messages and JSON output.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::NotConfigured => "not configured",
            ErrorKind::Denied => "denied",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Invalid => "invalid",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A failure of one source. The message never holds a secret: build it from names, paths,
/// status codes and the store's own error text only when that text cannot echo a value.
#[derive(Debug)]
pub struct SourceError {
    kind: ErrorKind,
    message: String,
    hint: Option<String>,
    cause: Option<Box<dyn StdError + Send + Sync>>,
}

impl SourceError {
    /// A failure of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        SourceError {
            kind,
            message: message.into(),
            hint: None,
            cause: None,
        }
    }

    /// The store is not set up here; the chain moves on.
    pub fn not_configured(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotConfigured, message)
    }

    /// The store refused the request.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Denied, message)
    }

    /// The store could not be reached or failed.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// Bad configuration or bad stored data.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    /// Attaches the underlying error. Its `Display` must not contain a secret either.
    pub fn with_cause(mut self, cause: impl StdError + Send + Sync + 'static) -> Self {
        self.cause = Some(Box::new(cause));
        self
    }

    /// Attaches what the user should do about it.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The category.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What to do about it, when known.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for SourceError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.cause
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// `outer: inner: innermost` for an error and its sources, on one line, skipping a cause whose
/// text the message so far already ends with (wrappers often repeat their cause). Only the
/// errors' `Display` text is used, never their `Debug` form, which for SDK errors dumps
/// internal structures.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !inner_text.is_empty() && !text.ends_with(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}
