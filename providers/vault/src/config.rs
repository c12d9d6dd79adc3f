//! The Vault source's settings: its `[[sources]]` options, the standard `VAULT_*` variables, and
//! which of the two wins (the config file does).

use std::path::{Path, PathBuf};
use std::time::Duration;

use credchain_core::{Environment, Secret, SourceError, SourceSettings};
use serde::Deserialize;

/// How long connecting to Vault may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request to Vault may take, connecting included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Where Kubernetes mounts a pod's service account token.
pub const DEFAULT_KUBERNETES_TOKEN_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The mount of the AppRole auth method unless `auth.mount` says otherwise.
pub const DEFAULT_APPROLE_MOUNT: &str = "approle";
/// The mount of the JWT auth method unless `auth.mount` says otherwise.
pub const DEFAULT_JWT_MOUNT: &str = "jwt";
/// The mount of the Kubernetes auth method unless `auth.mount` says otherwise.
pub const DEFAULT_KUBERNETES_MOUNT: &str = "kubernetes";
/// The file the Vault CLI keeps its token in, under `$HOME`.
pub const TOKEN_HELPER_FILE: &str = ".vault-token";

/// The KV secrets engine version of a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvVersion {
    /// KV version 1: no versions, read at `<mount>/<path>`.
    V1,
    /// KV version 2: versioned, read at `<mount>/data/<path>`.
    V2,
}

impl std::fmt::Display for KvVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KvVersion::V1 => "v1",
            KvVersion::V2 => "v2",
        })
    }
}

/// How the source logs in to Vault.
#[derive(Debug, Clone)]
pub enum AuthConfig {
    /// A token from `token_file`, `VAULT_TOKEN` or `~/.vault-token`, in that order.
    Token {
        /// `auth.token_file`, read on each login; when set, the variables are not consulted.
        file: Option<PathBuf>,
        /// `VAULT_TOKEN`, when set and not empty.
        env: Option<Secret>,
        /// `$HOME/.vault-token`, when `HOME` is set.
        helper_file: Option<PathBuf>,
    },
    /// AppRole: a role id and a secret id.
    AppRole {
        /// Where the method is mounted (`auth/<mount>`).
        mount: String,
        /// The role id (an identifier, not a secret).
        role_id: String,
        /// The secret id, given inline or read from a file on each login.
        secret_id: SecretIdSource,
    },
    /// JWT: a role and a token file that a workload identity system keeps fresh.
    Jwt {
        /// Where the method is mounted.
        mount: String,
        /// The Vault role to log in as.
        role: String,
        /// The JWT, re-read on each login.
        token_file: PathBuf,
    },
    /// Kubernetes: a role and the pod's service account token.
    Kubernetes {
        /// Where the method is mounted.
        mount: String,
        /// The Vault role to log in as.
        role: String,
        /// The service account token, re-read on each login.
        token_file: PathBuf,
    },
}

/// Where an AppRole secret id comes from.
#[derive(Debug, Clone)]
pub enum SecretIdSource {
    /// Written in the config file.
    Inline(Secret),
    /// Read from this file on each login.
    File(PathBuf),
}

impl AuthConfig {
    /// The method's name as the config spells it.
    pub fn method(&self) -> &'static str {
        match self {
            AuthConfig::Token { .. } => "token",
            AuthConfig::AppRole { .. } => "approle",
            AuthConfig::Jwt { .. } => "jwt",
            AuthConfig::Kubernetes { .. } => "kubernetes",
        }
    }

    /// Whether the method logs in (and so can log in again); the token method only reads a
    /// token.
    pub fn logs_in(&self) -> bool {
        !matches!(self, AuthConfig::Token { .. })
    }

    /// The auth mount, for methods that log in.
    pub fn mount(&self) -> Option<&str> {
        match self {
            AuthConfig::Token { .. } => None,
            AuthConfig::AppRole { mount, .. }
            | AuthConfig::Jwt { mount, .. }
            | AuthConfig::Kubernetes { mount, .. } => Some(mount),
        }
    }
}

/// The Vault source's resolved settings.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// The server, `scheme://host:port`; `None` means Vault is not configured here.
    pub address: Option<String>,
    /// The Vault Enterprise / OpenBao namespace sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
    /// A PEM file holding the only CA certificates trusted for Vault's TLS certificate.
    pub ca_cert: Option<PathBuf>,
    /// Accept any TLS certificate (for development only).
    pub skip_verify: bool,
    /// The secret whose fields are named like the keys (`secret/prefect/etl`).
    pub path: Option<String>,
    /// The KV mount, when the config names it; discovered from the server otherwise.
    pub mount: Option<String>,
    /// The KV version, when the config names it; discovered from the server otherwise.
    pub kv_version: Option<KvVersion>,
    /// A KV v2 version to read instead of the latest.
    pub version: Option<u64>,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long a request may take.
    pub request_timeout: Duration,
    /// How to log in.
    pub auth: AuthConfig,
    /// Whether the config file had an `auth` table (as opposed to the `VAULT_TOKEN` default).
    pub auth_explicit: bool,
}

/// The options table as written, before the environment is consulted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptions {
    address: Option<String>,
    namespace: Option<String>,
    ca_cert: Option<PathBuf>,
    skip_verify: Option<bool>,
    path: Option<String>,
    mount: Option<String>,
    kv_version: Option<u8>,
    version: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    auth: Option<RawAuth>,
}

/// The `auth` table as written. `secret_id` is taken out before this is parsed, so that no
/// parse error can quote it.
#[derive(Debug, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase", deny_unknown_fields)]
enum RawAuth {
    Token {
        token_file: Option<PathBuf>,
    },
    AppRole {
        role_id: String,
        secret_id_file: Option<PathBuf>,
        mount: Option<String>,
    },
    Jwt {
        role: String,
        token_file: PathBuf,
        mount: Option<String>,
    },
    Kubernetes {
        role: String,
        token_file: Option<PathBuf>,
        mount: Option<String>,
    },
}

impl VaultConfig {
    /// Reads the options table of a `type = "vault"` source, filling gaps from `env`.
    pub fn from_options(
        settings: &SourceSettings,
        mut options: toml::Table,
        env: &dyn Environment,
    ) -> Result<Self, SourceError> {
        let invalid = SourceError::invalid;
        let inline_secret_id = take_secret_id(&mut options).map_err(&invalid)?;
        let raw: RawOptions = toml::Value::Table(options)
            .try_into()
            .map_err(|e: toml::de::Error| invalid(format!("bad option: {}", e.message())))?;

        let base = settings.base_dir.as_path();
        let auth_explicit = raw.auth.is_some();
        let auth = resolve_auth(raw.auth, inline_secret_id, base, env).map_err(&invalid)?;
        let config = VaultConfig {
            address: pick(raw.address, env.var("VAULT_ADDR")),
            namespace: pick(raw.namespace, env.var("VAULT_NAMESPACE")),
            ca_cert: pick(raw.ca_cert, env.var("VAULT_CACERT").map(PathBuf::from))
                .map(|p| base.join(p)),
            skip_verify: match raw.skip_verify {
                Some(skip) => skip,
                None => env_bool(env, "VAULT_SKIP_VERIFY").map_err(&invalid)?,
            },
            path: raw.path.map(|p| trim_slashes(&p)),
            mount: raw.mount.map(|m| trim_slashes(&m)),
            kv_version: raw
                .kv_version
                .map(kv_version)
                .transpose()
                .map_err(&invalid)?,
            version: raw.version,
            connect_timeout: raw.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            request_timeout: raw.timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
            auth,
            auth_explicit,
        };
        config.validate(settings).map_err(&invalid)?;
        Ok(config)
    }

    /// Checks what can be checked without a server.
    fn validate(&self, settings: &SourceSettings) -> Result<(), String> {
        if let Some(address) = &self.address {
            check_address(address)?;
        }
        if self.path.as_deref().is_some_and(str::is_empty) {
            return Err("`path` is empty".into());
        }
        if self.path.is_none() && settings.keys.is_empty() {
            return Err(
                "set `path` (the secret whose fields are named like the keys) or `keys`".into(),
            );
        }
        if self.version == Some(0) {
            return Err("`version` counts from 1".into());
        }
        if self.mount.as_deref().is_some_and(str::is_empty) {
            return Err("`mount` is empty".into());
        }
        Ok(())
    }
}

/// The config file's value if it has one, else the variable's (empty counts as unset).
fn pick<T>(configured: Option<T>, from_env: Option<T>) -> Option<T>
where
    T: AsRef<std::ffi::OsStr>,
{
    configured.or(from_env).filter(|v| !v.as_ref().is_empty())
}

fn trim_slashes(path: &str) -> String {
    path.trim().trim_matches('/').to_string()
}

fn kv_version(raw: u8) -> Result<KvVersion, String> {
    match raw {
        1 => Ok(KvVersion::V1),
        2 => Ok(KvVersion::V2),
        other => Err(format!("`kv_version` is 1 or 2, not {other}")),
    }
}

/// Parses a boolean variable the way Vault's tools do (`1`, `t`, `true`, `0`, `f`, `false`).
fn env_bool(env: &dyn Environment, name: &str) -> Result<bool, String> {
    let Some(raw) = env.var(name).filter(|v| !v.trim().is_empty()) else {
        return Ok(false);
    };
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Ok(true),
        "0" | "f" | "false" => Ok(false),
        _ => Err(format!("{name} is not a boolean (use true or false)")),
    }
}

fn check_address(address: &str) -> Result<(), String> {
    let url = url::Url::parse(address).map_err(|_| {
        format!(
            "the Vault address {} is not a URL such as https://vault.example:8200",
            credchain_core::redact_url(address)
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the Vault address {} must start with http:// or https://",
            credchain_core::redact_url(address)
        ));
    }
    Ok(())
}

/// Removes `auth.secret_id` from the table and wraps it, so that it never reaches serde's
/// error messages.
fn take_secret_id(options: &mut toml::Table) -> Result<Option<Secret>, String> {
    let Some(toml::Value::Table(auth)) = options.get_mut("auth") else {
        return Ok(None);
    };
    match auth.remove("secret_id") {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(Secret::new(s))),
        Some(_) => Err("`auth.secret_id` must be a string".into()),
    }
}

fn resolve_auth(
    raw: Option<RawAuth>,
    inline_secret_id: Option<Secret>,
    base: &Path,
    env: &dyn Environment,
) -> Result<AuthConfig, String> {
    let mount = |m: Option<String>, default: &str| trim_slashes(m.as_deref().unwrap_or(default));
    if inline_secret_id.is_some() && !matches!(raw, Some(RawAuth::AppRole { .. })) {
        return Err("`auth.secret_id` belongs to `method = \"approle\"`".into());
    }
    Ok(match raw.unwrap_or(RawAuth::Token { token_file: None }) {
        RawAuth::Token { token_file } => AuthConfig::Token {
            file: token_file.map(|p| base.join(p)),
            env: env
                .var("VAULT_TOKEN")
                .filter(|t| !t.trim().is_empty())
                .map(Secret::new),
            helper_file: env
                .var_os("HOME")
                .map(|h| PathBuf::from(h).join(TOKEN_HELPER_FILE)),
        },
        RawAuth::AppRole {
            role_id,
            secret_id_file,
            mount: m,
        } => AuthConfig::AppRole {
            mount: mount(m, DEFAULT_APPROLE_MOUNT),
            role_id,
            secret_id: match (inline_secret_id, secret_id_file) {
                (Some(inline), None) => SecretIdSource::Inline(inline),
                (None, Some(file)) => SecretIdSource::File(base.join(file)),
                _ => return Err("approle needs one of `secret_id` and `secret_id_file`".into()),
            },
        },
        RawAuth::Jwt {
            role,
            token_file,
            mount: m,
        } => AuthConfig::Jwt {
            mount: mount(m, DEFAULT_JWT_MOUNT),
            role,
            token_file: base.join(token_file),
        },
        RawAuth::Kubernetes {
            role,
            token_file,
            mount: m,
        } => AuthConfig::Kubernetes {
            mount: mount(m, DEFAULT_KUBERNETES_MOUNT),
            role,
            token_file: base
                .join(token_file.unwrap_or_else(|| PathBuf::from(DEFAULT_KUBERNETES_TOKEN_FILE))),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use credchain_core::MapEnv;

    fn parse(options: &str, env: &[(&str, &str)]) -> Result<VaultConfig, SourceError> {
        let settings = SourceSettings::new("vault");
        let table: toml::Table = toml::from_str(options).unwrap();
        VaultConfig::from_options(&settings, table, &MapEnv::new(env.iter().copied()))
    }

    #[test]
    fn variables_fill_what_the_file_leaves_out() {
        let env = [
            ("VAULT_ADDR", "http://127.0.0.1:8200"),
            ("VAULT_NAMESPACE", "team"),
            ("VAULT_SKIP_VERIFY", "true"),
            ("VAULT_TOKEN", "s.FAKE"),
        ];
        let c = parse("path = 'secret/etl'", &env).unwrap();
        assert_eq!(c.address.as_deref(), Some("http://127.0.0.1:8200"));
        assert_eq!(c.namespace.as_deref(), Some("team"));
        assert!(c.skip_verify);
        assert!(matches!(c.auth, AuthConfig::Token { env: Some(_), .. }));
        assert!(!c.auth_explicit);
    }

    #[test]
    fn the_file_overrides_the_variables() {
        let env = [("VAULT_ADDR", "http://a:1"), ("VAULT_SKIP_VERIFY", "1")];
        let c = parse(
            "path = 'x/y'\naddress = 'https://b:2'\nskip_verify = false",
            &env,
        )
        .unwrap();
        assert_eq!(c.address.as_deref(), Some("https://b:2"));
        assert!(!c.skip_verify);
    }

    #[test]
    fn no_address_is_none_not_an_error() {
        let c = parse("path = 'secret/etl'", &[]).unwrap();
        assert!(c.address.is_none());
        assert_eq!(c.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(c.request_timeout, DEFAULT_REQUEST_TIMEOUT);
    }

    #[test]
    fn approle_with_inline_secret_id() {
        let c = parse(
            "path = 'secret/etl'\nauth = { method = 'approle', role_id = 'r', secret_id = 'FAKE' }",
            &[],
        )
        .unwrap();
        let AuthConfig::AppRole {
            mount, secret_id, ..
        } = &c.auth
        else {
            panic!()
        };
        assert_eq!(mount, DEFAULT_APPROLE_MOUNT);
        assert!(matches!(secret_id, SecretIdSource::Inline(_)));
        assert!(!format!("{c:?}").contains("FAKE"));
    }

    #[test]
    fn a_secret_id_of_the_wrong_type_is_not_quoted() {
        let err = parse(
            "path = 'p'\nauth = { method = 'approle', role_id = 'r', secret_id = 987654 }",
            &[],
        )
        .unwrap_err();
        assert!(!err.to_string().contains("987654"), "{err}");
    }

    #[test]
    fn kubernetes_defaults_to_the_service_account_token() {
        let c = parse(
            "path = 'p'\n[auth]\nmethod = 'kubernetes'\nrole = 'etl'",
            &[],
        )
        .unwrap();
        let AuthConfig::Kubernetes {
            token_file, mount, ..
        } = &c.auth
        else {
            panic!()
        };
        assert_eq!(token_file, Path::new(DEFAULT_KUBERNETES_TOKEN_FILE));
        assert_eq!(mount, "kubernetes");
    }

    #[test]
    fn unknown_options_and_methods_are_invalid() {
        let err = parse("path = 'p'\nadress = 'http://x'", &[]).unwrap_err();
        assert!(err.to_string().contains("adress"), "{err}");
        let err = parse("path = 'p'\nauth = { method = 'ldap' }", &[]).unwrap_err();
        assert_eq!(err.kind(), credchain_core::ErrorKind::Invalid);
    }

    #[test]
    fn timeouts_and_kv_settings() {
        let c = parse(
            "path = '/secret/etl/'\nmount = 'secret/'\nkv_version = 2\nversion = 3\n\
             connect_timeout = '1s'\ntimeout = '2s'",
            &[],
        )
        .unwrap();
        assert_eq!(c.path.as_deref(), Some("secret/etl"));
        assert_eq!(c.mount.as_deref(), Some("secret"));
        assert_eq!(c.kv_version, Some(KvVersion::V2));
        assert_eq!(c.version, Some(3));
        assert_eq!(c.connect_timeout, Duration::from_secs(1));
        assert_eq!(c.request_timeout, Duration::from_secs(2));
        assert!(parse("path = 'p'\nkv_version = 3", &[]).is_err());
    }

    #[test]
    fn path_or_keys_is_required_and_address_must_be_a_url() {
        assert!(parse("", &[]).is_err());
        assert!(parse("path = 'p'\naddress = 'vault:8200'", &[]).is_err());
        assert!(parse("path = 'p'", &[("VAULT_SKIP_VERIFY", "maybe")]).is_err());
    }
}
