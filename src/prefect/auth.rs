//! Which credential the client sends, and the `Authorization` header made from it.
//!
//! `PREFECT_API_KEY` is sent as `Bearer <key>`, `PREFECT_API_AUTH_STRING` (`user:password`) as
//! HTTP Basic. Both at once is a configuration error; neither means no header, except for
//! Prefect Cloud, which needs a key. The header value is marked sensitive, so neither reqwest
//! nor hyper prints it, and the formatted text is wiped after use.

use base64::Engine;
use reqwest::header::HeaderValue;
use zeroize::Zeroizing;

use crate::credentials::{Credentials, Current};

use super::error::SetupError;
use super::url::ApiUrl;

/// The key holding a Prefect Cloud or gateway API key.
pub const API_KEY: &str = "PREFECT_API_KEY";
/// The key holding a `user:password` auth string for a server with Basic auth.
pub const AUTH_STRING: &str = "PREFECT_API_AUTH_STRING";

/// How requests authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// `Authorization: Bearer <PREFECT_API_KEY>`.
    Bearer,
    /// `Authorization: Basic base64(<PREFECT_API_AUTH_STRING>)`.
    Basic,
    /// No `Authorization` header.
    None,
}

impl AuthMode {
    /// The key whose value is sent, if any.
    pub fn key(self) -> Option<&'static str> {
        match self {
            AuthMode::Bearer => Some(API_KEY),
            AuthMode::Basic => Some(AUTH_STRING),
            AuthMode::None => None,
        }
    }

    /// `bearer`, `basic` or `none`.
    pub fn label(self) -> &'static str {
        match self {
            AuthMode::Bearer => "bearer",
            AuthMode::Basic => "basic",
            AuthMode::None => "none",
        }
    }

    /// Decides the mode from which keys resolve, before any request is sent.
    pub async fn choose(creds: &Credentials, api: &ApiUrl) -> Result<AuthMode, SetupError> {
        let key = lookup(creds, API_KEY).await?;
        let auth = lookup(creds, AUTH_STRING).await?;
        match (key, auth) {
            (Some(key), Some(auth)) => Err(SetupError::ChooseAuth {
                key_from: key.provenance().to_string(),
                auth_from: auth.provenance().to_string(),
            }),
            (Some(_), None) => Ok(AuthMode::Bearer),
            (None, Some(_)) if api.is_cloud() => Err(SetupError::RequireCloudKey {
                server: api.to_string(),
            }),
            (None, Some(_)) => Ok(AuthMode::Basic),
            (None, None) if api.is_cloud() => Err(SetupError::RequireCloudKey {
                server: api.to_string(),
            }),
            (None, None) => Ok(AuthMode::None),
        }
    }

    /// The header carrying `current`, marked sensitive.
    pub(crate) fn header(self, current: &Current) -> Option<HeaderValue> {
        let text = match self {
            AuthMode::Bearer => Zeroizing::new(format!("Bearer {}", current.value().expose())),
            AuthMode::Basic => {
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(current.value().expose());
                Zeroizing::new(format!("Basic {encoded}"))
            }
            AuthMode::None => return None,
        };
        // A value with a control character was refused by the source already; a value that
        // still does not fit a header is sent as nothing and the server's 401 says the rest.
        let mut value = HeaderValue::from_str(&text).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

async fn lookup(creds: &Credentials, key: &'static str) -> Result<Option<Current>, SetupError> {
    creds
        .get(key)
        .await
        .map_err(|source| SetupError::ResolveKey { key, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use credchain_core::{Lifetime, Provenance, Resolved, Secret};

    fn current(value: &str) -> Current {
        Current::for_tests(Resolved {
            value: Secret::new(value),
            provenance: Provenance {
                source: "env".into(),
                location: "X".into(),
                version: None,
            },
            lifetime: Lifetime::Static,
        })
    }

    #[test]
    fn bearer_and_basic_headers_are_sensitive() {
        let bearer = AuthMode::Bearer.header(&current("pnu_FAKE_1")).unwrap();
        assert_eq!(bearer.to_str().unwrap(), "Bearer pnu_FAKE_1");
        assert!(bearer.is_sensitive());
        assert!(!format!("{bearer:?}").contains("pnu_FAKE_1"));
        let basic = AuthMode::Basic.header(&current("admin:FAKEpass")).unwrap();
        assert_eq!(basic.to_str().unwrap(), "Basic YWRtaW46RkFLRXBhc3M=");
        assert!(AuthMode::None.header(&current("x")).is_none());
    }
}
