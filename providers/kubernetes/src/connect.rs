//! Building the kube client for a [`Target`]: the pod's service account files or a kubeconfig,
//! and the bearer token that in-cluster requests carry (read from its file on every request).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use credchain_core::{redact_url, Secret, SourceError};
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;

use crate::config::{KubernetesConfig, Target, DEFAULT_NAMESPACE};

/// The files the kubelet puts in the service account directory.
const TOKEN_FILE: &str = "token";
const CA_FILE: &str = "ca.crt";
const NAMESPACE_FILE: &str = "namespace";

/// A client for one API server, with what the requests need besides it.
pub struct Connection {
    /// The kube client (TLS, timeouts, and for kubeconfig users their own auth).
    pub client: kube::Client,
    /// The namespace read when the options name none: the pod's or the context's.
    pub namespace: String,
    /// In-cluster only: the token file, read for every request so a rotated token is sent at once.
    pub token_file: Option<PathBuf>,
    /// The server, safe to print.
    pub server: String,
    /// How the connection was set up, for messages and `credchain doctor`.
    pub origin: String,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.server)
            .field("namespace", &self.namespace)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Sets up the client for `config.target`.
pub async fn connect(config: &KubernetesConfig) -> Result<Connection, SourceError> {
    match &config.target {
        Target::NotConfigured(why) => Err(not_configured(why)),
        Target::InCluster { dir, server } => in_cluster(config, dir, server).await,
        Target::Kubeconfig {
            paths,
            context,
            required,
        } => {
            let Some(kubeconfig) = read_kubeconfigs(paths, *required)? else {
                let why = format!("no kubeconfig file at {}", shown_paths(paths));
                return Err(not_configured(&why));
            };
            from_kubeconfig(config, kubeconfig, context.clone(), paths).await
        }
    }
}

fn not_configured(why: &str) -> SourceError {
    SourceError::not_configured(why.to_string())
        .with_hint("run in a pod with a service account, or set KUBECONFIG or `kubeconfig`")
}

/// Reads the bearer token of an in-cluster connection; trailing whitespace is removed.
pub async fn read_token(file: &Path) -> Result<Secret, SourceError> {
    let raw = tokio::fs::read_to_string(file).await.map_err(|err| {
        SourceError::denied(format!(
            "cannot read the service account token {}",
            file.display()
        ))
        .with_cause(err)
    })?;
    let raw = Secret::new(raw);
    let token = raw.expose().trim_end_matches(['\r', '\n', ' ', '\t']);
    if token.is_empty() {
        return Err(SourceError::denied(format!(
            "the service account token {} is empty",
            file.display()
        )));
    }
    Ok(Secret::new(token))
}

/// The pod's service account: token, CA bundle and namespace from `dir`.
async fn in_cluster(
    config: &KubernetesConfig,
    dir: &Path,
    server: &str,
) -> Result<Connection, SourceError> {
    let token_file = dir.join(TOKEN_FILE);
    if !tokio::fs::try_exists(&token_file).await.unwrap_or(false) {
        return Err(SourceError::not_configured(format!(
            "no service account token at {} (automountServiceAccountToken off?)",
            token_file.display()
        )));
    }
    let ca_file = dir.join(CA_FILE);
    let roots = read_ca(&ca_file).await?;
    let namespace = match &config.namespace {
        Some(ns) => ns.clone(),
        None => pod_namespace(&dir.join(NAMESPACE_FILE)).await,
    };
    let uri = server.parse::<http::Uri>().map_err(|err| {
        SourceError::invalid(format!("bad API server address {server}")).with_cause(err)
    })?;
    let mut kube_config = kube::Config::new(uri);
    kube_config.root_cert = Some(roots);
    kube_config.root_cert_file = Some(ca_file);
    kube_config.default_namespace = namespace.clone();
    let origin = format!("in-cluster, service account files in {}", dir.display());
    let client = client(config, kube_config)?;
    Ok(Connection {
        client,
        namespace,
        token_file: Some(token_file),
        server: server.into(),
        origin,
    })
}

/// The certificates in the PEM file `ca.crt`.
async fn read_ca(file: &Path) -> Result<Vec<Vec<u8>>, SourceError> {
    let invalid = |what: &str| {
        SourceError::invalid(format!("{what} {}", file.display()))
            .with_hint("the kubelet writes the cluster's CA bundle there; check the pod's volumes")
    };
    let pem = tokio::fs::read(file)
        .await
        .map_err(|e| invalid("cannot read the CA bundle").with_cause(e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| invalid("cannot parse the CA bundle"))?;
    if certs.is_empty() {
        return Err(invalid("no certificate in the CA bundle"));
    }
    Ok(certs)
}

/// The pod's namespace from the service account directory, or `default` without the file.
async fn pod_namespace(file: &Path) -> String {
    match tokio::fs::read_to_string(file).await {
        Ok(text) if !text.trim().is_empty() => text.trim().to_string(),
        _ => {
            tracing::debug!(file = %file.display(), "no pod namespace file; using `default`");
            DEFAULT_NAMESPACE.to_string()
        }
    }
}

/// Reads and merges the kubeconfig files that exist. A missing file is skipped unless
/// `required`; `Ok(None)` when none is left.
fn read_kubeconfigs(paths: &[PathBuf], required: bool) -> Result<Option<Kubeconfig>, SourceError> {
    let mut merged: Option<Kubeconfig> = None;
    for path in paths {
        let next = match Kubeconfig::read_from(path) {
            Ok(next) => next,
            Err(KubeconfigError::ReadConfig(err, _))
                if err.kind() == io::ErrorKind::NotFound && !required =>
            {
                tracing::debug!(file = %path.display(), "no kubeconfig file here");
                continue;
            }
            Err(err) => return Err(kubeconfig_error(&path.display().to_string(), err)),
        };
        merged = Some(match merged {
            None => next,
            Some(first) => first
                .merge(next)
                .map_err(|err| kubeconfig_error(&path.display().to_string(), err))?,
        });
    }
    Ok(merged)
}

/// A client for the context `context` (or the current one) of a kubeconfig.
async fn from_kubeconfig(
    config: &KubernetesConfig,
    kubeconfig: Kubeconfig,
    context: Option<String>,
    paths: &[PathBuf],
) -> Result<Connection, SourceError> {
    let shown = shown_paths(paths);
    let chosen = context
        .clone()
        .or_else(|| kubeconfig.current_context.clone());
    let options = KubeConfigOptions {
        context,
        cluster: None,
        user: None,
    };
    let mut kube_config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|err| kubeconfig_error(&shown, err))?;
    let namespace = match &config.namespace {
        Some(ns) => ns.clone(),
        None => kube_config.default_namespace.clone(),
    };
    kube_config.default_namespace = namespace.clone();
    let server = redact_url(&kube_config.cluster_url.to_string());
    let origin = match chosen {
        Some(context) => format!("kubeconfig {shown}, context `{context}`"),
        None => format!("kubeconfig {shown}"),
    };
    let client = client(config, kube_config)?;
    Ok(Connection {
        client,
        namespace,
        token_file: None,
        server,
        origin,
    })
}

/// The kube client, with the source's timeouts and without kube's own retries (the rotation
/// layer decides when to read again).
fn client(
    config: &KubernetesConfig,
    mut kube_config: kube::Config,
) -> Result<kube::Client, SourceError> {
    kube_config.connect_timeout = Some(config.connect_timeout);
    kube_config.default_retry = false;
    kube::Client::try_from(kube_config)
        .map_err(|err| SourceError::invalid("cannot set up the Kubernetes client").with_cause(err))
}

/// A kubeconfig problem. Parse errors and credential-loading errors carry no cause, since
/// their text could quote the file (tokens, keys).
fn kubeconfig_error(shown: &str, err: KubeconfigError) -> SourceError {
    let message = format!("cannot use kubeconfig {shown}");
    let base = SourceError::invalid(message);
    match err {
        KubeconfigError::Parse(_) => base.with_hint("the file is not a valid kubeconfig (YAML)"),
        KubeconfigError::LoadClientCertificate(_) | KubeconfigError::LoadClientKey(_) => {
            base.with_hint("the user's client certificate or key cannot be loaded")
        }
        KubeconfigError::LoadContext(_) | KubeconfigError::CurrentContextNotSet => base
            .with_cause(err)
            .with_hint("set `context` to one of the kubeconfig's contexts"),
        other => base.with_cause(other),
    }
}

/// Paths joined for messages.
fn shown_paths(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(":")
}
