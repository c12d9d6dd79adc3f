//! The HTTP clients the source hands to the Azure SDK: the workspace's reqwest with rustls, the
//! configured CA certificates and timeouts, and one bounded retry policy for every request.

use std::path::Path;
use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};

use crate::config::{AzureConfig, DEFAULT_CONNECT_TIMEOUT};

/// The first wait before a retry; it doubles on each try, plus up to 256 ms of jitter.
const RETRY_INITIAL_DELAY_MS: i64 = 200;
/// The longest wait between two tries, unless the server's `Retry-After` asks for more.
const RETRY_MAX_DELAY_SECS: i64 = 8;

/// Why the HTTP client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BuildClientError {
    /// The CA file could not be read.
    #[error("cannot read the CA certificate file {path}")]
    ReadCaCert {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The CA file holds no usable PEM certificate.
    #[error("the CA certificate file {path} is not a PEM certificate bundle")]
    ParseCaCert {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// reqwest refused the settings.
    #[error("cannot set up the HTTP client for Azure")]
    Build(#[source] reqwest::Error),
}

/// The clients of one source: one for the vault and Entra ID, one for the metadata service.
#[derive(Debug, Clone)]
pub struct HttpClients {
    /// Talks to the vault and the login endpoints; shared by every SDK pipeline.
    pub main: reqwest::Client,
    /// Talks to the instance metadata service: never through a proxy.
    pub imds: reqwest::Client,
}

impl HttpClients {
    /// Builds both clients from the config's TLS settings and timeouts.
    pub fn new(config: &AzureConfig) -> Result<Self, BuildClientError> {
        let mut main = base_builder().timeout(config.timeout);
        if let Some(path) = &config.ca_cert {
            main = main.tls_certs_merge(read_ca_certs(path)?);
        }
        let imds = base_builder().no_proxy();
        Ok(HttpClients {
            main: main.build().map_err(BuildClientError::Build)?,
            imds: imds.build().map_err(BuildClientError::Build)?,
        })
    }

    /// SDK client options that send through [`HttpClients::main`] with the source's retries,
    /// logging in at the configured authority host.
    pub fn client_options(&self, config: &AzureConfig) -> ClientOptions {
        let mut cloud = CustomConfiguration::default();
        cloud.authority_host = config
            .authority_host
            .as_str()
            .trim_end_matches('/')
            .to_string();
        ClientOptions {
            transport: Some(Transport::new(Arc::new(self.main.clone()))),
            retry: retry_options(config.max_retries),
            cloud: Some(Arc::new(CloudConfiguration::Custom(cloud))),
            ..ClientOptions::default()
        }
    }
}

/// What both clients share: no redirects (Azure REST APIs never redirect, and a redirect must
/// not carry a token elsewhere), a connect timeout and a recognisable user agent.
fn base_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(DEFAULT_CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("credchain-azure/", env!("CARGO_PKG_VERSION")))
}

/// The one retry policy of the source: 408, 429, 500, 502, 503, 504 and connection errors are
/// tried again `max_retries` times with exponential backoff and jitter, honouring `Retry-After`;
/// the source's `timeout` caps the whole lookup.
pub fn retry_options(max_retries: u32) -> RetryOptions {
    if max_retries == 0 {
        return RetryOptions::none();
    }
    RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: azure_core::time::Duration::milliseconds(RETRY_INITIAL_DELAY_MS),
        max_delay: azure_core::time::Duration::seconds(RETRY_MAX_DELAY_SECS),
        max_retries,
        ..ExponentialRetryOptions::default()
    })
}

/// Reads a PEM bundle of extra trusted roots.
fn read_ca_certs(path: &Path) -> Result<Vec<reqwest::Certificate>, BuildClientError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| BuildClientError::ReadCaCert {
        path: shown.clone(),
        source,
    })?;
    reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| BuildClientError::ParseCaCert {
        path: shown,
        source,
    })
}
