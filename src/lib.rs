//! credchain: resolve credentials through a priority chain of secret stores, keep them fresh,
//! and run Prefect ETL flows with them.
pub use credchain_core as core;
