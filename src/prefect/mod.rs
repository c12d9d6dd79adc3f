//! The Prefect REST client: URL rules, authentication, CSRF, retries and TLS, with a typed
//! error for every way a request can fail. See `docs/prefect-client.md`.
//!
//! ```no_run
//! # async fn demo(config: credchain::config::Config) -> Result<(), Box<dyn std::error::Error>> {
//! use credchain::credentials::Credentials;
//! use credchain::prefect::PrefectClient;
//!
//! let creds = Credentials::from_config(&config);
//! let client = PrefectClient::builder(creds).settings(&config.prefect).build().await?;
//! client.health().await?;
//! let flows = client.read_flows(10).await?;
//! # let _ = flows;
//! # Ok(())
//! # }
//! ```

mod auth;
mod client;
mod csrf;
mod detail;
mod error;
mod retry;
mod tls;
pub(crate) mod transport;
mod url;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

pub use auth::{AuthMode, API_KEY, AUTH_STRING};
pub use client::{
    ApiResponse, ClientBuilder, PrefectClient, API_URL, API_VERSION, CLIENT_USER_AGENT,
};
pub use error::{RejectedCredential, RequestError, SetupError, Unreachable};
pub use retry::DEFAULT_MAX_RETRIES;
pub use transport::{CA_FILE_VAR, GENERIC_CA_FILE_VAR, INSECURE_VAR};
pub use url::{ApiUrl, UrlError, PREFECT_CLOUD_API_URL};

/// A flow as the server returns it. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Flow {
    /// The flow's id.
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// When it was created (ISO 8601).
    #[serde(default)]
    pub created: Option<String>,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<String>,
}
