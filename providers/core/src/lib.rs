//! Core types shared by credchain and every provider crate: the [`Secret`] type, the
//! [`CredentialSource`] trait with its [`Resolved`] values and [`Provenance`], the error
//! categories of [`SourceError`], and the [`Environment`] seam through which sources read the
//! process environment.
//!
//! This crate is deliberately small so that provider crates (`credchain-vault`,
//! `credchain-aws`, ...) can depend on it without depending on the `credchain` binary crate.

mod env;
mod error;
mod secret;
mod settings;
mod source;
pub mod value;

pub use env::{Environment, MapEnv, ProcessEnv};
pub use error::{error_chain, ErrorKind, SourceError};
pub use secret::{redact_url, Secret, REDACTED};
pub use settings::{
    SourceSettings, COMMON_SOURCE_FIELDS, DEFAULT_MAX_STALE, DEFAULT_REFRESH_INTERVAL,
};
pub use source::{CredentialSource, Diagnosis, Lifetime, Provenance, Resolved};

pub use async_trait::async_trait;
