//! The HTTP side of the Vault source: one reqwest client with its timeouts and TLS settings, raw
//! `GET`s for what vaultrs does not cover, and how transport failures and Vault's error bodies
//! become [`SourceError`]s without quoting a secret.

use std::time::Duration;

use credchain_core::{redact_url, Secret, SourceError};
use reqwest::header::{HeaderMap, HeaderValue};

use crate::config::VaultConfig;

/// How much of Vault's own error text an error message quotes at most.
const MAX_QUOTED_ERROR: usize = 300;

/// What went wrong building the HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum BuildClientError {
    /// The CA file could not be read.
    #[error("cannot read the Vault CA certificate {path}")]
    ReadCaCert {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The CA file holds no usable PEM certificate.
    #[error("the Vault CA certificate {path} is not a PEM certificate")]
    ParseCaCert {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// reqwest refused the settings.
    #[error("cannot set up the HTTP client for Vault")]
    Build(#[source] reqwest::Error),
}

impl BuildClientError {
    /// An `invalid` error with this message and the underlying cause.
    pub fn into_source_error(self) -> SourceError {
        let err = SourceError::invalid(self.to_string());
        match self {
            BuildClientError::ReadCaCert { source, .. } => err.with_cause(source),
            BuildClientError::ParseCaCert { source, .. } | BuildClientError::Build(source) => {
                err.with_cause(source)
            }
        }
    }
}

/// A connection to one Vault server: the address, the namespace and an HTTP client.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    /// The address with no trailing slash.
    address: String,
    namespace: Option<String>,
    timeout: Duration,
}

/// A response from Vault. The body may hold secret values, so it is kept as a [`Secret`].
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The body text.
    pub body: Secret,
}

impl Http {
    /// Builds the client for `address` with the config's TLS settings and timeouts.
    pub fn new(config: &VaultConfig, address: &str) -> Result<Self, BuildClientError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("credchain-vault/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_cert {
            let shown = path.display().to_string();
            let pem = std::fs::read(path).map_err(|source| BuildClientError::ReadCaCert {
                path: shown.clone(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
                BuildClientError::ParseCaCert {
                    path: shown,
                    source,
                }
            })?;
            // Like the Vault CLI, VAULT_CACERT replaces the system roots rather than adding.
            builder = builder.tls_certs_only(certs);
        }
        if config.skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        Ok(Http {
            client: builder.build().map_err(BuildClientError::Build)?,
            address: address.trim_end_matches('/').to_string(),
            namespace: config.namespace.clone(),
            timeout: config.request_timeout,
        })
    }

    /// The reqwest client, shared with vaultrs.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The server address, safe to print.
    pub fn address(&self) -> String {
        redact_url(&self.address).trim_end_matches('/').to_string()
    }

    /// The server address as configured (for vaultrs).
    pub fn raw_address(&self) -> &str {
        &self.address
    }

    /// The namespace header value, if any.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// `GET /v1/<api_path>` with `token`, or without one for unauthenticated endpoints.
    pub async fn get(&self, api_path: &str, token: Option<&Secret>) -> Result<Reply, SourceError> {
        let url = format!("{}/v1/{}", self.address, api_path.trim_start_matches('/'));
        let response = self
            .client
            .get(&url)
            .headers(self.headers(token)?)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| self.transport_error(e))?;
        Ok(Reply {
            status,
            body: Secret::new(body),
        })
    }

    fn headers(&self, token: Option<&Secret>) -> Result<HeaderMap, SourceError> {
        let mut headers = HeaderMap::new();
        headers.insert("X-Vault-Request", HeaderValue::from_static("true"));
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(token.expose()).map_err(|_| {
                SourceError::invalid("the Vault token holds characters not allowed in a header")
            })?;
            value.set_sensitive(true);
            headers.insert("X-Vault-Token", value);
        }
        if let Some(namespace) = &self.namespace {
            let value = HeaderValue::from_str(namespace).map_err(|_| {
                SourceError::invalid(format!("the Vault namespace `{namespace}` is not valid"))
            })?;
            headers.insert("X-Vault-Namespace", value);
        }
        Ok(headers)
    }

    /// A request that never got an answer: `unavailable`, naming the address.
    pub fn transport_error(&self, error: reqwest::Error) -> SourceError {
        let address = self.address();
        let message = if error.is_timeout() {
            format!(
                "Vault at {address} did not answer within {}",
                humantime::format_duration(self.timeout)
            )
        } else if error.is_connect() {
            format!("cannot connect to Vault at {address}")
        } else {
            format!("the request to Vault at {address} failed")
        };
        let hint = if error.is_connect() && self.address.starts_with("https:") {
            "check that Vault runs at this address; if its TLS certificate is not trusted, set \
             `ca_cert` (or VAULT_CACERT) to the CA that signed it"
        } else {
            "check that Vault runs at this address (VAULT_ADDR or `address`)"
        };
        SourceError::unavailable(message)
            .with_hint(hint)
            .with_cause(error.without_url())
    }

    /// An answer Vault gave with an error status other than 403 and 404.
    pub fn status_error(&self, status: u16, what: &str, errors: &str) -> SourceError {
        let address = self.address();
        let detail = if errors.is_empty() {
            String::new()
        } else {
            format!(": {errors}")
        };
        let message = format!("Vault at {address} answered {status} to {what}{detail}");
        match status {
            429 | 500.. => SourceError::unavailable(message),
            401 | 403 => SourceError::denied(message),
            _ => SourceError::invalid(message),
        }
    }
}

/// Vault's `errors` list from an error body, joined, with every known secret blanked out and the
/// length capped. Only this text is ever quoted in an error message.
pub fn vault_errors(body: &Secret, secrets: &[&Secret]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        errors: Vec<String>,
    }
    let errors = serde_json::from_str::<ErrorBody>(body.expose())
        .map(|b| b.errors)
        .unwrap_or_default();
    scrub(&errors.join("; "), secrets)
}

/// Blanks out every secret in `text`, drops control characters, and caps the length.
pub fn scrub(text: &str, secrets: &[&Secret]) -> String {
    let mut text = text.replace(['\n', '\t', '\r'], " ");
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret.expose(), credchain_core::REDACTED);
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(MAX_QUOTED_ERROR) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_joined_and_secrets_blanked() {
        let body = Secret::new(r#"{"errors":["1 error occurred:\n\t* bad id s.FAKEtok\n\n"]}"#);
        let token = Secret::new("s.FAKEtok");
        let text = vault_errors(&body, &[&token]);
        assert_eq!(text, "1 error occurred: * bad id [REDACTED]");
    }

    #[test]
    fn a_body_that_is_not_an_error_quotes_nothing() {
        let body = Secret::new(r#"{"data":{"k":"pnu_FAKE_v"}}"#);
        assert_eq!(vault_errors(&body, &[]), "");
    }

    #[test]
    fn long_errors_are_cut() {
        let long = "x".repeat(1000);
        assert!(scrub(&long, &[]).len() < 400);
    }
}
