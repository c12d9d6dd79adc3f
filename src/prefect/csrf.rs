//! CSRF tokens, for servers started with `PREFECT_SERVER_CSRF_PROTECTION_ENABLED=true`.
//!
//! 1. Each client has one random id, sent as `Prefect-Csrf-Client`.
//! 2. Before its first POST, PUT, PATCH or DELETE the client asks
//!    `GET /csrf-token?client=<id>`. A 422 saying "CSRF protection is disabled." or a 404
//!    turns CSRF off for the life of the client.
//! 3. Otherwise the token goes in `Prefect-Csrf-Token` on every such request, and is fetched
//!    again shortly before it expires.
//! 4. A 403 about the CSRF token drops the token; the request is sent once more with a new one.
//!
//! Prefect Cloud has no CSRF tokens, so a Cloud client starts with CSRF off.

use std::future::Future;

use chrono::{DateTime, Utc};
use credchain_core::Secret;
use reqwest::header::{HeaderName, HeaderValue};
use tokio::sync::Mutex;

use super::error::RequestError;
use super::transport::Incoming;

/// The header carrying the token.
pub const TOKEN_HEADER: &str = "prefect-csrf-token";
/// The header carrying the client id.
pub const CLIENT_HEADER: &str = "prefect-csrf-client";
/// A token is replaced this long before its expiration.
const EXPIRY_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

#[derive(Debug)]
enum State {
    Unknown,
    Off,
    Token {
        token: Secret,
        expires: Option<DateTime<Utc>>,
    },
}

/// What the answer to `GET /csrf-token` means.
pub(crate) enum TokenAnswer {
    /// Use this token.
    Token(Secret, Option<DateTime<Utc>>),
    /// The server does not use CSRF tokens.
    Off,
}

/// The CSRF state of one client.
#[derive(Debug)]
pub(crate) struct Csrf {
    client_id: String,
    enabled: bool,
    state: Mutex<State>,
}

impl Csrf {
    /// A fresh state; `enabled` is false for Prefect Cloud.
    pub(crate) fn new(enabled: bool) -> Self {
        Csrf {
            client_id: uuid::Uuid::new_v4().to_string(),
            enabled,
            state: Mutex::new(if enabled { State::Unknown } else { State::Off }),
        }
    }

    /// The request path that issues a token to this client.
    pub(crate) fn token_path(&self) -> String {
        format!("/csrf-token?client={}", self.client_id)
    }

    /// The two headers for a mutating request, fetching a token first when there is none.
    /// Concurrent callers wait for one fetch.
    pub(crate) async fn headers<F, Fut>(
        &self,
        fetch: F,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, RequestError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<TokenAnswer, RequestError>>,
    {
        let mut state = self.state.lock().await;
        let usable = match &*state {
            State::Off => return Ok(Vec::new()),
            State::Token { expires, .. } => {
                expires.is_none_or(|at| Utc::now() + EXPIRY_MARGIN < at)
            }
            State::Unknown => false,
        };
        if !usable {
            *state = match fetch().await? {
                TokenAnswer::Token(token, expires) => State::Token { token, expires },
                TokenAnswer::Off => {
                    tracing::debug!("the server has CSRF protection off");
                    State::Off
                }
            };
        }
        Ok(match &*state {
            State::Token { token, .. } => self.pair(token),
            _ => Vec::new(),
        })
    }

    fn pair(&self, token: &Secret) -> Vec<(HeaderName, HeaderValue)> {
        let mut token = match HeaderValue::from_str(token.expose()) {
            Ok(value) => value,
            Err(_) => return Vec::new(),
        };
        token.set_sensitive(true);
        let client = HeaderValue::from_str(&self.client_id).unwrap_or(HeaderValue::from_static(""));
        vec![
            (HeaderName::from_static(TOKEN_HEADER), token),
            (HeaderName::from_static(CLIENT_HEADER), client),
        ]
    }

    /// Drops the token after the server refused it (or asked for one after saying CSRF was
    /// off); the next mutating request fetches one. Returns false for Prefect Cloud, where
    /// there is nothing to fetch.
    pub(crate) async fn invalidate(&self) -> bool {
        if self.enabled {
            *self.state.lock().await = State::Unknown;
        }
        self.enabled
    }
}

/// Reads the answer to `GET /csrf-token`; an answer that is neither a token nor "CSRF is off"
/// is handed back for the caller to report.
pub(crate) fn read_answer(answer: Incoming) -> Result<TokenAnswer, Box<Incoming>> {
    #[derive(serde::Deserialize)]
    struct Issued {
        token: String,
        #[serde(default)]
        expiration: Option<DateTime<Utc>>,
    }
    match answer.status.as_u16() {
        200 => match serde_json::from_slice::<Issued>(&answer.body) {
            Ok(issued) => Ok(TokenAnswer::Token(
                Secret::new(issued.token),
                issued.expiration,
            )),
            Err(_) => Err(Box::new(answer)),
        },
        404 => Ok(TokenAnswer::Off),
        422 if String::from_utf8_lossy(&answer.body).contains("CSRF protection is disabled") => {
            Ok(TokenAnswer::Off)
        }
        _ => Err(Box::new(answer)),
    }
}

/// Whether a 403 is about the CSRF token (missing or invalid) rather than permissions.
pub(crate) fn is_token_refusal(answer: &Incoming) -> bool {
    answer.status.as_u16() == 403 && {
        let text = String::from_utf8_lossy(&answer.body);
        text.contains("Invalid CSRF token") || text.contains("Missing CSRF token")
    }
}
