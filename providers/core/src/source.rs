//! The [`CredentialSource`] trait and the values it returns.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::{Secret, SourceError};

/// Where a value came from. Safe to print: it never holds the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provenance {
    /// The source's name in the chain (`env`, `dotenv`, `vault`, or the name the config gives).
    pub source: String,
    /// Where inside the source: `PREFECT_API_KEY`, `.env:3`, `/run/secrets/KEY`, `secret/etl#key`.
    pub location: String,
    /// The store's version of the value, when it has one.
    pub version: Option<String>,
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.source, self.location)?;
        if let Some(version) = &self.version {
            write!(f, " version {version}")?;
        }
        Ok(())
    }
}

/// How long a resolved value stays good, which tells the rotation layer when to look again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifetime {
    /// Fixed for the life of the process (the process environment).
    Static,
    /// Read from this path; re-read when its change time, inode, mtime or size changes.
    File(PathBuf),
    /// Held by a remote store: re-read every `refresh_interval`, or before `expires_in` runs out
    /// (at about two thirds of it) when the store gives a lease or TTL.
    Remote {
        /// The lease or TTL the store gave, if any.
        expires_in: Option<Duration>,
    },
}

/// A value found by a source, with where it came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The value itself; prints as `[REDACTED]`.
    pub value: Secret,
    /// Where it came from.
    pub provenance: Provenance,
    /// When to look again.
    pub lifetime: Lifetime,
}

/// What `credchain doctor` learns about a source besides the keys it holds.
#[derive(Debug, Default)]
pub struct Diagnosis {
    /// Human-readable facts (the address, the file, the auth method); never a secret.
    pub details: Vec<String>,
    /// Things the user should fix.
    pub warnings: Vec<String>,
}

/// A place credentials come from.
///
/// `fetch` returns `Ok(Some(_))` when the source holds the key, `Ok(None)` when it does not (an
/// empty value or a deleted version counts as absent, with a debug line), and `Err(_)` when it
/// failed; the [`crate::ErrorKind`] of the error decides whether the chain moves on.
#[async_trait]
pub trait CredentialSource: Send + Sync + fmt::Debug {
    /// The name shown in provenance, logs and errors.
    fn name(&self) -> &str;

    /// Looks a key up.
    async fn fetch(&self, key: &str) -> Result<Option<Resolved>, SourceError>;

    /// Looks a key up again after a server rejected `rejected`, a value this source supplied.
    /// A store with staged rotation (AWS `AWSPENDING`) may offer the next value here.
    async fn fetch_after_rejection(
        &self,
        key: &str,
        rejected: &Secret,
    ) -> Result<Option<Resolved>, SourceError> {
        let _ = rejected;
        self.fetch(key).await
    }

    /// Checks the source's setup for `credchain doctor`: `Err` with
    /// [`crate::ErrorKind::NotConfigured`] when it is not set up, another kind when it is set up
    /// but broken or unreachable.
    async fn diagnose(&self) -> Result<Diagnosis, SourceError> {
        Ok(Diagnosis::default())
    }
}
