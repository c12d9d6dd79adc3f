//! The Azure Key Vault source: one secret per key, read through the official SDK's
//! `SecretClient` with the login chain of [`crate::credential`].

use std::fmt;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_security_keyvault_secrets::models::Secret as VaultSecret;
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use credchain_core::value::select;
use credchain_core::{
    async_trait, redact_url, CredentialSource, Diagnosis, Environment, Lifetime, Provenance,
    Resolved, SourceError, SourceSettings,
};
use url::Url;

use crate::classify::{self, Failure, VaultError};
use crate::config::{AzureConfig, ENV_VAULT_URL};
use crate::credential::{CredentialChain, LoginFailure, LoginFailureKind};
use crate::http::HttpClients;
use crate::naming;

/// What to tell a user the vault refused: the role that grants reading secret values.
const DENIED_HINT: &str = "give this identity the `Key Vault Secrets User` role on the vault \
                           (or, on a vault using access policies, the `get` permission on secrets)";

/// Reads keys from Azure Key Vault secrets.
pub struct AzureSource {
    settings: SourceSettings,
    config: AzureConfig,
    vault: Option<Vault>,
}

/// The parts that exist only when a vault is configured.
struct Vault {
    host: String,
    client: SecretClient,
    chain: Arc<CredentialChain>,
}

/// The secret a key is read from.
#[derive(Debug)]
struct Target {
    name: String,
    version: Option<String>,
    field: Option<String>,
}

impl fmt::Debug for AzureSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureSource")
            .field("name", &self.settings.name)
            .field("vault", &self.vault.as_ref().map(|v| v.host.as_str()))
            .field("credentials", &self.vault.as_ref().map(|v| v.chain.kinds()))
            .finish_non_exhaustive()
    }
}

impl AzureSource {
    /// Builds the source of a `type = "azure"` table. No request is made here; a missing vault
    /// URL makes every lookup answer "not configured".
    pub fn from_options(
        settings: SourceSettings,
        options: toml::Table,
        env: Arc<dyn Environment>,
    ) -> Result<Self, SourceError> {
        let config = AzureConfig::from_options(&settings, options, env.as_ref())?;
        Self::new(settings, config)
    }

    /// Builds the source from resolved settings.
    pub fn new(settings: SourceSettings, config: AzureConfig) -> Result<Self, SourceError> {
        let vault = match &config.vault_url {
            Some(url) => Some(Vault::new(&settings, &config, url)?),
            None => None,
        };
        Ok(AzureSource {
            settings,
            config,
            vault,
        })
    }

    /// The secret `key` maps to, checked before any request.
    fn target(&self, key: &str) -> Result<Target, SourceError> {
        let address = self.settings.address(key, naming::natural_name)?;
        let invalid = |err: naming::NameError| {
            SourceError::invalid(format!("source `{}`: key {key}: {err}", self.settings.name))
                .with_hint(
                "name the secret in `keys`, e.g. KEY = \"secret-name\" or \"secret-name#field\"",
            )
        };
        naming::check_name(&address.location).map_err(invalid)?;
        let version = self.config.versions.get(key).cloned();
        if let Some(version) = &version {
            naming::check_version(&address.location, version).map_err(invalid)?;
        }
        Ok(Target {
            name: address.location,
            version,
            field: address.field,
        })
    }

    fn not_configured(&self) -> SourceError {
        SourceError::not_configured(format!(
            "source `{}`: no Key Vault configured (no `vault_url` option and no {ENV_VAULT_URL})",
            self.settings.name
        ))
    }

    /// Turns the vault's secret into a resolved value, or absent.
    fn resolve(
        &self,
        vault: &Vault,
        key: &str,
        target: &Target,
        secret: VaultSecret,
    ) -> Result<Option<Resolved>, SourceError> {
        let origin = format!("secret `{}` in vault {}", target.name, vault.host);
        if secret.attributes.as_ref().and_then(|a| a.enabled) == Some(false) {
            tracing::warn!(source = %self.settings.name, secret = %target.name, "secret is disabled; treated as absent");
            return Ok(None);
        }
        let version = secret
            .id
            .as_deref()
            .and_then(naming::version_of_id)
            .or_else(|| target.version.clone());
        let Some(raw) = secret.value else {
            tracing::debug!(source = %self.settings.name, secret = %target.name, "secret has no value; treated as absent");
            return Ok(None);
        };
        let Some(value) = select(key, &origin, raw, target.field.as_deref())? else {
            return Ok(None);
        };
        tracing::debug!(source = %self.settings.name, secret = %target.name, version = ?version, "read secret from Key Vault");
        let location = match &target.field {
            Some(field) => format!("{}/secrets/{}#{field}", vault.host, target.name),
            None => format!("{}/secrets/{}", vault.host, target.name),
        };
        Ok(Some(Resolved {
            value,
            provenance: Provenance {
                source: self.settings.name.clone(),
                location,
                version,
            },
            lifetime: Lifetime::Remote { expires_in: None },
        }))
    }

    /// What a failed read means for the chain.
    fn failed(
        &self,
        vault: &Vault,
        target: &Target,
        failure: Failure,
    ) -> Result<Option<Resolved>, SourceError> {
        let (source, host, name) = (&self.settings.name, &vault.host, &target.name);
        let err = match failure {
            Failure::NotFound => {
                tracing::debug!(source = %source, secret = %name, "no such secret; treated as absent");
                return Ok(None);
            }
            Failure::Disabled => {
                tracing::warn!(source = %source, secret = %name, "secret is disabled; treated as absent");
                return Ok(None);
            }
            Failure::Denied(error) => denied(source, host, name, &error, vault.chain.chosen()),
            Failure::Throttled => SourceError::unavailable(format!(
                "source `{source}`: vault {host} kept throttling requests (429) after {} retries",
                self.config.max_retries
            )),
            Failure::ServerFailed(error) => SourceError::unavailable(format!(
                "source `{source}`: vault {host} failed reading secret `{name}` ({})",
                error.summary()
            )),
            Failure::BadRequest(error) => SourceError::invalid(format!(
                "source `{source}`: vault {host} refused reading secret `{name}` ({})",
                error.summary()
            ))
            .with_hint("check `vault_url` and the pinned `version`"),
            Failure::Login(kind, message) => login_failed(source, kind, &message),
            Failure::Unreachable(text) => SourceError::unavailable(format!(
                "source `{source}`: cannot reach vault {host}: {text}"
            )),
            Failure::Refused(text) => refused(source, host, &text),
        };
        Err(err)
    }
}

impl Vault {
    fn new(
        settings: &SourceSettings,
        config: &AzureConfig,
        url: &Url,
    ) -> Result<Self, SourceError> {
        let invalid =
            |what: String| SourceError::invalid(format!("source `{}`: {what}", settings.name));
        let http = HttpClients::new(config).map_err(|e| invalid(e.to_string()).with_cause(e))?;
        let chain = Arc::new(CredentialChain::new(config, &http));
        let options = SecretClientOptions {
            client_options: http.client_options(config),
            verify_challenge_resource: Some(config.verify_challenge_resource),
            ..SecretClientOptions::default()
        };
        let credential: Arc<dyn TokenCredential> = chain.clone();
        let client = SecretClient::new(url.as_str(), credential, Some(options))
            .map_err(|e| invalid(format!("cannot set up the Key Vault client: {e}")))?;
        Ok(Vault {
            host: url[url::Position::BeforeHost..url::Position::AfterPort].to_string(),
            client,
            chain,
        })
    }

    /// One `GET /secrets/{name}[/{version}]`; logging in first when there is no token yet.
    async fn read(&self, target: &Target) -> Result<VaultSecret, Failure> {
        let options = azure_security_keyvault_secrets::models::SecretClientGetSecretOptions {
            secret_version: target.version.clone(),
            ..Default::default()
        };
        let response = self
            .client
            .get_secret(&target.name, Some(options))
            .await
            .map_err(|e| classify::classify(&e))?;
        // The model's parse error is not shown: serde may quote the value it choked on.
        response.into_model().map_err(|_| {
            Failure::ServerFailed(VaultError {
                status: 200,
                message: Some("the answer is not a secret bundle".into()),
                ..VaultError::default()
            })
        })
    }

    /// The token scope of this vault's cloud, for `diagnose` (lookups learn it from the
    /// vault's login challenge instead).
    fn scope(&self) -> String {
        const CLOUDS: &[&str] = &[
            "vault.azure.net",
            "vault.azure.cn",
            "vault.usgovcloudapi.net",
            "managedhsm.azure.net",
        ];
        let cloud = CLOUDS
            .iter()
            .find(|c| self.host.ends_with(&format!(".{c}")))
            .unwrap_or(&CLOUDS[0]);
        format!("https://{cloud}/.default")
    }
}

#[async_trait]
impl CredentialSource for AzureSource {
    fn name(&self) -> &str {
        &self.settings.name
    }

    async fn fetch(&self, key: &str) -> Result<Option<Resolved>, SourceError> {
        let Some(vault) = &self.vault else {
            return Err(self.not_configured());
        };
        let target = self.target(key)?;
        match tokio::time::timeout(self.config.timeout, vault.read(&target)).await {
            Ok(Ok(secret)) => self.resolve(vault, key, &target, secret),
            Ok(Err(failure)) => self.failed(vault, &target, failure),
            Err(_) => Err(SourceError::unavailable(format!(
                "source `{}`: reading secret `{}` from vault {} (logging in included) did not \
                 finish within {}",
                self.settings.name,
                target.name,
                vault.host,
                humantime::format_duration(self.config.timeout)
            ))),
        }
    }

    async fn diagnose(&self) -> Result<Diagnosis, SourceError> {
        let (Some(vault), Some(url)) = (&self.vault, &self.config.vault_url) else {
            return Err(self.not_configured());
        };
        let mut diagnosis = Diagnosis::default();
        diagnosis
            .details
            .push(format!("vault: {}", redact_url(url.as_str())));
        let kinds: Vec<&str> = vault.chain.kinds().iter().map(|k| k.name()).collect();
        diagnosis
            .details
            .push(format!("credentials to try: {}", kinds.join(", ")));
        diagnosis
            .details
            .extend(vault.chain.skipped().iter().map(|s| format!("skipped {s}")));
        let scope = vault.scope();
        let scopes = [scope.as_str()];
        let login = vault.chain.get_token(&scopes, None);
        match tokio::time::timeout(self.config.timeout, login).await {
            Ok(Ok(_token)) => {}
            Ok(Err(err)) => {
                let (kind, message) = match LoginFailure::find(&err) {
                    Some(failure) => (failure.kind, failure.message.clone()),
                    None => (LoginFailureKind::Refused, classify::chain_text(&err)),
                };
                return Err(login_failed(&self.settings.name, kind, &message));
            }
            Err(_) => {
                return Err(SourceError::unavailable(format!(
                    "source `{}`: logging in to Entra ID did not finish in time",
                    self.settings.name
                )))
            }
        }
        if let Some(kind) = vault.chain.chosen() {
            diagnosis.details.push(format!("credential: {kind}"));
        }
        Ok(diagnosis)
    }
}

/// A 401 (the token was refused even after logging in again) or a 403 (the identity may not
/// read secrets).
fn denied(
    source: &str,
    host: &str,
    name: &str,
    error: &VaultError,
    credential: Option<crate::config::CredentialKind>,
) -> SourceError {
    let by = credential
        .map(|k| format!(" (credential `{k}`)"))
        .unwrap_or_default();
    if error.status == 401 {
        return SourceError::denied(format!(
            "source `{source}`: vault {host} rejected the access token{by}: {}",
            error.summary()
        ))
        .with_hint("the identity may belong to another tenant than the vault; check tenant_id");
    }
    let who = error
        .principal()
        .map(|p| format!(" to the principal with {p}"))
        .unwrap_or_default();
    SourceError::denied(format!(
        "source `{source}`: vault {host} denied reading secret `{name}`{who}{by}: {}",
        error.summary()
    ))
    .with_hint(DENIED_HINT)
}

/// A login that did not work: no credential here, refused, or Entra ID unreachable.
fn login_failed(source: &str, kind: LoginFailureKind, message: &str) -> SourceError {
    match kind {
        LoginFailureKind::NotSetUp => {
            SourceError::not_configured(format!("source `{source}`: {message}")).with_hint(
                "set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, run `az login`, \
                 or pin `credential` in the source's options",
            )
        }
        LoginFailureKind::Refused => SourceError::denied(format!(
            "source `{source}`: logging in to Entra ID failed: {message}"
        )),
        LoginFailureKind::Unreachable => SourceError::unavailable(format!(
            "source `{source}`: cannot log in to Entra ID: {message}"
        )),
    }
}

/// The SDK refused before or while sending; a challenge naming another domain is the usual case.
fn refused(source: &str, host: &str, text: &str) -> SourceError {
    let err = SourceError::invalid(format!(
        "source `{source}`: the request to vault {host} was refused by the Azure SDK: {text}"
    ));
    if text.contains("challenge") {
        err.with_hint(
            "the vault's login challenge names another domain; for a private endpoint or a \
             test double set verify_challenge_resource = false",
        )
    } else {
        err
    }
}
