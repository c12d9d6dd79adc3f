//! credchain: resolve credentials through a priority chain of secret stores, keep them fresh,
//! and run Prefect ETL flows with them.
pub use credchain_core as core;

pub mod chain;
pub mod cli;
pub mod concurrency;
pub mod config;
pub mod credentials;
pub mod etl;
pub mod exit;
pub mod flow;
pub mod prefect;
pub mod sources;
