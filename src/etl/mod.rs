//! The ETL pipeline: extract rows from a CSV or JSON Lines source (a file, an http(s) URL, or
//! the sample built into the binary), transform them (SQL column names, inferred types, NULLs,
//! rejects with line and reason), and load them into SQLite or PostgreSQL in one transaction.
//!
//! ```no_run
//! # async fn demo() -> Result<(), credchain::etl::EtlError> {
//! use credchain::etl::{sample, Pipeline, ResolvedTarget, TerminalObserver};
//!
//! let config = sample::default_pipeline();
//! let target = ResolvedTarget::resolve(&config, |_key| None)?;
//! let pipeline = Pipeline::new(config, target)?;
//! let obs = TerminalObserver::new();
//! let extracted = pipeline.extract(&obs).await?;
//! let transformed = pipeline.transform(extracted, &obs).await?;
//! let loaded = pipeline.load(transformed, &obs).await?;
//! println!("{}", loaded.summary());
//! # Ok(()) }
//! ```
//!
//! Memory does not grow with the number of rows: every step streams one record at a time, and
//! the clean rows travel from transform to load through a staging file in the temp directory.
//! The user guide is `docs/pipeline.md`.

pub mod config;
mod error;
mod extract;
pub mod ident;
pub mod infer;
pub mod load;
pub mod observer;
mod pipeline;
mod records;
pub mod rejects;
pub mod sample;
pub mod source;
mod staging;
mod summary;
pub mod target;
pub mod transform;
pub mod value;

pub use config::{Format, PipelineConfig};
pub use error::{EtlError, EtlErrorKind};
pub use extract::Extracted;
pub use load::LoadError;
pub use observer::{LogLevel, NoopObserver, PipelineObserver, Step, TerminalObserver};
pub use pipeline::{Loaded, Pipeline};
pub use summary::Summary;
pub use target::ResolvedTarget;
pub use transform::{Column, TransformReport, Transformed};
pub use value::ColumnType;
