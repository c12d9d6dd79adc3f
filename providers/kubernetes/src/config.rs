//! The Kubernetes source's settings: its `[[sources]]` options, the in-cluster and kubeconfig
//! variables, and which way of reaching the API server this environment offers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use credchain_core::{Environment, SourceError, SourceSettings};
use serde::Deserialize;

use crate::names::{check_namespace, check_secret_name};

/// Where the kubelet mounts a pod's service account token, CA bundle and namespace.
pub const DEFAULT_SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// How long connecting to the API server may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request to the API server may take, connecting included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The namespace used when neither the options, the pod nor the context name one.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The variable naming the API server's host inside a pod.
pub const SERVICE_HOST_VAR: &str = "KUBERNETES_SERVICE_HOST";
/// The variable naming the API server's port inside a pod.
pub const SERVICE_PORT_VAR: &str = "KUBERNETES_SERVICE_PORT";
/// The variable listing kubeconfig files, separated by `:`.
pub const KUBECONFIG_VAR: &str = "KUBECONFIG";
/// kubectl's default kubeconfig, under `$HOME`.
pub const HOME_KUBECONFIG: &str = ".kube/config";

/// How this environment reaches the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Inside a pod: the service account files in `dir` and the server from the
    /// `KUBERNETES_SERVICE_*` variables.
    InCluster {
        /// The directory holding `token`, `ca.crt` and `namespace`.
        dir: PathBuf,
        /// `https://host:port` from the variables.
        server: String,
    },
    /// One or more kubeconfig files, merged in order as kubectl does.
    Kubeconfig {
        /// The files; the first one that sets a field wins.
        paths: Vec<PathBuf>,
        /// The context to use instead of the files' `current-context`.
        context: Option<String>,
        /// Whether the `kubeconfig` option named the file, so that a missing file is an error;
        /// files from `KUBECONFIG` or `~/.kube/config` that do not exist are skipped.
        required: bool,
    },
    /// Neither is present; every fetch says why.
    NotConfigured(String),
}

/// The Kubernetes source's resolved settings.
#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    /// How to reach the API server.
    pub target: Target,
    /// The Secret whose data keys are named like the keys.
    pub secret: Option<String>,
    /// The namespace; `None` means the pod's or the context's.
    pub namespace: Option<String>,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long a request may take.
    pub request_timeout: Duration,
}

/// The options table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptions {
    secret: Option<String>,
    namespace: Option<String>,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    service_account_dir: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
}

impl KubernetesConfig {
    /// Reads the options table of a `type = "kubernetes"` source; `env` supplies
    /// `KUBERNETES_SERVICE_HOST`, `KUBERNETES_SERVICE_PORT`, `KUBECONFIG` and `HOME`.
    pub fn from_options(
        settings: &SourceSettings,
        mut options: toml::Table,
        env: &dyn Environment,
    ) -> Result<Self, SourceError> {
        let invalid = |why: String| SourceError::invalid(why);
        for common in credchain_core::COMMON_SOURCE_FIELDS {
            options.remove(common);
        }
        let raw: RawOptions = options
            .try_into()
            .map_err(|e: toml::de::Error| invalid(e.message().trim_end().to_string()))?;
        if raw.secret.is_none() && settings.keys.is_empty() {
            return Err(
                invalid("needs `secret` (or a `keys` table naming `secret/key`)".into())
                    .with_hint("add `secret = \"<name of the Secret>\"` to the source"),
            );
        }
        if let Some(secret) = &raw.secret {
            check_secret_name(secret).map_err(|why| invalid(format!("`secret`: {why}")))?;
        }
        if let Some(namespace) = &raw.namespace {
            check_namespace(namespace).map_err(|why| invalid(format!("`namespace`: {why}")))?;
        }
        let base = &settings.base_dir;
        let target = choose_target(&raw, base, env).map_err(invalid)?;
        Ok(KubernetesConfig {
            target,
            secret: raw.secret,
            namespace: raw.namespace,
            connect_timeout: raw.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            request_timeout: raw.timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
        })
    }
}

/// Picks the way to the API server, in this order: the `kubeconfig` option, the
/// `service_account_dir` option, `KUBECONFIG`, the pod's variables, `~/.kube/config`.
fn choose_target(raw: &RawOptions, base: &Path, env: &dyn Environment) -> Result<Target, String> {
    if raw.kubeconfig.is_some() && raw.service_account_dir.is_some() {
        return Err("`kubeconfig` and `service_account_dir` exclude each other".into());
    }
    if raw.context.is_some() && raw.service_account_dir.is_some() {
        return Err("`context` applies to a kubeconfig, not to `service_account_dir`".into());
    }
    let context = raw.context.clone();
    if let Some(path) = &raw.kubeconfig {
        let paths = vec![base.join(path)];
        return Ok(Target::Kubeconfig {
            paths,
            context,
            required: true,
        });
    }
    if let Some(dir) = &raw.service_account_dir {
        return Ok(in_cluster(base.join(dir), env));
    }
    if let Some(list) = env.var(KUBECONFIG_VAR).filter(|v| !v.is_empty()) {
        let paths = std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        return Ok(Target::Kubeconfig {
            paths,
            context,
            required: false,
        });
    }
    if env.var(SERVICE_HOST_VAR).is_some_and(|h| !h.is_empty()) {
        return Ok(in_cluster(PathBuf::from(DEFAULT_SERVICE_ACCOUNT_DIR), env));
    }
    if let Some(home) = env.var("HOME").filter(|h| !h.is_empty()) {
        let paths = vec![Path::new(&home).join(HOME_KUBECONFIG)];
        return Ok(Target::Kubeconfig {
            paths,
            context,
            required: false,
        });
    }
    Ok(Target::NotConfigured(
        "no kubeconfig (KUBECONFIG, `kubeconfig`) and not in a pod (KUBERNETES_SERVICE_HOST is \
         not set)"
            .into(),
    ))
}

/// The in-cluster target, or "not configured" when the pod variables are missing.
fn in_cluster(dir: PathBuf, env: &dyn Environment) -> Target {
    let host = env.var(SERVICE_HOST_VAR).filter(|h| !h.is_empty());
    let port = env.var(SERVICE_PORT_VAR).filter(|p| !p.is_empty());
    match (host, port) {
        (Some(host), Some(port)) => {
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            Target::InCluster {
                dir,
                server: format!("https://{host}:{port}"),
            }
        }
        _ => Target::NotConfigured(format!(
            "not in a pod: {SERVICE_HOST_VAR} and {SERVICE_PORT_VAR} are not both set"
        )),
    }
}

#[cfg(test)]
mod tests {
    use credchain_core::{ErrorKind, MapEnv};

    use super::*;

    fn options(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    fn config(text: &str, env: &[(&str, &str)]) -> Result<KubernetesConfig, SourceError> {
        let settings = SourceSettings::new("kubernetes");
        KubernetesConfig::from_options(&settings, options(text), &MapEnv::new(env.to_vec()))
    }

    #[test]
    fn nothing_present_is_not_configured() {
        let c = config("secret = \"prefect\"", &[]).unwrap();
        assert!(matches!(c.target, Target::NotConfigured(_)));
    }

    #[test]
    fn pod_variables_select_in_cluster() {
        let env = [(SERVICE_HOST_VAR, "10.0.0.1"), (SERVICE_PORT_VAR, "443")];
        let c = config("secret = \"prefect\"", &env).unwrap();
        let expected = Target::InCluster {
            dir: PathBuf::from(DEFAULT_SERVICE_ACCOUNT_DIR),
            server: "https://10.0.0.1:443".into(),
        };
        assert_eq!(c.target, expected);
    }

    #[test]
    fn ipv6_service_host_is_bracketed() {
        let env = [(SERVICE_HOST_VAR, "fd00::1"), (SERVICE_PORT_VAR, "443")];
        let c = config("secret = \"prefect\"\nservice_account_dir = \"/sa\"", &env).unwrap();
        let Target::InCluster { server, .. } = c.target else {
            panic!()
        };
        assert_eq!(server, "https://[fd00::1]:443");
    }

    #[test]
    fn kubeconfig_variable_wins_over_pod_variables() {
        let env = [
            (KUBECONFIG_VAR, "/a:/b"),
            (SERVICE_HOST_VAR, "10.0.0.1"),
            (SERVICE_PORT_VAR, "1"),
        ];
        let c = config("secret = \"prefect\"\ncontext = \"dev\"", &env).unwrap();
        let Target::Kubeconfig {
            paths,
            context,
            required,
        } = c.target
        else {
            panic!()
        };
        assert_eq!(paths, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(context.as_deref(), Some("dev"));
        assert!(!required);
    }

    #[test]
    fn home_kubeconfig_is_the_last_resort() {
        let c = config("secret = \"prefect\"", &[("HOME", "/home/etl")]).unwrap();
        let Target::Kubeconfig {
            paths, required, ..
        } = c.target
        else {
            panic!()
        };
        assert_eq!(paths, vec![PathBuf::from("/home/etl/.kube/config")]);
        assert!(!required);
    }

    #[test]
    fn missing_secret_and_keys_is_invalid() {
        let err = config("namespace = \"etl\"", &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.to_string().contains("needs `secret`"), "{err}");
    }

    #[test]
    fn unknown_option_is_invalid() {
        let err = config("secret = \"p\"\nsecrets = \"q\"", &[]).unwrap_err();
        assert!(err.to_string().contains("secrets"), "{err}");
    }

    #[test]
    fn bad_secret_name_is_invalid() {
        let err = config("secret = \"Prefect/x\"", &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
    }

    #[test]
    fn timeouts_parse() {
        let c = config(
            "secret = \"p\"\ntimeout = \"2s\"\nconnect_timeout = \"1s\"",
            &[],
        )
        .unwrap();
        assert_eq!(c.request_timeout, Duration::from_secs(2));
        assert_eq!(c.connect_timeout, Duration::from_secs(1));
    }
}
