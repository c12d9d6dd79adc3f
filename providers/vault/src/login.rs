//! One login to Vault with the configured auth method, through vaultrs: reading the token,
//! secret id or JWT from where it lives, and turning vaultrs' errors into [`SourceError`]s
//! that quote no secret.

use std::path::Path;
use std::time::Duration;

use credchain_core::{Secret, SourceError};
use tracing::instrument::{WithDispatch, WithSubscriber};
use tracing::subscriber::NoSubscriber;
use vaultrs::api::{AuthInfo, EndpointMiddleware};
use vaultrs::client::{VaultClient, VaultClientSettings};
use vaultrs::error::ClientError;
use zeroize::Zeroize;

use crate::config::{AuthConfig, SecretIdSource};
use crate::http::{scrub, Http};

/// A token Vault issued or the environment supplied, with what Vault said about its life.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The token; prints as `[REDACTED]`.
    pub value: Secret,
    /// Its time to live when issued; `None` when it does not expire or is unknown.
    pub ttl: Option<Duration>,
    /// Whether `renew-self` may extend it.
    pub renewable: bool,
}

impl IssuedToken {
    fn from_auth(info: AuthInfo) -> Self {
        let AuthInfo {
            client_token,
            lease_duration,
            renewable,
            ..
        } = info;
        IssuedToken {
            value: Secret::new(client_token),
            ttl: ttl(lease_duration),
            renewable,
        }
    }
}

/// What `lookup-self` says about a token, for `credchain doctor` and the token method.
#[derive(Debug, Clone)]
pub struct TokenFacts {
    /// Remaining time to live; `None` when the token does not expire.
    pub ttl: Option<Duration>,
    /// Whether it can be renewed.
    pub renewable: bool,
    /// Its policies (names only).
    pub policies: Vec<String>,
}

fn ttl(seconds: u64) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// A vaultrs client over the source's own reqwest client, so vaultrs reads no environment
/// variable and uses the same timeouts and TLS settings. Its copies of the token are wiped when
/// it is dropped.
struct Client(VaultClient);

impl Client {
    fn new(http: &Http, token: Option<&Secret>) -> Result<Self, SourceError> {
        let address = url::Url::parse(http.raw_address())
            .map_err(|_| SourceError::invalid("the Vault address is not a URL"))?;
        let token = token.map(|t| t.expose().to_owned()).unwrap_or_default();
        let namespace = http.namespace().map(str::to_owned);
        let settings = VaultClientSettings {
            address,
            ca_certs: Vec::new(),
            identity: None,
            timeout: None,
            token: token.clone(),
            verify: true,
            version: 1,
            wrapping: false,
            namespace: namespace.clone(),
            proxy: None,
        };
        let middle = EndpointMiddleware {
            token,
            version: "v1".to_string(),
            wrap: None,
            namespace,
        };
        let rest =
            rustify::clients::reqwest::Client::new(http.raw_address(), http.client().clone());
        Ok(Client(VaultClient {
            http: rest,
            middle,
            settings,
        }))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.0.settings.token.zeroize();
        self.0.middle.token.zeroize();
    }
}

/// Runs a vaultrs call without a tracing subscriber. vaultrs and rustify log an expected refusal
/// (a wrong secret id, a token past its max TTL) at ERROR level; this source reports what
/// matters itself, once, at the right level.
fn quiet<F: std::future::Future>(call: F) -> WithDispatch<F> {
    call.with_subscriber(NoSubscriber::default())
}

/// Logs in with `auth` and returns the token. The token method asks `lookup-self` for the TTL.
pub async fn login(http: &Http, auth: &AuthConfig) -> Result<IssuedToken, SourceError> {
    let anonymous = Client::new(http, None)?;
    let client = &anonymous.0;
    let (sent, result) = match auth {
        AuthConfig::Token {
            file,
            env,
            helper_file,
        } => {
            let token = read_token(file.as_deref(), env.as_ref(), helper_file.as_deref()).await?;
            return token_facts(http, token).await;
        }
        AuthConfig::AppRole {
            mount,
            role_id,
            secret_id,
        } => {
            let sent = match secret_id {
                SecretIdSource::Inline(secret) => secret.clone(),
                SecretIdSource::File(path) => read_secret_file(path, "AppRole secret id").await?,
            };
            let call = vaultrs::auth::approle::login(client, mount, role_id, sent.expose());
            let result = quiet(call).await;
            (sent, result)
        }
        AuthConfig::Jwt {
            mount,
            role,
            token_file,
        } => {
            let sent = read_secret_file(token_file, "JWT").await?;
            let call = vaultrs::auth::oidc::login(client, mount, sent.expose(), Some(role.clone()));
            let result = quiet(call).await;
            (sent, result)
        }
        AuthConfig::Kubernetes {
            mount,
            role,
            token_file,
        } => {
            let sent = read_secret_file(token_file, "Kubernetes service account token").await?;
            let call = vaultrs::auth::kubernetes::login(client, mount, role, sent.expose());
            let result = quiet(call).await;
            (sent, result)
        }
    };
    result
        .map(IssuedToken::from_auth)
        .map_err(|e| login_error(http, auth, e, &sent))
}

/// The token method's "login": the token as it is, with the TTL `lookup-self` reports.
async fn token_facts(http: &Http, value: Secret) -> Result<IssuedToken, SourceError> {
    let facts = match lookup_self(http, &value).await {
        Ok(facts) => facts,
        // A token without the default policy may not look itself up; the read decides.
        Err(err) if err.kind() == credchain_core::ErrorKind::Denied => {
            tracing::debug!(error = %err, "vault token lookup refused; its TTL is unknown");
            TokenFacts {
                ttl: None,
                renewable: false,
                policies: Vec::new(),
            }
        }
        Err(err) => return Err(err),
    };
    Ok(IssuedToken {
        value,
        ttl: facts.ttl,
        renewable: facts.renewable,
    })
}

/// Extends `token` with `renew-self`; returns its new TTL and whether it stays renewable.
pub async fn renew_self(http: &Http, token: &Secret) -> Result<IssuedToken, SourceError> {
    let client = Client::new(http, Some(token))?;
    let info = quiet(vaultrs::token::renew_self(&client.0, None))
        .await
        .map_err(|e| api_error(http, "the token renewal", e, token))?;
    let mut renewed = IssuedToken::from_auth(info);
    // Vault repeats the token in the answer; keep the one we have rather than trust the copy.
    renewed.value = token.clone();
    Ok(renewed)
}

/// Asks Vault about `token` itself.
pub async fn lookup_self(http: &Http, token: &Secret) -> Result<TokenFacts, SourceError> {
    let client = Client::new(http, Some(token))?;
    let facts = quiet(vaultrs::token::lookup_self(&client.0))
        .await
        .map_err(|e| api_error(http, "the token lookup", e, token))?;
    Ok(TokenFacts {
        ttl: ttl(facts.ttl),
        renewable: facts.renewable.unwrap_or(false),
        policies: facts.policies.clone(),
    })
}

/// The token of the token method: `auth.token_file`, else `VAULT_TOKEN`, else `~/.vault-token`.
async fn read_token(
    file: Option<&Path>,
    env: Option<&Secret>,
    helper_file: Option<&Path>,
) -> Result<Secret, SourceError> {
    if let Some(file) = file {
        return read_secret_file(file, "Vault token").await;
    }
    if let Some(token) = env {
        return Ok(token.clone());
    }
    match helper_file {
        Some(path) if tokio::fs::try_exists(path).await.unwrap_or(false) => {
            read_secret_file(path, "Vault token").await
        }
        _ => Err(SourceError::not_configured(
            "no Vault token: VAULT_TOKEN is not set and there is no ~/.vault-token",
        )
        .with_hint(
            "log in with `vault login` / `bao login`, set VAULT_TOKEN, or configure `auth`",
        )),
    }
}

/// Reads a credential file, trimming the line end; the error names the file, not its content.
async fn read_secret_file(path: &Path, what: &str) -> Result<Secret, SourceError> {
    let raw = tokio::fs::read_to_string(path).await.map_err(|e| {
        SourceError::invalid(format!("cannot read the {what} file {}", path.display()))
            .with_cause(e)
    })?;
    let raw = Secret::new(raw);
    let trimmed = raw.expose().trim();
    if trimmed.is_empty() {
        return Err(SourceError::invalid(format!(
            "the {what} file {} is empty",
            path.display()
        )));
    }
    Ok(if trimmed.len() == raw.len() {
        raw
    } else {
        Secret::new(trimmed)
    })
}

/// A refused or failed login, naming the method and its mount.
fn login_error(http: &Http, auth: &AuthConfig, error: ClientError, sent: &Secret) -> SourceError {
    let what = format!(
        "the {} login at auth/{}",
        auth.method(),
        auth.mount().unwrap_or("token")
    );
    let err = match error {
        // Vault answers a wrong role, secret id or JWT with 400.
        ClientError::APIError { code: 400, errors } => {
            http.status_error(403, &what, &scrub(&errors.join("; "), &[sent]))
        }
        other => api_error(http, &what, other, sent),
    };
    match err.kind() {
        credchain_core::ErrorKind::Invalid => err.with_hint(format!(
            "check that the {} auth method is enabled at auth/{}",
            auth.method(),
            auth.mount().unwrap_or("token")
        )),
        _ => err,
    }
}

/// Classifies a vaultrs error. Only the Display text of vaultrs' errors and Vault's own error
/// list (with `secret` blanked out) reach the message; vaultrs' errors are never attached as
/// causes, because their `Debug` can hold a response body with a token in it.
fn api_error(http: &Http, what: &str, error: ClientError, secret: &Secret) -> SourceError {
    match error {
        ClientError::APIError { code, errors } => {
            http.status_error(code, what, &scrub(&errors.join("; "), &[secret]))
        }
        ClientError::RestClientError { source } => match source {
            rustify::errors::ClientError::RequestError { source, .. } => {
                match source.downcast::<reqwest::Error>() {
                    Ok(e) => http.transport_error(e),
                    Err(_) => SourceError::unavailable(format!(
                        "{what} could not reach Vault at {}",
                        http.address()
                    )),
                }
            }
            rustify::errors::ClientError::ServerResponseError { code, .. } => {
                http.status_error(code, what, "")
            }
            other => SourceError::invalid(format!(
                "unexpected answer from Vault at {} to {what}: {other}",
                http.address()
            )),
        },
        other => SourceError::invalid(format!(
            "unexpected answer from Vault at {} to {what}: {other}",
            http.address()
        )),
    }
}
