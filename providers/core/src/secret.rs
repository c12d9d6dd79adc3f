//! The secret type: a string that never prints and is wiped from memory when dropped.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// What every secret prints as, in `Debug` and `Display` alike.
pub const REDACTED: &str = "[REDACTED]";

/// A secret value: an API key, a password, a token, a URL that carries a password.
///
/// `Debug` and `Display` print [`REDACTED`]; the memory is zeroed on drop. The only way to the
/// bytes is [`Secret::expose`], which keeps every use of the plain value easy to find.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a value. The `String` is moved, not copied, so no unwiped copy is left behind.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    /// The plain value. Call this only where the value leaves the process (an HTTP header, a
    /// child's environment, stdout for `credchain get`).
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Length in bytes; safe to log.
    pub fn len(&self) -> usize {
        self.expose().len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

/// Compares in time that depends only on the lengths, so comparing a rejected key with a fresh
/// one does not leak where they differ.
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.expose().as_bytes(), other.expose().as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

/// Query parameters whose values are masked when a URL is printed.
const SECRET_QUERY_KEYS: [&str; 8] = [
    "token",
    "key",
    "api_key",
    "apikey",
    "password",
    "secret",
    "sig",
    "signature",
];

/// A URL made safe to print: a password becomes `***`, and so does a token in the user part
/// when there is no password (`https://TOKEN@host`), and the value of a query parameter named
/// like a credential (`?token=...`). Text that does not parse as a URL but has an `@` is masked
/// up to that `@` (after the `scheme://`, when there is one).
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            } else if !url.username().is_empty() && url.scheme().starts_with("http") {
                let _ = url.set_username("***");
            }
            mask_query(&mut url);
            url.to_string()
        }
        Err(_) => match raw.rfind('@') {
            Some(at) => {
                let keep = raw.find("://").map_or(0, |i| i + 3).min(at);
                format!("{}***{}", &raw[..keep], &raw[at..])
            }
            None => raw.to_string(),
        },
    }
}

fn mask_query(url: &mut url::Url) {
    if url.query().is_none() {
        return;
    }
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let secret = SECRET_QUERY_KEYS.contains(&k.to_ascii_lowercase().as_str());
            (
                k.into_owned(),
                if secret { "***".into() } else { v.into_owned() },
            )
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = Secret::new("pnu_FAKE_KEY_001");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(
            format!("{:#?}", Some(&s)),
            format!("Some(\n    {REDACTED},\n)")
        );
    }

    #[test]
    fn equality_compares_the_values() {
        assert_eq!(Secret::new("a"), Secret::new("a"));
        assert_ne!(Secret::new("a"), Secret::new("b"));
        assert_ne!(Secret::new("a"), Secret::new("ab"));
    }

    #[test]
    fn url_password_is_masked() {
        let out = redact_url("postgres://etl:FAKEpass@db.example:5432/etl");
        assert_eq!(out, "postgres://etl:***@db.example:5432/etl");
        assert!(!out.contains("FAKEpass"));
    }

    #[test]
    fn url_without_password_is_unchanged() {
        assert_eq!(
            redact_url("http://127.0.0.1:4200/api"),
            "http://127.0.0.1:4200/api"
        );
    }

    #[test]
    fn url_missing_its_colon_is_masked_before_the_at() {
        let out = redact_url("http//admin:FAKEpass@127.0.0.1:1/api");
        assert_eq!(out, "***@127.0.0.1:1/api");
    }

    #[test]
    fn credential_query_values_are_masked() {
        let out = redact_url("https://h.example/api?token=FAKEtok&x=1");
        assert!(!out.contains("FAKEtok"), "{out}");
        assert!(out.contains("x=1"), "{out}");
    }

    #[test]
    fn unparseable_url_with_userinfo_is_masked() {
        let out = redact_url("postgres://etl:FAKE pass@[bad/etl");
        assert!(!out.contains("FAKE"), "{out}");
    }
}
