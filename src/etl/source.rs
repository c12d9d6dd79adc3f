//! Where the rows come from: a local file, an http(s) URL downloaded to a temp file first, or a
//! file embedded in the binary. Every kind is read as a plain byte stream any number of times.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use credchain_core::redact_url;
use tempfile::TempPath;
use tokio::io::AsyncWriteExt;

use super::config::{PipelineConfig, BUILTIN_PREFIX};
use super::observer::{LogLevel, PipelineObserver, Step};
use super::sample;

/// How long to wait for the server to accept a connection.
pub const DOWNLOAD_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a download may stall between two chunks.
pub const DOWNLOAD_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The source as the config names it.
#[derive(Clone, PartialEq, Eq)]
pub enum SourceLocation {
    /// A local file.
    Path(PathBuf),
    /// An http(s) URL; it may carry credentials, so it prints redacted.
    Url(String),
    /// A file embedded in the binary, by name.
    Builtin(String),
}

impl SourceLocation {
    /// Reads the `source` field; relative paths are joined to the config's directory.
    pub fn of(config: &PipelineConfig) -> SourceLocation {
        let source = config.source.trim();
        if let Some(name) = source.strip_prefix(BUILTIN_PREFIX) {
            SourceLocation::Builtin(name.to_string())
        } else if is_url(source) {
            SourceLocation::Url(source.to_string())
        } else {
            SourceLocation::Path(config.base_dir.join(source))
        }
    }

    /// The source as it may be printed.
    pub fn label(&self) -> String {
        match self {
            SourceLocation::Path(path) => path.display().to_string(),
            SourceLocation::Url(url) => redact_source_url(url),
            SourceLocation::Builtin(name) => format!("{BUILTIN_PREFIX}{name}"),
        }
    }
}

impl fmt::Debug for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceLocation::Path(path) => f.debug_tuple("Path").field(path).finish(),
            SourceLocation::Url(_) => f.debug_tuple("Url").field(&self.label()).finish(),
            SourceLocation::Builtin(name) => f.debug_tuple("Builtin").field(name).finish(),
        }
    }
}

/// Whether a `source` value is an http(s) URL.
pub(crate) fn is_url(source: &str) -> bool {
    let lower = source.trim_start().to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// A source URL as it may be printed: the password masked (as [`redact_url`] does), every
/// query value masked (`?X-Amz-Signature=***`: the keys stay, a presigned URL's signature is a
/// credential), and a fragment masked too. A query part without `=` is masked whole, since it
/// may be a bare token.
pub fn redact_source_url(raw: &str) -> String {
    let Ok(url) = url::Url::parse(raw) else {
        // Not a URL: mask what may be user info (up to the last `@`, as `redact_url` does) and
        // everything from a `?` or `#` after it.
        let start = raw.rfind('@').unwrap_or(0);
        return match raw[start..].find(['?', '#']).map(|i| start + i) {
            Some(cut) => format!("{}{}***", redact_url(&raw[..cut]), &raw[cut..=cut]),
            None => redact_url(raw),
        };
    };
    let mut bare = url.clone();
    bare.set_query(None);
    bare.set_fragment(None);
    let mut shown = redact_url(bare.as_str());
    if let Some(query) = url.query() {
        let parts: Vec<String> = query
            .split('&')
            .map(|part| match part.split_once('=') {
                Some((key, _)) => format!("{key}=***"),
                None if part.is_empty() => String::new(),
                None => "***".to_string(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&parts.join("&"));
    }
    if url.fragment().is_some() {
        shown.push_str("#***");
    }
    shown
}

/// Why the source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The local file could not be opened.
    #[error("cannot open source {}", path.display())]
    OpenFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The local source is a pipe, a device or a directory: the pipeline reads its source more
    /// than once, which only a regular file allows.
    #[error(
        "source {} is not a regular file (a pipe, a device or a directory); the pipeline reads \
         its source more than once: copy it to a file first",
        path.display()
    )]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// No embedded file has that name.
    #[error("no built-in source named `{name}` (built in: {})", sample::BUILTIN_NAMES.join(", "))]
    FindBuiltin {
        /// The name asked for.
        name: String,
    },
    /// The HTTP request failed.
    #[error("cannot download source {url}")]
    Download {
        /// The URL, redacted (password and query values masked).
        url: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("cannot download source {url}: the server answered {status}")]
    DownloadStatus {
        /// The URL, redacted (password and query values masked).
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The download could not be written to a temp file.
    #[error("cannot save the downloaded source to a temp file")]
    SaveDownload(#[source] io::Error),
    /// A record could not be read (an I/O error in the middle of the file).
    #[error("cannot read the source at line {line}")]
    ReadRecord {
        /// The line where reading stopped.
        line: u64,
        /// The reader's error.
        #[source]
        source: io::Error,
    },
    /// The source has no header row, or a JSON Lines source has no key at all.
    #[error("source {label} has no columns (an empty file, or no header row)")]
    FindColumns {
        /// The source, as printed.
        label: String,
    },
}

/// A source that can be read from the start any number of times.
#[derive(Debug)]
pub(crate) enum LocalSource {
    File(PathBuf),
    Downloaded(TempPath),
    Builtin(&'static [u8]),
}

impl LocalSource {
    /// Opens a fresh reader at the start of the data.
    pub(crate) fn open(&self) -> Result<Box<dyn Read + Send>, ReadError> {
        let path: &Path = match self {
            LocalSource::Builtin(bytes) => return Ok(Box::new(*bytes)),
            LocalSource::File(path) => path,
            LocalSource::Downloaded(temp) => temp,
        };
        let file = File::open(path).map_err(|source| ReadError::OpenFile {
            path: path.to_path_buf(),
            source,
        })?;
        // The record readers buffer for themselves.
        Ok(Box::new(file))
    }
}

/// Makes the source readable locally: checks a file exists, finds an embedded one, or
/// downloads a URL to a temp file in a streaming fashion (memory stays flat).
pub(crate) async fn prepare(
    location: &SourceLocation,
    obs: &dyn PipelineObserver,
) -> Result<LocalSource, ReadError> {
    match location {
        SourceLocation::Path(path) => {
            File::open(path).map_err(|source| ReadError::OpenFile {
                path: path.clone(),
                source,
            })?;
            Ok(LocalSource::File(path.clone()))
        }
        SourceLocation::Builtin(name) => sample::builtin(name)
            .map(LocalSource::Builtin)
            .ok_or_else(|| ReadError::FindBuiltin { name: name.clone() }),
        SourceLocation::Url(url) => download(url, obs).await.map(LocalSource::Downloaded),
    }
}

async fn download(url: &str, obs: &dyn PipelineObserver) -> Result<TempPath, ReadError> {
    let shown = redact_source_url(url);
    // reqwest errors print their URL, which may carry credentials; ours names it redacted.
    let failed = |source: reqwest::Error| ReadError::Download {
        url: shown.clone(),
        source: source.without_url(),
    };
    let client = reqwest::Client::builder()
        .connect_timeout(DOWNLOAD_CONNECT_TIMEOUT)
        .read_timeout(DOWNLOAD_READ_TIMEOUT)
        .user_agent(concat!("credchain/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(failed)?;
    let mut response = client.get(url).send().await.map_err(failed)?;
    if !response.status().is_success() {
        return Err(ReadError::DownloadStatus {
            url: shown,
            status: response.status().as_u16(),
        });
    }
    let temp = tempfile::Builder::new()
        .prefix("credchain-source-")
        .tempfile()
        .map_err(ReadError::SaveDownload)?;
    let (file, path) = temp.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        file.write_all(&chunk)
            .await
            .map_err(ReadError::SaveDownload)?;
        bytes += chunk.len() as u64;
    }
    file.flush().await.map_err(ReadError::SaveDownload)?;
    obs.log(
        Step::Extract,
        LogLevel::Info,
        &format!("downloaded {bytes} bytes from {shown}"),
    );
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(source: &str) -> PipelineConfig {
        let text = format!("[pipeline]\nsource = \"{source}\"\nformat = \"csv\"\ntable = \"t\"");
        PipelineConfig::from_toml_str(&text, "p.toml", Path::new("conf")).unwrap()
    }

    #[test]
    fn relative_paths_are_read_from_the_config_dir() {
        let loc = SourceLocation::of(&config("data/x.csv"));
        assert_eq!(loc, SourceLocation::Path(PathBuf::from("conf/data/x.csv")));
        let abs = SourceLocation::of(&config("/tmp/x.csv"));
        assert_eq!(abs, SourceLocation::Path(PathBuf::from("/tmp/x.csv")));
    }

    #[test]
    fn urls_print_redacted() {
        let loc = SourceLocation::of(&config("https://u:FAKEpw@h.example/x.csv"));
        assert!(matches!(loc, SourceLocation::Url(_)));
        assert!(!loc.label().contains("FAKEpw"));
    }

    #[test]
    fn query_values_and_fragments_print_masked() {
        let shown = redact_source_url(
            "https://u:FAKEpw@h.example/x.csv?X-Amz-Signature=FAKEsig&X-Amz-Expires=60&FAKEbare#FAKEfrag",
        );
        assert_eq!(
            shown,
            "https://u:***@h.example/x.csv?X-Amz-Signature=***&X-Amz-Expires=***&***#***"
        );
        assert_eq!(
            redact_source_url("http://127.0.0.1:8/ok.csv"),
            "http://127.0.0.1:8/ok.csv"
        );
        let loc = SourceLocation::of(&config("http://h.example/x.csv?tok=FAKE2"));
        for shown in [
            loc.label(),
            format!("{loc:?}"),
            format!("{:?}", config("http://h.example/x.csv?tok=FAKE2")),
        ] {
            assert!(
                !shown.contains("FAKE2") && shown.contains("tok=***"),
                "{shown}"
            );
        }
    }

    #[test]
    fn a_url_that_does_not_parse_prints_masked_too() {
        let shown = redact_source_url("http://u:FAKEpw@h:99999/x.csv?tok=FAKE2");
        assert!(
            !shown.contains("FAKEpw") && !shown.contains("FAKE2"),
            "{shown}"
        );
        assert!(shown.ends_with("?***"), "{shown}");
    }

    #[test]
    fn builtin_names_resolve() {
        let loc = SourceLocation::of(&config("builtin:birdstrikes.csv"));
        assert_eq!(loc, SourceLocation::Builtin("birdstrikes.csv".into()));
    }
}
