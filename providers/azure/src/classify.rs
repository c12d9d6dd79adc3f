//! What a failed Key Vault read means: absent (`SecretNotFound`, a disabled secret), denied,
//! throttled, unavailable or a configuration problem; read from the SDK's error and the vault's
//! error body, never from anything that could hold a token or a value.

use std::error::Error as StdError;

use azure_core::error::ErrorKind as SdkErrorKind;
use serde::Deserialize;

use crate::credential::{causes, one_line, LoginFailure, LoginFailureKind};

/// What a failed read means.
#[derive(Debug)]
pub enum Failure {
    /// The vault has no such secret (or no such version).
    NotFound,
    /// The secret exists but is disabled.
    Disabled,
    /// 401 after re-authentication, or 403.
    Denied(VaultError),
    /// 429 after every retry.
    Throttled,
    /// 408 or 5xx after every retry, or another unexpected status.
    ServerFailed(VaultError),
    /// The vault refused the request as malformed (400, or a 404 that is not `SecretNotFound`).
    BadRequest(VaultError),
    /// Logging in to Entra ID failed.
    Login(LoginFailureKind, String),
    /// The vault could not be reached.
    Unreachable(String),
    /// The SDK refused something before sending (a login challenge for another domain, ...).
    Refused(String),
}

/// The parts of a Key Vault error answer that are safe to show.
#[derive(Debug, Default, Clone)]
pub struct VaultError {
    /// The HTTP status.
    pub status: u16,
    /// `error.code`, such as `Forbidden`.
    pub code: Option<String>,
    /// `error.innererror.code`, such as `ForbiddenByRbac` or `SecretDisabled`.
    pub inner_code: Option<String>,
    /// The first line of `error.message`.
    pub message: Option<String>,
    /// The caller's object id, when the message names it (`oid=...`).
    pub object_id: Option<String>,
    /// The caller's client (application) id, when the message names it (`appid=...`).
    pub client_id: Option<String>,
}

/// `{"error":{"code":..,"message":..,"innererror":{"code":..}}}`.
#[derive(Deserialize)]
struct Envelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
    innererror: Option<InnerError>,
}

#[derive(Deserialize)]
struct InnerError {
    code: Option<String>,
}

impl VaultError {
    /// Reads an error answer's body; an unreadable body leaves the fields empty.
    pub fn parse(status: u16, body: &[u8]) -> Self {
        let mut error = VaultError {
            status,
            ..VaultError::default()
        };
        let Ok(Envelope { error: body }) = serde_json::from_slice::<Envelope>(body) else {
            return error;
        };
        let full = body.message.unwrap_or_default();
        error.object_id = caller_field(&full, "oid=");
        error.client_id = caller_field(&full, "appid=");
        error.message = full.lines().next().map(str::trim).map(str::to_string);
        error.code = body.code;
        error.inner_code = body.innererror.and_then(|i| i.code);
        error
    }

    /// `Forbidden/ForbiddenByRbac: Caller is not authorized ...`, or the status alone.
    pub fn summary(&self) -> String {
        let code = match (&self.code, &self.inner_code) {
            (Some(code), Some(inner)) => format!("{code}/{inner}"),
            (Some(code), None) => code.clone(),
            (None, _) => format!("HTTP {}", self.status),
        };
        match &self.message {
            Some(message) if !message.is_empty() => format!("{code}: {message}"),
            _ => code,
        }
    }

    /// Says who was refused, when the vault said: object id and client id are identifiers, not
    /// secrets.
    pub fn principal(&self) -> Option<String> {
        match (&self.object_id, &self.client_id) {
            (Some(oid), Some(appid)) => Some(format!("object id {oid}, client id {appid}")),
            (Some(oid), None) => Some(format!("object id {oid}")),
            (None, Some(appid)) => Some(format!("client id {appid}")),
            (None, None) => None,
        }
    }

    fn is_disabled(&self) -> bool {
        self.inner_code.as_deref() == Some("SecretDisabled")
            || self
                .message
                .as_deref()
                .is_some_and(|m| m.contains("disabled secret"))
    }
}

/// The value after `key` in `...;appid=<id>;oid=<id>;...`: hex digits and dashes only.
fn caller_field(message: &str, key: &str) -> Option<String> {
    let start = message
        .match_indices(key)
        .map(|(i, _)| i)
        .find(|&i| i == 0 || !message.as_bytes()[i - 1].is_ascii_alphanumeric())?;
    let rest = &message[start + key.len()..];
    let id: String = rest
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
        .collect();
    (!id.is_empty()).then_some(id)
}

/// Classifies an error of `SecretClient::get_secret`.
pub fn classify(err: &azure_core::Error) -> Failure {
    if let Some(login) = LoginFailure::find(err) {
        return Failure::Login(login.kind, login.message.clone());
    }
    match err.kind() {
        SdkErrorKind::HttpResponse {
            status,
            raw_response,
            ..
        } => {
            let status = u16::from(*status);
            let body = raw_response
                .as_ref()
                .map(|r| r.body().as_ref())
                .unwrap_or_default();
            from_status(VaultError::parse(status, body))
        }
        SdkErrorKind::Connection | SdkErrorKind::Io => Failure::Unreachable(chain_text(err)),
        _ => Failure::Refused(chain_text(err)),
    }
}

/// Classifies an error answer by its status and codes.
fn from_status(error: VaultError) -> Failure {
    match error.status {
        404 if error.code.as_deref() == Some("SecretNotFound") => Failure::NotFound,
        403 if error.is_disabled() => Failure::Disabled,
        401 | 403 => Failure::Denied(error),
        429 => Failure::Throttled,
        408 | 500.. => Failure::ServerFailed(error),
        400..=499 => Failure::BadRequest(error),
        _ => Failure::ServerFailed(error),
    }
}

/// The messages of an error and its causes on one line, each once. The SDK's messages name
/// endpoints, statuses and codes; they never carry a token, and a read that failed has no value.
pub fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in causes(err) {
        let text = one_line(&cause.to_string());
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const RBAC_403: &str = r#"{"error":{"code":"Forbidden","message":"Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid=0f3e2a1b-1111-2222-3333-444455556666;oid=9a8b7c6d-aaaa-bbbb-cccc-ddddeeeeffff;iss=https://sts.windows.net/t/\r\nAction: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'","innererror":{"code":"ForbiddenByRbac"}}}"#;

    #[test]
    fn rbac_denial_names_the_principal() {
        let failure = from_status(VaultError::parse(403, RBAC_403.as_bytes()));
        let Failure::Denied(error) = failure else {
            panic!("not denied: {failure:?}")
        };
        assert_eq!(
            error.principal().unwrap(),
            "object id 9a8b7c6d-aaaa-bbbb-cccc-ddddeeeeffff, client id 0f3e2a1b-1111-2222-3333-444455556666"
        );
        assert_eq!(
            error.summary(),
            "Forbidden/ForbiddenByRbac: Caller is not authorized to perform action on resource."
        );
    }

    #[test]
    fn secret_not_found_is_absent() {
        let body = br#"{"error":{"code":"SecretNotFound","message":"A secret with (name/id) X was not found in this key vault."}}"#;
        assert!(matches!(
            from_status(VaultError::parse(404, body)),
            Failure::NotFound
        ));
    }

    #[test]
    fn other_404_is_a_bad_request() {
        assert!(matches!(
            from_status(VaultError::parse(404, b"<html>")),
            Failure::BadRequest(_)
        ));
    }

    #[test]
    fn disabled_secret_is_recognised() {
        let body = br#"{"error":{"code":"Forbidden","message":"Operation get is not allowed on a disabled secret.","innererror":{"code":"SecretDisabled"}}}"#;
        assert!(matches!(
            from_status(VaultError::parse(403, body)),
            Failure::Disabled
        ));
    }

    #[test]
    fn throttling_and_outages() {
        assert!(matches!(
            from_status(VaultError::parse(429, b"")),
            Failure::Throttled
        ));
        assert!(matches!(
            from_status(VaultError::parse(503, b"")),
            Failure::ServerFailed(_)
        ));
    }

    #[test]
    fn caller_field_needs_a_boundary() {
        assert_eq!(
            caller_field("xoid=abc;oid=12-ef", "oid="),
            Some("12-ef".into())
        );
        assert_eq!(caller_field("nothing here", "oid="), None);
    }
}
