//! [`VaultSource`]: the [`CredentialSource`] that reads keys from fields of Vault KV secrets.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use credchain_core::value::{json_field, normalize};
use credchain_core::{
    async_trait, CredentialSource, Diagnosis, Environment, Lifetime, Provenance, Resolved, Secret,
    SourceError, SourceSettings,
};

use crate::config::VaultConfig;
use crate::http::{vault_errors, BuildClientError, Http, Reply};
use crate::kv::{KvPath, KvRead};
use crate::login::TokenFacts;
use crate::session::Session;

/// Reads credentials from HashiCorp Vault or OpenBao KV secrets (v1 and v2).
///
/// A key is a field of the secret at `path` (`PREFECT_API_KEY` is the field `PREFECT_API_KEY` of
/// `secret/prefect/etl`), unless `keys` maps it to `other/path#field`. See `docs/vault.md`.
#[derive(Debug)]
pub struct VaultSource {
    settings: SourceSettings,
    config: VaultConfig,
    setup: Setup,
}

/// Whether this environment has a Vault to talk to.
#[derive(Debug)]
enum Setup {
    /// No address: every fetch says "not configured", and the chain moves on.
    NotConfigured(String),
    /// An address, an HTTP client and a login session.
    Ready(Connection),
}

#[derive(Debug)]
struct Connection {
    http: Http,
    session: Session,
    /// Mount and KV version per secret path, learned once per source.
    mounts: Mutex<HashMap<String, KvPath>>,
}

impl VaultSource {
    /// Builds the source of a `[[sources]]` entry with `type = "vault"`: `options` is its table
    /// (the shared settings may be left in it), and `env` supplies the `VAULT_*` variables and
    /// `HOME`. Fails only on a bad configuration; a missing address is reported by `fetch`.
    pub fn from_options(
        settings: SourceSettings,
        options: toml::Table,
        env: &dyn Environment,
    ) -> Result<Self, SourceError> {
        let config = VaultConfig::from_options(&settings, options, env)?;
        Self::new(settings, config)
    }

    /// Builds the source from resolved settings.
    pub fn new(settings: SourceSettings, config: VaultConfig) -> Result<Self, SourceError> {
        let mut known = HashMap::new();
        for location in config.path.iter().chain(settings.keys.values()) {
            let location = location
                .split('#')
                .next()
                .unwrap_or_default()
                .trim_matches('/');
            let kv = config.kv_version;
            if let Some(path) = KvPath::configured(location, config.mount.as_deref(), kv)? {
                known.insert(location.to_string(), path);
            }
        }
        let setup = match &config.address {
            None => Setup::NotConfigured(
                "no Vault address (VAULT_ADDR is not set and there is no `address`)".into(),
            ),
            Some(address) => {
                let http =
                    Http::new(&config, address).map_err(BuildClientError::into_source_error)?;
                let session = Session::new(http.clone(), config.auth.clone());
                Setup::Ready(Connection {
                    http,
                    session,
                    mounts: Mutex::new(known),
                })
            }
        };
        Ok(VaultSource {
            settings,
            config,
            setup,
        })
    }

    fn connection(&self) -> Result<&Connection, SourceError> {
        match &self.setup {
            Setup::Ready(connection) => Ok(connection),
            Setup::NotConfigured(why) => Err(SourceError::not_configured(why.clone())
                .with_hint("set VAULT_ADDR (and VAULT_TOKEN, or `auth`) to use Vault")),
        }
    }

    /// The field `key` reads and the secret path that holds it; `None` when this source has no
    /// location for the key (no `path` and no `keys` entry).
    fn locate_key(&self, key: &str) -> Result<Option<(String, String)>, SourceError> {
        if self.config.path.is_none() && !self.settings.keys.contains_key(key) {
            return Ok(None);
        }
        let path = self.config.path.clone().unwrap_or_default();
        let address = self.settings.address(key, |_| path)?;
        let field = address.field.unwrap_or_else(|| key.to_string());
        Ok(Some((
            address.location.trim_matches('/').to_string(),
            field,
        )))
    }

    /// Turns a read into the key's value.
    fn resolve(
        &self,
        key: &str,
        path: &KvPath,
        field: &str,
        read: KvRead,
    ) -> Result<Option<Resolved>, SourceError> {
        let location = format!("{}#{field}", path.logical);
        let Some((fields, version, lease)) = found(key, path, read) else {
            return Ok(None);
        };
        let origin = format!("vault secret `{}`", path.logical);
        let Some(raw) = json_field(&origin, &fields, field)? else {
            tracing::debug!(key, path = %path.logical, field, "the vault secret has no such field");
            return Ok(None);
        };
        let Some(value) = normalize(key, &location, raw.expose().to_owned())? else {
            return Ok(None);
        };
        tracing::debug!(key, path = %path.logical, version, "read a vault secret");
        Ok(Some(Resolved {
            value,
            provenance: Provenance {
                source: self.settings.name.clone(),
                location,
                version: version.map(|v| v.to_string()),
            },
            lifetime: Lifetime::Remote {
                expires_in: lease.filter(|l| *l < self.settings.refresh_interval),
            },
        }))
    }
}

impl Connection {
    /// `GET` with the session's token. A 403 (or 401) leads to one fresh login and one retry;
    /// a second one is `denied`, naming `shown`, with `hint`. Login failures pass unchanged.
    async fn get(&self, api_path: &str, shown: &str, hint: String) -> Result<Reply, SourceError> {
        let lease = self.session.token().await?;
        let reply = self.http.get(api_path, Some(&lease.token)).await?;
        if !matches!(reply.status, 401 | 403) {
            return Ok(reply);
        }
        tracing::debug!(path = shown, "vault refused the token; logging in again");
        let lease = self.session.relogin(&lease).await?;
        let reply = self.http.get(api_path, Some(&lease.token)).await?;
        if !matches!(reply.status, 401 | 403) {
            return Ok(reply);
        }
        let errors = vault_errors(&reply.body, &[&lease.token]);
        // Vault answers 403 alike for a token it does not know and for one whose policies do
        // not allow the read; the token's own lookup, which the default policy allows, tells.
        let refused = crate::login::lookup_self(&self.http, &lease.token).await;
        let hint = match refused {
            Err(e) if e.kind() == credchain_core::ErrorKind::Denied => "Vault refuses the token \
                itself (its own lookup is denied too): it is invalid, expired or revoked; log in \
                again, or fix VAULT_TOKEN or the source's `auth`"
                .to_string(),
            _ => hint,
        };
        Err(SourceError::denied(format!(
            "Vault at {} denied reading `{shown}`{}",
            self.http.address(),
            if errors.is_empty() {
                String::new()
            } else {
                format!(": {errors}")
            }
        ))
        .with_hint(hint))
    }

    /// The mount and KV version of `logical`, from the config or asked of Vault once.
    async fn kv_path(&self, logical: &str) -> Result<KvPath, SourceError> {
        if let Some(known) = self.known_path(logical) {
            return Ok(known);
        }
        let mount = logical.split('/').next().unwrap_or(logical);
        let hint = format!(
            "the token needs `read` on `{logical}` for Vault to describe its mount (or set \
             `mount` and `kv_version` in the source's config); Vault answers the same when no \
             secrets engine is mounted at `{mount}/` (`bao secrets list` shows the mounts)"
        );
        let reply = self
            .get(&KvPath::discovery_path(logical), logical, hint)
            .await?;
        if reply.status != 200 {
            let errors = vault_errors(&reply.body, &[]);
            return Err(self.http.status_error(
                reply.status,
                &format!("the mount lookup of `{logical}`"),
                &errors,
            ));
        }
        let path = KvPath::discovered(logical, &reply.body)?;
        tracing::debug!(path = logical, mount = %path.mount, kv = %path.kv, "discovered the vault mount");
        if let Ok(mut mounts) = self.mounts.lock() {
            mounts.insert(logical.to_string(), path.clone());
        }
        Ok(path)
    }

    fn known_path(&self, logical: &str) -> Option<KvPath> {
        self.mounts.lock().ok()?.get(logical).cloned()
    }

    /// Reads `path` at `version` (the latest when `None`).
    async fn read(&self, path: &KvPath, version: Option<u64>) -> Result<KvRead, SourceError> {
        let api_path = path.read_path(version)?;
        let policy_path = api_path.split('?').next().unwrap_or(&api_path);
        let hint = format!("the token's policy needs `read` on `{policy_path}`");
        let reply = self.get(&api_path, &path.logical, hint).await?;
        path.parse_read(reply.status, &reply.body).map_err(|err| {
            err.unwrap_or_else(|| {
                let errors = vault_errors(&reply.body, &[]);
                self.http.status_error(
                    reply.status,
                    &format!("reading `{}`", path.logical),
                    &errors,
                )
            })
        })
    }
}

#[async_trait]
impl CredentialSource for VaultSource {
    fn name(&self) -> &str {
        &self.settings.name
    }

    async fn fetch(&self, key: &str) -> Result<Option<Resolved>, SourceError> {
        let connection = self.connection()?;
        let Some((logical, field)) = self.locate_key(key)? else {
            tracing::debug!(key, "no vault path for this key");
            return Ok(None);
        };
        let path = connection.kv_path(&logical).await?;
        let read = connection.read(&path, self.config.version).await?;
        self.resolve(key, &path, &field, read)
    }

    async fn diagnose(&self) -> Result<Diagnosis, SourceError> {
        let connection = self.connection()?;
        let mut report = Diagnosis::default();
        let details = &mut report.details;
        details.push(format!("address: {}", connection.http.address()));
        if let Some(version) = health(&connection.http).await? {
            details.push(format!("server version: {version}"));
        }
        if let Some(namespace) = &self.config.namespace {
            details.push(format!("namespace: {namespace}"));
        }
        let auth = &self.config.auth;
        details.push(match auth.mount() {
            Some(mount) => format!("auth method: {} at auth/{mount}", auth.method()),
            None => "auth method: token".to_string(),
        });
        if self.config.skip_verify {
            let warning = "TLS verification is off (skip_verify / VAULT_SKIP_VERIFY)";
            report.warnings.push(warning.into());
        }
        describe_token(&connection.session.facts().await?, &mut report);
        if let Some(path) = &self.config.path {
            match connection.kv_path(path).await {
                Ok(kv) => {
                    (report.details).push(format!("path {path}: KV {} at {}/", kv.kv, kv.mount))
                }
                Err(err) => report.warnings.push(format!("path {path}: {err}")),
            }
        }
        Ok(report)
    }
}

/// What `credchain doctor` shows about the token: its TTL, policies, and a root warning.
fn describe_token(facts: &TokenFacts, report: &mut Diagnosis) {
    report.details.push(match facts.ttl {
        Some(ttl) => format!(
            "token TTL: {}{}",
            humantime::format_duration(ttl),
            if facts.renewable { " (renewable)" } else { "" }
        ),
        None => "token TTL: does not expire".to_string(),
    });
    let policies = facts.policies.join(", ");
    report.details.push(format!("token policies: {policies}"));
    if facts.policies.iter().any(|p| p == "root") {
        let warning = "the token has the root policy; use a token limited to reading";
        report.warnings.push(warning.into());
    }
}

/// The parts of a read that found the secret; `None` (with a log line) for a missing secret or
/// a deleted version.
fn found(
    key: &str,
    path: &KvPath,
    read: KvRead,
) -> Option<(Secret, Option<u64>, Option<Duration>)> {
    match read {
        KvRead::Found {
            fields,
            version,
            lease,
        } => Some((fields, version, lease)),
        KvRead::Missing => {
            tracing::debug!(key, path = %path.logical, "no vault secret at this path");
            None
        }
        KvRead::Deleted { version, destroyed } => {
            let state = if destroyed { "destroyed" } else { "deleted" };
            tracing::warn!(
                key,
                path = %path.logical,
                version,
                "vault secret {} version {version} is {state}; treated as absent",
                path.logical
            );
            None
        }
    }
}

/// Asks `sys/health` whether Vault can serve reads; returns its version.
async fn health(http: &Http) -> Result<Option<String>, SourceError> {
    #[derive(serde::Deserialize)]
    struct Health {
        version: Option<String>,
    }
    let reply = http
        .get(
            "sys/health?standbyok=true&perfstandbyok=true",
            None::<&Secret>,
        )
        .await?;
    match reply.status {
        200 | 429 | 473 => Ok(serde_json::from_str::<Health>(reply.body.expose())
            .ok()
            .and_then(|h| h.version)),
        501 => Err(SourceError::unavailable(format!(
            "Vault at {} is not initialized",
            http.address()
        ))),
        503 => Err(SourceError::unavailable(format!(
            "Vault at {} is sealed",
            http.address()
        ))),
        status => {
            Err(http.status_error(status, "the health check", &vault_errors(&reply.body, &[])))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credchain_core::{ErrorKind, MapEnv};

    fn build(options: &str, env: &[(&str, &str)]) -> Result<VaultSource, SourceError> {
        let table: toml::Table = toml::from_str(options).unwrap();
        let env = MapEnv::new(env.iter().copied());
        VaultSource::from_options(SourceSettings::new("vault"), table, &env)
    }

    #[tokio::test]
    async fn without_an_address_fetch_is_not_configured() {
        let vault = build("path = 'secret/etl'", &[("VAULT_TOKEN", "s.FAKE")]).unwrap();
        let err = vault.fetch("PREFECT_API_KEY").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotConfigured);
        assert!(err.to_string().contains("VAULT_ADDR"), "{err}");
    }

    #[test]
    fn a_configured_kv2_mount_rejects_an_api_path_at_build_time() {
        let options = "path = 'kv/data/prefect'\nmount = 'kv'\nkv_version = 2";
        let err = build(options, &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.to_string().contains("`kv/prefect`"), "{err}");
    }

    #[test]
    fn a_missing_ca_file_is_invalid_and_named() {
        let options =
            "address = 'https://127.0.0.1:1'\npath = 'p/q'\nca_cert = '/nonexistent/ca.pem'";
        let err = build(options, &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn debug_redacts_tokens_and_secret_ids() {
        let env = [("VAULT_TOKEN", "s.FAKE-env-token")];
        let token = build("address = 'http://127.0.0.1:1'\npath = 'p/q'", &env).unwrap();
        let approle = build(
            "address = 'http://127.0.0.1:1'\npath = 'p/q'\n\
             auth = { method = 'approle', role_id = 'r', secret_id = 'FAKE-secret-id' }",
            &[],
        )
        .unwrap();
        let printed = format!("{token:?}{approle:#?}");
        assert!(!printed.contains("s.FAKE-env-token"), "{printed}");
        assert!(!printed.contains("FAKE-secret-id"), "{printed}");
        assert!(printed.contains(credchain_core::REDACTED));
    }
}
