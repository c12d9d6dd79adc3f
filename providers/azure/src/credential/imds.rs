//! Managed identity through the instance metadata service (VMs, scale sets, AKS nodes), with a
//! short first probe so that a machine without one, such as a laptop, moves on to the next
//! credential within about a second instead of waiting through the SDK's retries.

use std::fmt;
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::time::OffsetDateTime;
use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

use super::{LoginFailure, LoginFailureKind};

/// Where the metadata service hands out tokens.
const TOKEN_PATH: &str = "/metadata/identity/oauth2/token";
/// The metadata service API version asked for.
const API_VERSION: &str = "2018-02-01";
/// How long a token lives when the answer does not say.
const FALLBACK_LIFETIME_SECS: i64 = 3600;

/// What the probe learnt about the metadata service.
#[derive(Debug, Clone)]
enum Probe {
    /// Not asked yet.
    Untried,
    /// It answered once, so it exists: later requests get the full timeout.
    Answered,
    /// Nothing answered; the reason, given again on every later call.
    Silent(String),
}

/// A managed identity token from the instance metadata service.
pub struct ImdsCredential {
    client: reqwest::Client,
    endpoint: Url,
    client_id: Option<String>,
    probe_timeout: Duration,
    timeout: Duration,
    probe: Mutex<Probe>,
}

impl fmt::Debug for ImdsCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImdsCredential")
            .field("endpoint", &self.endpoint.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Why one request for a token failed.
enum Failure {
    /// No answer: nothing listens, or it did not answer in time.
    Silent(String),
    /// An answer that is not a token.
    Answered(LoginFailure),
}

/// The metadata service's token answer. `expires_on` comes as a string of epoch seconds.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_on: Option<serde_json::Value>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// The metadata service's error answer.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorAnswer {
    error: String,
    error_description: String,
}

impl ImdsCredential {
    /// A credential asking `endpoint` (scheme and host) for tokens, as the user-assigned
    /// identity `client_id` when one is given. With `probe_timeout`, the first request gives up
    /// after it and a silent endpoint means "not set up here"; without, every request waits up
    /// to `timeout` and silence is an outage (for a pinned managed identity).
    pub fn new(
        client: reqwest::Client,
        endpoint: &Url,
        client_id: Option<String>,
        probe_timeout: Option<Duration>,
        timeout: Duration,
    ) -> Self {
        let mut endpoint = endpoint.clone();
        endpoint.set_path(TOKEN_PATH);
        let probe = match probe_timeout {
            Some(_) => Probe::Untried,
            None => Probe::Answered,
        };
        ImdsCredential {
            client,
            endpoint,
            client_id,
            probe_timeout: probe_timeout.unwrap_or(timeout),
            timeout,
            probe: Mutex::new(probe),
        }
    }

    /// Asks for a token for `resource`, giving up after `timeout`.
    async fn request(&self, resource: &str, timeout: Duration) -> Result<AccessToken, Failure> {
        let mut url = self.endpoint.clone();
        url.query_pairs_mut()
            .append_pair("api-version", API_VERSION)
            .append_pair("resource", resource);
        if let Some(id) = &self.client_id {
            url.query_pairs_mut().append_pair("client_id", id);
        }
        let exchange = async {
            let response = self
                .client
                .get(url)
                .header("Metadata", "true")
                .send()
                .await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.bytes().await?))
        };
        let silent = |why: String| {
            Failure::Silent(format!(
                "no managed identity endpoint answered at {} within {} ms ({why})",
                self.endpoint,
                timeout.as_millis()
            ))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => Err(silent("timed out".into())),
            Ok(Err(err)) => Err(silent(crate::classify::chain_text(&err.without_url()))),
            Ok(Ok((status, body))) => parse(status, &body).map_err(Failure::Answered),
        }
    }
}

#[async_trait::async_trait]
impl TokenCredential for ImdsCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let resource = scope_resource(scopes).map_err(LoginFailure::into_sdk)?;
        let mut probe = self.probe.lock().await;
        let state = probe.clone();
        match state {
            Probe::Silent(why) => {
                Err(LoginFailure::new(LoginFailureKind::NotSetUp, why).into_sdk())
            }
            Probe::Answered => {
                drop(probe);
                let result = self.request(resource, self.timeout).await;
                result.map_err(|f| f.into_login(false).into_sdk())
            }
            Probe::Untried => {
                // The lock is held through the probe, so concurrent first lookups probe once.
                let result = self.request(resource, self.probe_timeout).await;
                *probe = match &result {
                    Err(Failure::Silent(why)) => Probe::Silent(why.clone()),
                    _ => Probe::Answered,
                };
                result.map_err(|f| f.into_login(true).into_sdk())
            }
        }
    }
}

impl Failure {
    /// No answer to the probe means there is no metadata service here; no answer later is an
    /// outage of one that exists.
    fn into_login(self, probing: bool) -> LoginFailure {
        match self {
            Failure::Silent(why) if probing => LoginFailure::new(LoginFailureKind::NotSetUp, why),
            Failure::Silent(why) => LoginFailure::new(LoginFailureKind::Unreachable, why),
            Failure::Answered(failure) => failure,
        }
    }
}

/// `https://vault.azure.net/.default` asks for the resource `https://vault.azure.net`.
fn scope_resource<'a>(scopes: &[&'a str]) -> Result<&'a str, LoginFailure> {
    match scopes {
        [scope] => Ok(scope.strip_suffix("/.default").unwrap_or(scope)),
        _ => Err(LoginFailure::new(
            LoginFailureKind::Refused,
            "managed identity needs exactly one scope",
        )),
    }
}

/// Reads the metadata service's answer. A 400 means this machine has no such identity, which
/// counts as "not set up"; a 429 or 5xx is an outage; another status is a refusal.
fn parse(status: reqwest::StatusCode, body: &[u8]) -> Result<AccessToken, LoginFailure> {
    if status.is_success() {
        let answer: TokenAnswer = serde_json::from_slice(body).map_err(|_| {
            LoginFailure::new(
                LoginFailureKind::Unreachable,
                "the managed identity endpoint's answer is not a token",
            )
        })?;
        let expires_on = expiry(&answer);
        return Ok(AccessToken::new(answer.access_token, expires_on));
    }
    let error: ErrorAnswer = serde_json::from_slice(body).unwrap_or_default();
    let message = format!(
        "the managed identity endpoint answered {status}: {} {}",
        error.error, error.error_description
    );
    let kind = match status.as_u16() {
        400 => LoginFailureKind::NotSetUp,
        404 | 408 | 410 | 429 | 500.. => LoginFailureKind::Unreachable,
        _ => LoginFailureKind::Refused,
    };
    Err(LoginFailure::new(kind, super::one_line(&message)))
}

/// When the token expires: `expires_on` (epoch seconds), else now plus `expires_in`.
fn expiry(answer: &TokenAnswer) -> OffsetDateTime {
    let number = |v: &Option<serde_json::Value>| -> Option<i64> {
        match v.as_ref()? {
            serde_json::Value::String(s) => s.trim().parse().ok(),
            serde_json::Value::Number(n) => n.as_i64(),
            _ => None,
        }
    };
    if let Some(at) = number(&answer.expires_on) {
        if let Ok(at) = OffsetDateTime::from_unix_timestamp(at) {
            return at;
        }
    }
    let secs = number(&answer.expires_in).unwrap_or(FALLBACK_LIFETIME_SECS);
    OffsetDateTime::now_utc() + azure_core::time::Duration::seconds(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answer_with_string_expiry_is_read() {
        let body = br#"{"access_token":"FAKE_mi_token","expires_on":"4102444800","resource":"r"}"#;
        let token = parse(reqwest::StatusCode::OK, body).unwrap();
        assert_eq!(token.expires_on.unix_timestamp(), 4_102_444_800);
        assert!(!format!("{token:?}").contains("FAKE_mi_token"));
    }

    #[test]
    fn bad_request_means_no_identity_here() {
        let body = br#"{"error":"invalid_request","error_description":"Identity not found"}"#;
        let err = parse(reqwest::StatusCode::BAD_REQUEST, body).unwrap_err();
        assert_eq!(err.kind, LoginFailureKind::NotSetUp);
        assert!(err.message.contains("Identity not found"));
    }

    #[test]
    fn server_error_is_an_outage() {
        let err = parse(reqwest::StatusCode::BAD_GATEWAY, b"").unwrap_err();
        assert_eq!(err.kind, LoginFailureKind::Unreachable);
    }

    #[test]
    fn scope_becomes_resource() {
        assert_eq!(
            scope_resource(&["https://vault.azure.net/.default"]).unwrap(),
            "https://vault.azure.net"
        );
        assert!(scope_resource(&[]).is_err());
    }
}
