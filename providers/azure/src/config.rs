//! The Azure source's settings: its `[[sources]]` options, the standard `AZURE_*` variables, and
//! which of the two wins (the config file does).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use credchain_core::{Environment, Secret, SourceError, SourceSettings};
use serde::Deserialize;
use url::Url;

use crate::naming;

/// The variable naming the vault when the config does not.
pub const ENV_VAULT_URL: &str = "AZURE_KEYVAULT_URL";
/// The Entra ID tenant of a service principal or workload identity.
pub const ENV_TENANT_ID: &str = "AZURE_TENANT_ID";
/// The client (application) id of a service principal, workload or user-assigned identity.
pub const ENV_CLIENT_ID: &str = "AZURE_CLIENT_ID";
/// A service principal's client secret.
pub const ENV_CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
/// The file a workload identity webhook keeps a fresh federated token in.
pub const ENV_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
/// The Entra ID login endpoint, for sovereign and private clouds.
pub const ENV_AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";
/// Overrides where the instance metadata service (managed identity) is asked for tokens.
pub const ENV_IMDS_ENDPOINT: &str = "AZURE_POD_IDENTITY_AUTHORITY_HOST";
/// Set with [`ENV_IDENTITY_HEADER`] by App Service, Functions and Container Apps.
pub const ENV_IDENTITY_ENDPOINT: &str = "IDENTITY_ENDPOINT";
/// The header secret of the App Service managed identity endpoint.
pub const ENV_IDENTITY_HEADER: &str = "IDENTITY_HEADER";

/// The public cloud's Entra ID login endpoint.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// The instance metadata service of Azure VMs, scale sets and AKS nodes.
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254";
/// How long the first managed identity request may take before the next credential is tried.
pub const MANAGED_IDENTITY_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a whole lookup may take: login, retries and waits included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to the vault or a login endpoint may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a throttled (429) or failed (5xx, connection error) request is tried again.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// How long the Azure CLI may take to hand out a token.
pub const AZURE_CLI_TIMEOUT: Duration = Duration::from_secs(15);

/// A way of logging in to Entra ID, in the order the source tries them when none is pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A service principal with a client secret (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_CLIENT_SECRET`).
    ClientSecret,
    /// A Kubernetes workload identity: a federated token file exchanged for a token.
    WorkloadIdentity,
    /// The managed identity of the VM, node or App Service the process runs on.
    ManagedIdentity,
    /// The developer's `az login`.
    AzureCli,
}

impl CredentialKind {
    /// Every kind, in the order of the default chain.
    pub const ALL: [CredentialKind; 4] = [
        CredentialKind::ClientSecret,
        CredentialKind::WorkloadIdentity,
        CredentialKind::ManagedIdentity,
        CredentialKind::AzureCli,
    ];

    /// The name as the config spells it.
    pub fn name(self) -> &'static str {
        match self {
            CredentialKind::ClientSecret => "client_secret",
            CredentialKind::WorkloadIdentity => "workload_identity",
            CredentialKind::ManagedIdentity => "managed_identity",
            CredentialKind::AzureCli => "azure_cli",
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The Azure source's resolved settings. `Debug` never shows the client secret.
#[derive(Debug, Clone)]
pub struct AzureConfig {
    /// The vault, `https://<name>.vault.azure.net`; `None` means Azure is not configured here.
    pub vault_url: Option<Url>,
    /// The one credential to use; `None` tries them all in [`CredentialKind::ALL`] order.
    pub credential: Option<CredentialKind>,
    /// Where to log in to Entra ID.
    pub authority_host: Url,
    /// The tenant of a service principal or workload identity.
    pub tenant_id: Option<String>,
    /// The client id of a service principal, workload or user-assigned managed identity.
    pub client_id: Option<String>,
    /// `AZURE_CLIENT_SECRET`, read from the environment only.
    pub client_secret: Option<Secret>,
    /// `AZURE_FEDERATED_TOKEN_FILE`, read again on every login.
    pub federated_token_file: Option<PathBuf>,
    /// Where the instance metadata service answers.
    pub imds_endpoint: Url,
    /// Whether `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` say this is App Service or alike.
    pub app_service_identity: bool,
    /// `PATH` for running `az`, from the injected environment.
    pub path_var: Option<String>,
    /// Pinned version ids, per key.
    pub versions: BTreeMap<String, String>,
    /// A PEM file of CA certificates trusted besides the system's.
    pub ca_cert: Option<PathBuf>,
    /// Whether the vault's login challenge must name a resource the vault's host belongs to.
    pub verify_challenge_resource: bool,
    /// How long a whole lookup may take.
    pub timeout: Duration,
    /// How often a throttled or failed request is tried again.
    pub max_retries: u32,
}

/// The options table as written, before the environment is consulted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptions {
    vault_url: Option<String>,
    credential: Option<CredentialKind>,
    authority_host: Option<String>,
    tenant_id: Option<String>,
    client_id: Option<String>,
    managed_identity_endpoint: Option<String>,
    version: Option<BTreeMap<String, String>>,
    ca_cert: Option<PathBuf>,
    verify_challenge_resource: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    max_retries: Option<u32>,
}

impl AzureConfig {
    /// Reads the options table of a `type = "azure"` source, filling gaps from `env`.
    pub fn from_options(
        settings: &SourceSettings,
        mut options: toml::Table,
        env: &dyn Environment,
    ) -> Result<Self, SourceError> {
        let invalid =
            |why: String| SourceError::invalid(format!("source `{}`: {why}", settings.name));
        for common in credchain_core::COMMON_SOURCE_FIELDS {
            options.remove(common);
        }
        if matches!(options.get("version"), Some(v) if !v.is_table()) {
            return Err(invalid("`version` must be a table of KEY = \"version id\"".into())
                .with_hint("version ids belong to one secret: write version = { PREFECT_API_KEY = \"<id>\" }"));
        }
        let raw: RawOptions = options
            .try_into()
            .map_err(|err: toml::de::Error| invalid(err.message().trim_end().to_string()))?;
        let var = |name: &str| env.var(name).filter(|v| !v.trim().is_empty());

        let vault_url = match raw.vault_url.or_else(|| var(ENV_VAULT_URL)) {
            Some(text) => Some(parse_vault_url(&text).map_err(invalid)?),
            None => None,
        };
        let authority_host = raw
            .authority_host
            .or_else(|| var(ENV_AUTHORITY_HOST))
            .unwrap_or_else(|| DEFAULT_AUTHORITY_HOST.to_string());
        let imds_endpoint = raw
            .managed_identity_endpoint
            .or_else(|| var(ENV_IMDS_ENDPOINT))
            .unwrap_or_else(|| DEFAULT_IMDS_ENDPOINT.to_string());
        let tenant_id = raw.tenant_id.or_else(|| var(ENV_TENANT_ID));
        if let Some(tenant) = &tenant_id {
            check_tenant_id(tenant).map_err(invalid)?;
        }
        let versions = raw.version.unwrap_or_default();
        check_overrides(settings, &versions).map_err(|e| invalid(e.to_string()))?;

        Ok(AzureConfig {
            vault_url,
            credential: raw.credential,
            authority_host: parse_https("authority_host", &authority_host).map_err(invalid)?,
            tenant_id,
            client_id: raw.client_id.or_else(|| var(ENV_CLIENT_ID)),
            client_secret: var(ENV_CLIENT_SECRET).map(Secret::new),
            federated_token_file: var(ENV_FEDERATED_TOKEN_FILE).map(|p| settings.base_dir.join(p)),
            imds_endpoint: parse_http("managed_identity_endpoint", &imds_endpoint)
                .map_err(invalid)?,
            app_service_identity: var(ENV_IDENTITY_ENDPOINT).is_some()
                && var(ENV_IDENTITY_HEADER).is_some(),
            path_var: env.var("PATH"),
            versions,
            ca_cert: raw.ca_cert.map(|p| settings.base_dir.join(p)),
            verify_challenge_resource: raw.verify_challenge_resource.unwrap_or(true),
            timeout: raw.timeout.unwrap_or(DEFAULT_TIMEOUT),
            max_retries: raw.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
        })
    }

    /// The vault's host, for provenance and messages.
    pub fn vault_host(&self) -> Option<&str> {
        self.vault_url.as_ref().and_then(Url::host_str)
    }
}

/// Checks the `keys` overrides and the pinned versions before any request is made.
fn check_overrides(
    settings: &SourceSettings,
    versions: &BTreeMap<String, String>,
) -> Result<(), naming::NameError> {
    for key in settings.keys.keys() {
        if let Ok(address) = settings.address(key, naming::natural_name) {
            naming::check_name(&address.location)?;
        }
    }
    for (key, version) in versions {
        let name = settings
            .address(key, naming::natural_name)
            .map(|a| a.location)
            .unwrap_or_else(|_| key.clone());
        naming::check_version(&name, version)?;
    }
    Ok(())
}

/// Parses the vault's address: an `https` URL with no path, query or credentials.
fn parse_vault_url(text: &str) -> Result<Url, String> {
    let url = parse_https("vault_url", text)?;
    if !url.path().trim_matches('/').is_empty()
        || url.query().is_some()
        || !url.username().is_empty()
    {
        return Err(format!(
            "vault_url `{}` must be the vault's address only, like https://NAME.vault.azure.net",
            credchain_core::redact_url(text)
        ));
    }
    Ok(url)
}

/// Parses an address the Azure SDK only accepts over TLS.
fn parse_https(option: &str, text: &str) -> Result<Url, String> {
    let url = parse_http(option, text)?;
    if url.scheme() != "https" {
        return Err(format!(
            "{option} `{}` must use https: the Azure SDK sends tokens over TLS only",
            credchain_core::redact_url(text)
        ));
    }
    Ok(url)
}

/// Parses an `http` or `https` address.
fn parse_http(option: &str, text: &str) -> Result<Url, String> {
    let shown = credchain_core::redact_url(text);
    let url =
        Url::parse(text.trim()).map_err(|e| format!("{option} `{shown}` is not a URL: {e}"))?;
    match (url.scheme(), url.host_str()) {
        ("http" | "https", Some(_)) => Ok(url),
        _ => Err(format!(
            "{option} `{shown}` must be an http(s) address with a host"
        )),
    }
}

/// Tenant ids are GUIDs or domain names.
fn check_tenant_id(tenant: &str) -> Result<(), String> {
    let ok = !tenant.is_empty()
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tenant id `{tenant}` is not a tenant GUID or domain (letters, digits, `.` and `-`)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credchain_core::{ErrorKind, MapEnv};

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    fn load(text: &str, env: &[(&str, &str)]) -> Result<AzureConfig, SourceError> {
        AzureConfig::from_options(
            &SourceSettings::new("azure"),
            table(text),
            &MapEnv::new(env.iter().copied()),
        )
    }

    #[test]
    fn vault_url_comes_from_the_environment_when_the_config_has_none() {
        let cfg = load("", &[(ENV_VAULT_URL, "https://etl.vault.azure.net/")]).unwrap();
        assert_eq!(cfg.vault_host(), Some("etl.vault.azure.net"));
        assert!(load("", &[]).unwrap().vault_url.is_none());
    }

    #[test]
    fn config_wins_over_the_environment() {
        let cfg = load(
            "vault_url = \"https://cfg.vault.azure.net\"\ntenant_id = \"cfg-tenant\"",
            &[
                (ENV_VAULT_URL, "https://env.vault.azure.net"),
                (ENV_TENANT_ID, "env"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.vault_host(), Some("cfg.vault.azure.net"));
        assert_eq!(cfg.tenant_id.as_deref(), Some("cfg-tenant"));
    }

    #[test]
    fn plain_http_vault_is_refused() {
        let err = load("vault_url = \"http://etl.vault.azure.net\"", &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.to_string().contains("https"), "{err}");
    }

    #[test]
    fn vault_url_with_a_path_is_refused() {
        let err = load("vault_url = \"https://etl.vault.azure.net/secrets/x\"", &[]).unwrap_err();
        assert!(err.to_string().contains("address only"), "{err}");
    }

    #[test]
    fn credential_can_be_pinned() {
        let cfg = load("credential = \"workload_identity\"", &[]).unwrap();
        assert_eq!(cfg.credential, Some(CredentialKind::WorkloadIdentity));
        let err = load("credential = \"password\"", &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
    }

    #[test]
    fn unknown_option_is_refused() {
        let err = load("vault = \"x\"", &[]).unwrap_err();
        assert!(err.to_string().contains("vault"), "{err}");
    }

    #[test]
    fn version_as_a_string_is_refused_with_a_hint() {
        let err = load("version = \"abc\"", &[]).unwrap_err();
        assert!(err.hint().unwrap().contains("PREFECT_API_KEY"));
    }

    #[test]
    fn illegal_override_is_refused_when_loading() {
        let mut settings = SourceSettings::new("azure");
        settings.keys.insert("DB".into(), "db.password".into());
        let err = AzureConfig::from_options(&settings, table(""), &MapEnv::default()).unwrap_err();
        assert!(err.to_string().contains("`.`"), "{err}");
    }

    #[test]
    fn client_secret_never_shows_in_debug() {
        let cfg = load("", &[(ENV_CLIENT_SECRET, "FAKE_client_secret_1")]).unwrap();
        assert!(cfg.client_secret.is_some());
        assert!(!format!("{cfg:?}").contains("FAKE_client_secret_1"));
    }

    #[test]
    fn bad_tenant_is_refused() {
        let err = load("tenant_id = \"a/b\"", &[]).unwrap_err();
        assert!(err.to_string().contains("tenant"), "{err}");
    }
}
