//! What can go wrong talking to Prefect, by concern, with the exit code and the fix for each.
//!
//! Every message names the server (its URL carries no credentials: the URL check refuses
//! them) and never holds a key, an auth string or a CSRF token.

use std::time::Duration;

use crate::credentials::CredError;
use crate::exit::{Exit, Failure};

use super::url::UrlError;

/// Why a [`super::PrefectClient`] could not be set up. No request was sent.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A key the client needs could not be resolved.
    #[error("cannot resolve {key} for the Prefect client")]
    ResolveKey {
        /// The key.
        key: &'static str,
        /// What the cache said.
        #[source]
        source: CredError,
    },
    /// No source holds `PREFECT_API_URL`.
    #[error("PREFECT_API_URL is not set in any source, so there is no Prefect server to talk to")]
    FindApiUrl,
    /// `PREFECT_API_URL` breaks a rule.
    #[error("invalid Prefect API URL")]
    ParseApiUrl(#[source] UrlError),
    /// Both a key and an auth string resolved.
    #[error(
        "both PREFECT_API_KEY (from {key_from}) and PREFECT_API_AUTH_STRING (from {auth_from}) \
         are set; the client would not know which to send"
    )]
    ChooseAuth {
        /// Where the key came from.
        key_from: String,
        /// Where the auth string came from.
        auth_from: String,
    },
    /// A Prefect Cloud URL without a key.
    #[error("{server} is Prefect Cloud, which needs PREFECT_API_KEY, and no source holds it")]
    RequireCloudKey {
        /// The API URL.
        server: String,
    },
    /// The extra CA file could not be read or holds no certificate.
    #[error("cannot load CA certificates from {path} (named by {var})")]
    LoadCaFile {
        /// The file.
        path: String,
        /// The variable that named it.
        var: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// reqwest refused the client settings.
    #[error("cannot build the HTTP client")]
    BuildClient(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl SetupError {
    /// How the process should exit because of it.
    pub fn exit(&self) -> Exit {
        match self {
            SetupError::ResolveKey { source, .. } => source.exit(),
            SetupError::FindApiUrl => Exit::KeyNotFound,
            _ => Exit::Usage,
        }
    }

    /// A short label for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            SetupError::ResolveKey { .. } | SetupError::FindApiUrl => "credentials",
            _ => "config",
        }
    }

    /// What the user should do about it.
    pub fn hint(&self) -> String {
        match self {
            SetupError::ResolveKey { source, .. } => source.hint(),
            SetupError::FindApiUrl => "set PREFECT_API_URL (for example \
                http://127.0.0.1:4200/api) in the environment, .env or a configured source"
                .to_string(),
            SetupError::ParseApiUrl(error) => error.hint(),
            SetupError::ChooseAuth { .. } => "remove one: PREFECT_API_KEY for Prefect Cloud or \
                a bearer-key gateway, PREFECT_API_AUTH_STRING for a server started with \
                PREFECT_SERVER_API_AUTH_STRING"
                .to_string(),
            SetupError::RequireCloudKey { .. } => {
                "set PREFECT_API_KEY to a Prefect Cloud API key (pnu_... or pnb_...)".to_string()
            }
            SetupError::LoadCaFile { var, .. } => {
                format!("point {var} at a readable PEM file with the server's CA certificate")
            }
            SetupError::BuildClient(_) => "check the TLS and proxy settings".to_string(),
        }
    }
}

/// Why the server could not be reached at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreachable {
    /// Nothing listens on the port.
    #[error("connection refused by {host}:{port}")]
    Refused {
        /// The host.
        host: String,
        /// The port.
        port: u16,
    },
    /// The host name does not resolve.
    #[error("cannot resolve host name {host}")]
    Dns {
        /// The host.
        host: String,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {host} failed: {problem}")]
    Tls {
        /// The host.
        host: String,
        /// What was wrong with the certificate or the handshake.
        problem: String,
    },
    /// No answer in time.
    #[error("no answer from {host}:{port} within {}{}", humantime::format_duration(*after), if *connecting { " (connecting)" } else { "" })]
    Timeout {
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// The timeout that ran out.
        after: Duration,
        /// Whether the connection was never established.
        connecting: bool,
    },
    /// The connection broke for another reason.
    #[error("connection to {host}:{port} failed: {detail}")]
    Connection {
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// What the network layer said.
        detail: String,
    },
}

impl Unreachable {
    /// A short label for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            Unreachable::Refused { .. } => "connection_refused",
            Unreachable::Dns { .. } => "dns",
            Unreachable::Tls { .. } => "tls",
            Unreachable::Timeout { .. } => "timeout",
            Unreachable::Connection { .. } => "connection",
        }
    }

    fn hint(&self) -> String {
        match self {
            Unreachable::Refused { host, port } => format!(
                "start the Prefect server on {host}:{port} (prefect server start), or fix the \
                 host and port in PREFECT_API_URL"
            ),
            Unreachable::Dns { host } => {
                format!("check the host name `{host}` in PREFECT_API_URL and your DNS")
            }
            Unreachable::Tls { problem, .. } if problem == super::transport::PLAIN_HTTP => {
                "this port serves plain HTTP: use http:// in PREFECT_API_URL, or the port where \
                 the server (or its gateway) serves HTTPS"
                    .to_string()
            }
            Unreachable::Tls { host, .. } => format!(
                "if {host} uses a private CA, set PREFECT_API_SSL_CERT_FILE (or SSL_CERT_FILE) \
                 to its PEM file; PREFECT_API_TLS_INSECURE_SKIP_VERIFY=true turns checks off \
                 (tests only)"
            ),
            Unreachable::Timeout {
                connecting: true, ..
            } => "check the host and port in PREFECT_API_URL and any firewall between; \
                [prefect] connect_timeout sets how long to wait"
                .to_string(),
            Unreachable::Timeout { .. } => "the server took the connection but sent no whole \
                answer in time: \
                check that PREFECT_API_URL points at Prefect (not another service) and that \
                the server is not overloaded; [prefect] request_timeout sets how long to wait"
                .to_string(),
            Unreachable::Connection { .. } => {
                "check the server, any proxy (HTTPS_PROXY, NO_PROXY) and the network".to_string()
            }
        }
    }
}

/// The credential that a server rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedCredential {
    /// `PREFECT_API_KEY` or `PREFECT_API_AUTH_STRING`.
    pub key: &'static str,
    /// The source that supplied it, with its location.
    pub from: String,
    /// Whether re-resolving it after the 401 produced a different value (which was also
    /// rejected), or the source kept returning the same one.
    pub changed: bool,
}

/// Why a request to Prefect failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The server answered 401, after the credential was re-resolved.
    #[error("{server} rejected {} (401 on {method} {path}){}", credential_text(credential.as_deref()), detail_text(detail))]
    Unauthorized {
        /// The API URL.
        server: String,
        /// The request method.
        method: String,
        /// The request path.
        path: String,
        /// What was sent, if anything.
        credential: Option<Box<RejectedCredential>>,
        /// The server's error text.
        detail: String,
    },
    /// The server answered 403: the credential is valid but not allowed to do this.
    #[error(
        "{server} denied {method} {path} (403, permission denied){}",
        detail_text(detail)
    )]
    Forbidden {
        /// The API URL.
        server: String,
        /// The request method.
        method: String,
        /// The request path.
        path: String,
        /// The server's error text.
        detail: String,
    },
    /// The server could not be reached.
    #[error("cannot reach {server}{}: {problem}", attempts_text(*attempts))]
    Unreachable {
        /// The API URL.
        server: String,
        /// Why.
        problem: Unreachable,
        /// How many times the request was sent.
        attempts: u32,
    },
    /// `GET /health` did not answer like Prefect's API.
    #[error("{server} does not look like a Prefect API: GET /health answered {answer}")]
    CheckApi {
        /// The API URL.
        server: String,
        /// What came back instead (`404`, `an HTML page`).
        answer: String,
    },
    /// The server answered with an error status.
    #[error("{server} answered {method} {path} with {status}{}{}", detail_text(detail), attempts_text(*attempts))]
    Status {
        /// The API URL.
        server: String,
        /// The request method.
        method: String,
        /// The request path.
        path: String,
        /// The status code.
        status: u16,
        /// The server's error text (`detail` or `exception_message`).
        detail: String,
        /// How many times the request was sent.
        attempts: u32,
    },
    /// The answer was not the JSON expected.
    #[error("cannot decode the answer of {server} to {method} {path}")]
    DecodeBody {
        /// The API URL.
        server: String,
        /// The request method.
        method: String,
        /// The request path.
        path: String,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A credential could not be resolved for the request.
    #[error("cannot resolve {key} for a request to {server}")]
    ResolveKey {
        /// The API URL.
        server: String,
        /// The key.
        key: &'static str,
        /// What the cache said.
        #[source]
        source: Box<CredError>,
    },
}

fn credential_text(credential: Option<&RejectedCredential>) -> String {
    match credential {
        None => "the request: it needs credentials and none are set".to_string(),
        Some(c) if c.changed => format!(
            "{} from {}, also after re-resolving it gave a new value",
            c.key, c.from
        ),
        Some(c) => format!(
            "{} from {}; re-resolving it gave the same value",
            c.key, c.from
        ),
    }
}

fn detail_text(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

fn attempts_text(attempts: u32) -> String {
    if attempts > 1 {
        format!(" after {attempts} attempts")
    } else {
        String::new()
    }
}

impl RequestError {
    /// How the process should exit because of it.
    pub fn exit(&self) -> Exit {
        match self {
            RequestError::Unauthorized { .. } => Exit::Unauthorized,
            RequestError::Forbidden { .. } => Exit::Forbidden,
            RequestError::Unreachable { .. } => Exit::Unreachable,
            RequestError::CheckApi { .. } => Exit::Usage,
            RequestError::Status { .. } | RequestError::DecodeBody { .. } => Exit::WorkFailed,
            RequestError::ResolveKey { source, .. } => source.exit(),
        }
    }

    /// A short label for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            RequestError::Unauthorized { .. } => "unauthorized",
            RequestError::Forbidden { .. } => "forbidden",
            RequestError::Unreachable { problem, .. } => problem.kind(),
            RequestError::CheckApi { .. } => "not_prefect_api",
            RequestError::Status { .. } => "server",
            RequestError::DecodeBody { .. } => "decode",
            RequestError::ResolveKey { .. } => "credentials",
        }
    }

    /// The status code the server answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            RequestError::Unauthorized { .. } => Some(401),
            RequestError::Forbidden { .. } => Some(403),
            RequestError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// What the user should do about it.
    pub fn hint(&self) -> String {
        match self {
            RequestError::Unauthorized {
                credential: None, ..
            } => "set PREFECT_API_KEY (Prefect Cloud or a gateway) or PREFECT_API_AUTH_STRING \
                (a server with PREFECT_SERVER_API_AUTH_STRING)"
                .to_string(),
            RequestError::Unauthorized {
                credential: Some(c),
                ..
            } => format!(
                "the server does not accept {} from {}: replace it there with a valid one",
                c.key, c.from
            ),
            RequestError::Forbidden { .. } => "the credential works but lacks permission for \
                this call: use a key with write access (role rw on a gateway), or ask for it"
                .to_string(),
            RequestError::Unreachable { problem, .. } => problem.hint(),
            RequestError::CheckApi { server, .. } => match api_url_guess(server) {
                Some(guess) => {
                    format!("the URL's path is probably not the API's: try PREFECT_API_URL={guess}")
                }
                None => "the server at this URL is not Prefect's API: check the host and port \
                    in PREFECT_API_URL"
                    .to_string(),
            },
            RequestError::Status { status, .. } if *status >= 500 => {
                "the server failed; look at its logs and try again".to_string()
            }
            RequestError::Status { .. } | RequestError::DecodeBody { .. } => {
                "check that PREFECT_API_URL points at a Prefect 3 server".to_string()
            }
            RequestError::ResolveKey { source, .. } => source.hint(),
        }
    }
}

/// A likelier API URL for `server`, whose `/health` did not answer like Prefect: the URL cut
/// after its `api` segment, its last segment (`/apix`) replaced by `api`, or `/api` appended;
/// `None` when the URL already ends in `/api`, so that its path is not the problem.
fn api_url_guess(server: &str) -> Option<String> {
    let trimmed = server.trim_end_matches('/');
    let (origin, path) = match trimmed.find("://") {
        Some(scheme) => match trimmed[scheme + 3..].find('/') {
            Some(slash) => trimmed.split_at(scheme + 3 + slash),
            None => (trimmed, ""),
        },
        None => (trimmed, ""),
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let guess = match segments.iter().position(|s| *s == "api") {
        Some(i) if i + 1 == segments.len() => return None,
        Some(i) => segments[..=i].join("/"),
        None => match segments.split_last() {
            Some((last, before)) if last.starts_with("api") => before
                .iter()
                .chain(&["api"])
                .copied()
                .collect::<Vec<_>>()
                .join("/"),
            _ => segments
                .iter()
                .chain(&["api"])
                .copied()
                .collect::<Vec<_>>()
                .join("/"),
        },
    };
    Some(format!("{origin}/{guess}"))
}

impl From<SetupError> for Failure {
    fn from(error: SetupError) -> Self {
        let hint = error.hint();
        Failure::new(error.exit(), error).hint(hint)
    }
}

impl From<RequestError> for Failure {
    fn from(error: RequestError) -> Self {
        let hint = error.hint();
        Failure::new(error.exit(), error).hint(hint)
    }
}

#[cfg(test)]
mod tests {
    use super::api_url_guess;

    #[test]
    fn the_api_url_guess_never_appends_api_twice() {
        let guess = |u: &str| api_url_guess(u);
        assert_eq!(guess("http://h:4200").as_deref(), Some("http://h:4200/api"));
        assert_eq!(
            guess("http://h:4200/prefect/").as_deref(),
            Some("http://h:4200/prefect/api")
        );
        assert_eq!(
            guess("http://h:4200/apix").as_deref(),
            Some("http://h:4200/api")
        );
        assert_eq!(
            guess("http://h:4200/api/flows").as_deref(),
            Some("http://h:4200/api")
        );
        assert_eq!(
            guess("http://h:4200/x/api/flows/").as_deref(),
            Some("http://h:4200/x/api")
        );
        assert_eq!(guess("http://h:4200/api"), None);
        assert_eq!(guess("http://h:4200/api/"), None);
    }
}
