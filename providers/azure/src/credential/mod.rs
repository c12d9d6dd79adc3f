//! The Entra ID login chain: which credentials the source tries, in which order, and what a
//! failed login means (not set up here, refused, or unreachable).
//!
//! The order is the one Azure's own tools use: a service principal from `AZURE_CLIENT_SECRET`,
//! a workload identity from `AZURE_FEDERATED_TOKEN_FILE`, the machine's managed identity, then
//! the developer's `az login`. A credential that is not set up here passes to the next; the
//! first one that logs in is used from then on.

mod cli;
mod federated;
mod imds;

use std::error::Error as StdError;
use std::fmt;
use std::sync::{Arc, OnceLock};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind as SdkErrorKind;
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientAssertionCredential,
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
};

use crate::config::{
    AzureConfig, CredentialKind, AZURE_CLI_TIMEOUT, ENV_CLIENT_ID, ENV_CLIENT_SECRET,
    ENV_FEDERATED_TOKEN_FILE, ENV_TENANT_ID, MANAGED_IDENTITY_PROBE_TIMEOUT,
};
use crate::http::HttpClients;

/// What a failed login means for the chain and for the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailureKind {
    /// The credential is not set up in this environment; the chain tries the next one.
    NotSetUp,
    /// Entra ID (or the metadata service) refused the credential.
    Refused,
    /// The login endpoint could not be reached or failed.
    Unreachable,
}

/// A failed login, carried inside the SDK's error so the source can classify it. Its text
/// never holds a token, an assertion or a client secret.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct LoginFailure {
    /// What it means.
    pub kind: LoginFailureKind,
    /// The credential that failed; `None` when the whole chain had nothing to offer.
    pub credential: Option<CredentialKind>,
    /// What happened, for the user.
    pub message: String,
}

impl LoginFailure {
    fn new(kind: LoginFailureKind, message: impl Into<String>) -> Self {
        LoginFailure {
            kind,
            credential: None,
            message: message.into(),
        }
    }

    /// Wraps the failure in the SDK's error type, as `TokenCredential` must return it.
    pub fn into_sdk(self) -> azure_core::Error {
        azure_core::Error::new(SdkErrorKind::Credential, self)
    }

    /// Finds a login failure in the causes of `err`.
    pub fn find<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a LoginFailure> {
        causes(err).find_map(|e| e.downcast_ref::<LoginFailure>())
    }
}

/// `err` and its causes, outermost first.
pub fn causes<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |e| (*e).source())
}

/// One credential of the chain.
struct Link {
    kind: CredentialKind,
    credential: Arc<dyn TokenCredential>,
}

/// The credentials to try, in order. After the first login succeeds only that credential is
/// used, so a laptop probes the metadata service once, not on every token refresh.
pub struct CredentialChain {
    links: Vec<Link>,
    skipped: Vec<String>,
    chosen: OnceLock<usize>,
}

impl fmt::Debug for CredentialChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialChain")
            .field("credentials", &self.kinds())
            .field("chosen", &self.chosen())
            .finish()
    }
}

impl CredentialChain {
    /// The chain for `config`: the pinned credential, or every credential set up here.
    pub fn new(config: &AzureConfig, http: &HttpClients) -> Self {
        let kinds = match config.credential {
            Some(kind) => vec![kind],
            None => CredentialKind::ALL.to_vec(),
        };
        let mut chain = CredentialChain {
            links: Vec::new(),
            skipped: Vec::new(),
            chosen: OnceLock::new(),
        };
        for kind in kinds {
            match build(kind, config, http) {
                Ok(credential) => chain.links.push(Link { kind, credential }),
                Err(why) => chain.skipped.push(format!("{kind}: {why}")),
            }
        }
        chain
    }

    /// The credentials the chain will try, in order.
    pub fn kinds(&self) -> Vec<CredentialKind> {
        self.links.iter().map(|l| l.kind).collect()
    }

    /// Why the other credentials are not part of the chain.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// The credential that logged in, once one has.
    pub fn chosen(&self) -> Option<CredentialKind> {
        self.chosen.get().map(|&i| self.links[i].kind)
    }

    /// Tries each credential until one logs in.
    async fn first_login(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> Result<AccessToken, LoginFailure> {
        let mut reasons = self.skipped.clone();
        for (index, link) in self.links.iter().enumerate() {
            match link.login(scopes, options.clone()).await {
                Ok(token) => {
                    let _ = self.chosen.set(index);
                    tracing::debug!(credential = link.kind.name(), "logged in to Entra ID");
                    return Ok(token);
                }
                Err(failure) if failure.kind == LoginFailureKind::NotSetUp => {
                    tracing::debug!(
                        credential = link.kind.name(),
                        reason = %failure.message,
                        "credential not available here; trying the next one"
                    );
                    reasons.push(format!("{}: {}", link.kind, failure.message));
                }
                Err(failure) => return Err(failure),
            }
        }
        Err(LoginFailure::new(
            LoginFailureKind::NotSetUp,
            format!(
                "no Azure credential is available here ({})",
                reasons.join("; ")
            ),
        ))
    }
}

#[async_trait::async_trait]
impl TokenCredential for CredentialChain {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        // TODO: after a 401 the SDK asks again, and its credentials answer from their own token
        // cache; azure_identity 1.0 has no way to bypass it (TokenRequestOptions carries no
        // "fresh token" flag). Pass one here when the SDK grows it.
        let result = match self.chosen.get() {
            Some(&index) => self.links[index].login(scopes, options).await,
            None => self.first_login(scopes, options).await,
        };
        result.map_err(LoginFailure::into_sdk)
    }
}

impl Link {
    /// Gets a token and says what a failure means.
    async fn login(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> Result<AccessToken, LoginFailure> {
        self.credential
            .get_token(scopes, options)
            .await
            .map_err(|err| describe(self.kind, &err))
    }
}

/// Classifies a credential's error: a failure the credential itself classified is kept; an
/// answer from Entra ID is a refusal (4xx) or an outage (429, 5xx); the Azure CLI failing is
/// "not set up" unless it timed out.
fn describe(kind: CredentialKind, err: &azure_core::Error) -> LoginFailure {
    let message = one_line(&err.to_string());
    let class = match LoginFailure::find(err) {
        Some(inner) => inner.kind,
        None if timed_out(err) => LoginFailureKind::Unreachable,
        None if kind == CredentialKind::AzureCli => LoginFailureKind::NotSetUp,
        None => sdk_login_class(err),
    };
    LoginFailure {
        kind: class,
        credential: Some(kind),
        message,
    }
}

/// What an SDK credential's error means, from the deepest HTTP status or transport error.
fn sdk_login_class(err: &azure_core::Error) -> LoginFailureKind {
    for cause in causes(err) {
        let Some(sdk) = cause.downcast_ref::<azure_core::Error>() else {
            continue;
        };
        match sdk.kind() {
            SdkErrorKind::HttpResponse { status, .. } => {
                let code = u16::from(*status);
                return if code == 429 || code == 408 || code >= 500 {
                    LoginFailureKind::Unreachable
                } else {
                    LoginFailureKind::Refused
                };
            }
            SdkErrorKind::Connection | SdkErrorKind::Io => return LoginFailureKind::Unreachable,
            _ => {}
        }
    }
    LoginFailureKind::Refused
}

/// Whether a cause of `err` is an I/O timeout (the Azure CLI hanging, a login endpoint stalling).
fn timed_out(err: &azure_core::Error) -> bool {
    causes(err).any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

/// SDK messages span lines (a troubleshooting link on the last); messages here are one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Builds one credential, or says why it is not set up here.
fn build(
    kind: CredentialKind,
    config: &AzureConfig,
    http: &HttpClients,
) -> Result<Arc<dyn TokenCredential>, String> {
    match kind {
        CredentialKind::ClientSecret => client_secret(config, http),
        CredentialKind::WorkloadIdentity => workload_identity(config, http),
        CredentialKind::ManagedIdentity => managed_identity(config, http),
        CredentialKind::AzureCli => azure_cli(config),
    }
}

/// A service principal with a client secret.
fn client_secret(
    config: &AzureConfig,
    http: &HttpClients,
) -> Result<Arc<dyn TokenCredential>, String> {
    let (Some(tenant), Some(client_id), Some(secret)) =
        (&config.tenant_id, &config.client_id, &config.client_secret)
    else {
        return Err(missing(&[
            (ENV_TENANT_ID, config.tenant_id.is_some()),
            (ENV_CLIENT_ID, config.client_id.is_some()),
            (ENV_CLIENT_SECRET, config.client_secret.is_some()),
        ]));
    };
    let options = ClientSecretCredentialOptions {
        client_options: http.client_options(config),
    };
    let secret = azure_core::credentials::Secret::new(secret.expose().to_string());
    ClientSecretCredential::new(tenant, client_id.clone(), secret, Some(options))
        .map(|c| c as Arc<dyn TokenCredential>)
        .map_err(|e| one_line(&e.to_string()))
}

/// A workload identity: the federated token file, read again on every login, is exchanged
/// for a token (the SDK's own workload credential re-reads the file only every 10 minutes).
fn workload_identity(
    config: &AzureConfig,
    http: &HttpClients,
) -> Result<Arc<dyn TokenCredential>, String> {
    let (Some(tenant), Some(client_id), Some(file)) = (
        &config.tenant_id,
        &config.client_id,
        &config.federated_token_file,
    ) else {
        return Err(missing(&[
            (ENV_TENANT_ID, config.tenant_id.is_some()),
            (ENV_CLIENT_ID, config.client_id.is_some()),
            (
                ENV_FEDERATED_TOKEN_FILE,
                config.federated_token_file.is_some(),
            ),
        ]));
    };
    let options = ClientAssertionCredentialOptions {
        client_options: http.client_options(config),
    };
    let assertion = federated::FederatedTokenFile::new(file.clone());
    ClientAssertionCredential::new(tenant.clone(), client_id.clone(), assertion, Some(options))
        .map(|c| c as Arc<dyn TokenCredential>)
        .map_err(|e| one_line(&e.to_string()))
}

/// The machine's managed identity: App Service and Container Apps through the SDK (their
/// endpoint is local and always answers); VMs and AKS nodes through the metadata service, probed
/// with a short timeout unless the config pins managed identity (then a slow first answer, as
/// on a VM that just booted, is waited for).
fn managed_identity(
    config: &AzureConfig,
    http: &HttpClients,
) -> Result<Arc<dyn TokenCredential>, String> {
    if !config.app_service_identity {
        let pinned = config.credential == Some(CredentialKind::ManagedIdentity);
        return Ok(Arc::new(imds::ImdsCredential::new(
            http.imds.clone(),
            &config.imds_endpoint,
            config.client_id.clone(),
            (!pinned).then_some(MANAGED_IDENTITY_PROBE_TIMEOUT),
            config.timeout,
        )));
    }
    let options = ManagedIdentityCredentialOptions {
        user_assigned_id: config.client_id.clone().map(UserAssignedId::ClientId),
        client_options: http.client_options(config),
    };
    ManagedIdentityCredential::new(Some(options))
        .map(|c| c as Arc<dyn TokenCredential>)
        .map_err(|e| one_line(&e.to_string()))
}

/// The developer's `az login`, run with the injected `PATH` and a timeout.
fn azure_cli(config: &AzureConfig) -> Result<Arc<dyn TokenCredential>, String> {
    let options = AzureCliCredentialOptions {
        executor: Some(Arc::new(cli::CliExecutor::new(
            config.path_var.clone(),
            AZURE_CLI_TIMEOUT,
        ))),
        ..AzureCliCredentialOptions::default()
    };
    AzureCliCredential::new(Some(options))
        .map(|c| c as Arc<dyn TokenCredential>)
        .map_err(|e| one_line(&e.to_string()))
}

/// "A, B and C are not set", or "needs A, B and C; C is not set".
fn missing(vars: &[(&str, bool)]) -> String {
    let names: Vec<&str> = vars.iter().map(|(n, _)| *n).collect();
    let unset: Vec<&str> = vars
        .iter()
        .filter(|(_, set)| !set)
        .map(|(n, _)| *n)
        .collect();
    let verb = if unset.len() == 1 { "is" } else { "are" };
    if unset.len() == names.len() {
        format!("{} {verb} not set", and_list(&names))
    } else {
        format!(
            "needs {}; {} {verb} not set",
            and_list(&names),
            and_list(&unset)
        )
    }
}

/// "A", "A and B", "A, B and C".
fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credchain_core::{MapEnv, SourceSettings};

    fn config(env: &[(&str, &str)], options: &str) -> AzureConfig {
        AzureConfig::from_options(
            &SourceSettings::new("azure"),
            options.parse().unwrap(),
            &MapEnv::new(env.iter().copied()),
        )
        .unwrap()
    }

    fn chain(env: &[(&str, &str)], options: &str) -> CredentialChain {
        let cfg = config(env, options);
        CredentialChain::new(&cfg, &HttpClients::new(&cfg).unwrap())
    }

    #[test]
    fn without_variables_only_managed_identity_and_cli_remain() {
        let chain = chain(&[], "");
        assert_eq!(
            chain.kinds(),
            [CredentialKind::ManagedIdentity, CredentialKind::AzureCli]
        );
        assert!(chain.skipped()[0].contains("AZURE_CLIENT_SECRET"));
    }

    #[test]
    fn client_secret_variables_put_the_service_principal_first() {
        let env = [
            (ENV_TENANT_ID, "tenant-1"),
            (ENV_CLIENT_ID, "client-1"),
            (ENV_CLIENT_SECRET, "FAKE_client_secret_2"),
        ];
        let chain = chain(&env, "");
        assert_eq!(chain.kinds()[0], CredentialKind::ClientSecret);
        assert!(!format!("{chain:?}").contains("FAKE_client_secret_2"));
    }

    #[test]
    fn pinned_credential_is_the_only_one() {
        let chain = chain(&[], "credential = \"azure_cli\"");
        assert_eq!(chain.kinds(), [CredentialKind::AzureCli]);
    }

    #[test]
    fn missing_lists_the_unset_variables() {
        assert_eq!(
            missing(&[("A", true), ("B", false)]),
            "needs A and B; B is not set"
        );
        assert_eq!(
            missing(&[("A", false), ("B", false), ("C", false)]),
            "A, B and C are not set"
        );
    }
}
