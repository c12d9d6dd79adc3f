//! One HTTP exchange, behind a trait: reqwest with rustls in production, a scripted fake in
//! unit tests (so retries and rotation run on paused time without sockets). TLS and proxy
//! settings are read here.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use credchain_core::Environment;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::error::SetupError;
use super::tls::ExtraRoots;

/// The variable naming an extra CA bundle for the Prefect API.
pub const CA_FILE_VAR: &str = "PREFECT_API_SSL_CERT_FILE";
/// The generic variable naming a CA bundle, used when [`CA_FILE_VAR`] is not set.
pub const GENERIC_CA_FILE_VAR: &str = "SSL_CERT_FILE";
/// The variable that turns certificate checks off when it is `true`.
pub const INSECURE_VAR: &str = "PREFECT_API_TLS_INSECURE_SKIP_VERIFY";

/// A request ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) method: Method,
    pub(crate) url: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
}

/// A whole answer, body included.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Why an exchange produced no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TransportError {
    /// Nothing listens on the port.
    Refused,
    /// The host name does not resolve.
    Dns,
    /// The TLS handshake failed.
    Tls(String),
    /// No connection within the connect timeout.
    ConnectTimeout,
    /// No whole answer within the request timeout.
    Timeout,
    /// The connection broke (reset, closed early, protocol error).
    Connection(String),
}

impl TransportError {
    /// Whether sending again can help at all.
    pub(crate) fn is_transient(&self) -> bool {
        !matches!(self, TransportError::Tls(_))
    }
}

/// Sends one request and reads the whole answer.
#[async_trait]
pub(crate) trait Transport: Send + Sync + fmt::Debug {
    async fn send(&self, request: Outgoing) -> Result<Incoming, TransportError>;
}

/// The production transport.
#[derive(Debug, Clone)]
pub(crate) struct ReqwestTransport {
    client: reqwest::Client,
}

/// What TLS and timeouts the production transport uses.
#[derive(Debug, Clone)]
pub(crate) struct TransportSettings {
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) user_agent: String,
    /// Whether the API URL is https: a CA file is then read (and checked) at once; for a
    /// plain-HTTP API it is read only if a handshake ever happens (a redirect, a proxy).
    pub(crate) https: bool,
}

impl ReqwestTransport {
    /// Builds the client: rustls with the platform's roots plus the CA file from the
    /// environment, certificate checks off only on request, proxies from the environment.
    pub(crate) fn new(
        settings: &TransportSettings,
        env: &dyn Environment,
    ) -> Result<Self, SetupError> {
        let extra_roots = match ca_file(env) {
            Some((var, path)) if settings.https => ExtraRoots::Loaded(load_ca_file(var, &path)?),
            Some((var, path)) => ExtraRoots::Deferred { var, path },
            None => ExtraRoots::Loaded(Vec::new()),
        };
        let insecure = insecure(env);
        if insecure {
            tracing::warn!("{INSECURE_VAR}=true: TLS certificates are not checked");
        }
        let tls = super::tls::client_config(extra_roots, insecure)
            .map_err(|e| SetupError::BuildClient(Box::new(e)))?;
        let client = reqwest::Client::builder()
            .user_agent(settings.user_agent.clone())
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .pool_idle_timeout(Duration::from_secs(25))
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| SetupError::BuildClient(Box::new(e)))?;
        Ok(ReqwestTransport { client })
    }
}

fn ca_file(env: &dyn Environment) -> Option<(&'static str, String)> {
    [CA_FILE_VAR, GENERIC_CA_FILE_VAR]
        .into_iter()
        .find_map(|var| {
            env.var(var)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (var, v))
        })
}

fn insecure(env: &dyn Environment) -> bool {
    env.var(INSECURE_VAR).is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "on"
        )
    })
}

pub(crate) fn load_ca_file(
    var: &'static str,
    path: &str,
) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let fail = |source: std::io::Error| SetupError::LoadCaFile {
        path: path.to_string(),
        var,
        source,
    };
    let invalid = |why: String| fail(std::io::Error::new(std::io::ErrorKind::InvalidData, why));
    let pem = std::fs::read(path).map_err(fail)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate in the file".to_string()));
    }
    Ok(certs)
}

#[async_trait]
impl Transport for ReqwestTransport {
    async fn send(&self, request: Outgoing) -> Result<Incoming, TransportError> {
        let mut builder = self
            .client
            .request(request.method, request.url)
            .headers(request.headers);
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let response = builder.send().await.map_err(|e| classify(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| classify(&e))?;
        Ok(Incoming {
            status,
            headers,
            body,
        })
    }
}

/// Sorts a reqwest failure by walking its causes.
fn classify(error: &reqwest::Error) -> TransportError {
    if let Some(problem) = find_tls_problem(error) {
        return TransportError::Tls(problem);
    }
    let texts = cause_texts(error);
    if error.is_timeout() {
        return if error.is_connect() {
            TransportError::ConnectTimeout
        } else {
            TransportError::Timeout
        };
    }
    if let Some(kind) = find_io_kind(error) {
        if kind == std::io::ErrorKind::ConnectionRefused {
            return TransportError::Refused;
        }
        if kind == std::io::ErrorKind::TimedOut {
            return TransportError::ConnectTimeout;
        }
    }
    let joined = texts.join(": ");
    if error.is_connect() && joined.contains("dns error") {
        return TransportError::Dns;
    }
    TransportError::Connection(texts.last().cloned().unwrap_or_else(|| error.to_string()))
}

fn causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        out.push(current);
        // io::Error::source skips the error it wraps (which may be another io::Error): step
        // into the wrapped error instead.
        next = match current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(wrapped) => Some(wrapped as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
    }
    out
}

fn cause_texts(error: &reqwest::Error) -> Vec<String> {
    causes(error).iter().map(|e| e.to_string()).collect()
}

fn find_io_kind(error: &reqwest::Error) -> Option<std::io::ErrorKind> {
    causes(error)
        .iter()
        .find_map(|e| e.downcast_ref::<std::io::Error>().map(|io| io.kind()))
}

/// The TLS problem of a server that answered a handshake in plain HTTP.
pub(crate) const PLAIN_HTTP: &str = "the server answered in plain HTTP, not TLS";

pub(crate) fn find_tls_problem(error: &reqwest::Error) -> Option<String> {
    causes(error).iter().find_map(|e| {
        let tls = e.downcast_ref::<rustls::Error>()?;
        Some(match tls {
            rustls::Error::InvalidCertificate(cert) => describe_certificate_error(cert),
            // A TLS record must start with a known content type; an HTTP answer starts "HTTP/".
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
                PLAIN_HTTP.to_string()
            }
            other => other.to_string(),
        })
    })
}

fn describe_certificate_error(error: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match error {
        C::UnknownIssuer => "the certificate is signed by an unknown authority".to_string(),
        C::Expired | C::ExpiredContext { .. } => "the certificate has expired".to_string(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "the certificate is not valid for this host name".to_string()
        }
        C::BadSignature => "the certificate has a bad signature".to_string(),
        other => format!("invalid certificate: {other}"),
    }
}
