//! The Prefect API URL: validation, and how request paths are appended to it.
//!
//! Rules:
//! 1. The scheme is `http` or `https`, and there is a host.
//! 2. An empty path (`http://host:4200`) is an error that suggests `/api`: Prefect serves its
//!    UI there, and API calls would get 404s or HTML.
//! 3. Trailing slashes are dropped, so `.../api/` and `.../api` are the same URL.
//! 4. Request paths are appended as strings (`base + "/flows/"`), never joined as URLs, which
//!    would drop the last segment (`/api`) or Prefect's trailing slashes.
//! 5. A user name or password in the URL is refused: credentials go in `PREFECT_API_KEY` or
//!    `PREFECT_API_AUTH_STRING`, where they are handled as secrets.

use credchain_core::redact_url;

/// Where Prefect Cloud's API lives; a URL under it is a Cloud URL.
pub const PREFECT_CLOUD_API_URL: &str = "https://api.prefect.cloud/api";

/// Why `PREFECT_API_URL` was refused. Every message shows the URL with any password masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The text is not a URL.
    #[error("PREFECT_API_URL `{url}` is not a valid URL ({reason})")]
    ParseApiUrl {
        /// The URL, redacted.
        url: String,
        /// What the parser said.
        reason: String,
    },
    /// The scheme is not http or https.
    #[error("PREFECT_API_URL `{url}` must start with http:// or https://")]
    CheckScheme {
        /// The URL, redacted.
        url: String,
    },
    /// The URL has no path, so it points at Prefect's UI rather than its API.
    #[error("PREFECT_API_URL `{url}` has no path; the Prefect API is served under /api")]
    CheckApiPath {
        /// The URL, redacted.
        url: String,
        /// The URL with `/api` added.
        suggestion: String,
    },
    /// The URL carries a user name or a password.
    #[error("PREFECT_API_URL `{url}` carries credentials in the URL")]
    CheckUserinfo {
        /// The URL, redacted.
        url: String,
    },
    /// The URL has a query or a fragment, which request paths cannot be appended to.
    #[error("PREFECT_API_URL `{url}` has a query or fragment")]
    CheckQuery {
        /// The URL, redacted.
        url: String,
    },
}

impl UrlError {
    /// What the user should do about it.
    pub fn hint(&self) -> String {
        match self {
            UrlError::CheckApiPath { suggestion, .. } => {
                format!("set PREFECT_API_URL={suggestion}")
            }
            UrlError::CheckUserinfo { .. } => "remove `user:password@` from PREFECT_API_URL and \
                put it in PREFECT_API_AUTH_STRING (or the key in PREFECT_API_KEY)"
                .to_string(),
            _ => "set PREFECT_API_URL like http://127.0.0.1:4200/api".to_string(),
        }
    }
}

/// A checked Prefect API URL without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiUrl {
    base: String,
    host: String,
    port: u16,
    cloud: bool,
}

impl ApiUrl {
    /// Checks `raw` against the rules above.
    pub fn parse(raw: &str) -> Result<ApiUrl, UrlError> {
        let raw = raw.trim();
        let shown = redact_url(raw);
        let url = url::Url::parse(raw).map_err(|e| UrlError::ParseApiUrl {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlError::CheckScheme { url: shown });
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::CheckUserinfo { url: shown });
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(UrlError::CheckQuery { url: shown });
        }
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let base = url.as_str().trim_end_matches('/').to_string();
        if url.path().trim_matches('/').is_empty() {
            let suggestion = format!("{base}/api");
            return Err(UrlError::CheckApiPath {
                url: shown,
                suggestion,
            });
        }
        let cloud =
            base == PREFECT_CLOUD_API_URL || base.starts_with(&format!("{PREFECT_CLOUD_API_URL}/"));
        Ok(ApiUrl {
            base,
            host,
            port,
            cloud,
        })
    }

    /// The full URL of `path`, which must start with `/` (`/flows/`, `/health`).
    pub fn join(&self, path: &str) -> String {
        debug_assert!(
            path.starts_with('/'),
            "request paths start with a slash: {path}"
        );
        format!("{}{path}", self.base)
    }

    /// The URL as text, without a trailing slash. It carries no credentials.
    pub fn as_str(&self) -> &str {
        &self.base
    }

    /// The host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, explicit or the scheme's default.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether this is Prefect Cloud, which needs an API key and has no CSRF tokens.
    pub fn is_cloud(&self) -> bool {
        self.cloud
    }
}

impl std::fmt::Display for ApiUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_slash_is_dropped_and_paths_are_appended() {
        let a = ApiUrl::parse("http://127.0.0.1:4200/api/").unwrap();
        let b = ApiUrl::parse("http://127.0.0.1:4200/api").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.join("/flows/"), "http://127.0.0.1:4200/api/flows/");
        assert_eq!(
            a.join("/flows/filter"),
            "http://127.0.0.1:4200/api/flows/filter"
        );
        assert_eq!((a.host(), a.port()), ("127.0.0.1", 4200));
    }

    #[test]
    fn empty_path_suggests_api() {
        for raw in [
            "http://127.0.0.1:4200",
            "http://127.0.0.1:4200/",
            "http://127.0.0.1:4200//",
        ] {
            match ApiUrl::parse(raw) {
                Err(e @ UrlError::CheckApiPath { .. }) => {
                    assert!(
                        e.hint().contains("http://127.0.0.1:4200/api"),
                        "{}",
                        e.hint()
                    )
                }
                other => panic!("{raw}: {other:?}"),
            }
        }
    }

    #[test]
    fn custom_base_path_is_kept() {
        let u = ApiUrl::parse("https://example.test/prefect/api/").unwrap();
        assert_eq!(u.join("/health"), "https://example.test/prefect/api/health");
        assert_eq!(u.port(), 443);
    }

    #[test]
    fn credentials_in_the_url_are_refused_and_not_echoed() {
        let e = ApiUrl::parse("http://admin:FAKEpass@127.0.0.1:4200/api").unwrap_err();
        assert!(matches!(e, UrlError::CheckUserinfo { .. }));
        assert!(!e.to_string().contains("FAKEpass"), "{e}");
    }

    #[test]
    fn cloud_urls_are_recognised() {
        let cloud = "https://api.prefect.cloud/api/accounts/a/workspaces/w";
        assert!(ApiUrl::parse(cloud).unwrap().is_cloud());
        assert!(!ApiUrl::parse("https://api.prefect.cloud.example/api")
            .unwrap()
            .is_cloud());
        assert!(!ApiUrl::parse("http://127.0.0.1:4200/api")
            .unwrap()
            .is_cloud());
    }

    #[test]
    fn other_schemes_are_refused() {
        assert!(matches!(
            ApiUrl::parse("ftp://h/api"),
            Err(UrlError::CheckScheme { .. })
        ));
        assert!(ApiUrl::parse("127.0.0.1:4200/api").is_err());
    }
}
