//! The `dotenv` source: values from a `.env` file, parsed by our own parser and re-read when
//! the file changes.

mod checks;
pub mod parse;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use credchain_core::value;
use credchain_core::{
    CredentialSource, Diagnosis, Environment, Lifetime, Provenance, Resolved, Secret, SourceError,
    SourceSettings,
};
use serde::Deserialize;
use zeroize::Zeroizing;

use self::parse::{Entry, Parsed, Quote};
use super::stamp::{file_stamp, FileStamp};

/// The file read when the `path` option is not given, relative to the config's directory.
pub const DEFAULT_PATH: &str = ".env";

/// Options of a `type = "dotenv"` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DotenvOptions {
    /// The file to read; relative paths are relative to the config file's directory.
    #[serde(default)]
    path: Option<String>,
}

/// Reads keys from a `.env` file. The file is parsed once and parsed again whenever its stamp
/// (change time, modification time, inode, size) changes. A missing file is "not configured".
pub struct DotenvSource {
    settings: SourceSettings,
    /// The path as configured, used in provenance (`.env:3`) and messages.
    shown: String,
    /// The path resolved against the settings' `base_dir`.
    path: PathBuf,
    env: Arc<dyn Environment>,
    cache: Mutex<Option<(FileStamp, Arc<Parsed>)>>,
    parses: AtomicU64,
}

impl fmt::Debug for DotenvSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DotenvSource")
            .field("name", &self.settings.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl DotenvSource {
    /// A source reading `path` (relative paths are relative to `settings.base_dir`); `env`
    /// supplies `${NAME}` references the file does not define.
    pub fn new(
        settings: SourceSettings,
        path: impl Into<String>,
        env: Arc<dyn Environment>,
    ) -> Self {
        let shown = path.into();
        DotenvSource {
            path: settings.base_dir.join(&shown),
            shown,
            settings,
            env,
            cache: Mutex::new(None),
            parses: AtomicU64::new(0),
        }
    }

    /// The file this source reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The parsed file, from the cache when its stamp has not changed.
    async fn load(&self) -> Result<Arc<Parsed>, SourceError> {
        self.load_logging(true).await
    }

    /// [`Self::load`]; with `log_duplicates` false, a fresh parse does not log its duplicate
    /// keys (`diagnose` reports them itself, so doctor would show each twice).
    async fn load_logging(&self, log_duplicates: bool) -> Result<Arc<Parsed>, SourceError> {
        // The stamp is taken before the read: if the file changes in between, the next stamp
        // differs from the cached one and the file is read again.
        let stamp = file_stamp(&self.path);
        if let Some(parsed) = stamp.and_then(|stamp| self.cached(stamp)) {
            return Ok(parsed);
        }
        let bytes = Zeroizing::new(
            tokio::fs::read(&self.path)
                .await
                .map_err(|e| self.read_error(e))?,
        );
        let parsed = parse::parse(&self.shown, &bytes, &*self.env).map_err(|err| {
            SourceError::invalid(err.to_string())
                .with_hint("fix that line; see docs/sources.md for the `.env` syntax")
        })?;
        self.parses.fetch_add(1, Ordering::Relaxed);
        if log_duplicates {
            for dup in &parsed.duplicates {
                let warning = dup.warning(&self.shown);
                tracing::warn!(source = %self.settings.name, key = %dup.key, "{warning}");
            }
        }
        let parsed = Arc::new(parsed);
        if let Some(stamp) = stamp {
            *self.cache.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((stamp, parsed.clone()));
        }
        Ok(parsed)
    }

    /// The cached parse if it was made from the file with this stamp.
    fn cached(&self, stamp: FileStamp) -> Option<Arc<Parsed>> {
        match &*self.cache.lock().unwrap_or_else(PoisonError::into_inner) {
            Some((cached, parsed)) if *cached == stamp => Some(parsed.clone()),
            _ => None,
        }
    }

    fn read_error(&self, err: io::Error) -> SourceError {
        if err.kind() == io::ErrorKind::NotFound {
            return SourceError::not_configured(format!("{} does not exist", self.shown));
        }
        super::read_failure(&self.shown, err)
    }

    /// The value of one entry, cleaned by how it was written.
    fn clean(
        &self,
        key: &str,
        location: &str,
        entry: &Entry,
        field: Option<&str>,
    ) -> Result<Option<Secret>, SourceError> {
        if entry.quote == Quote::None || field.is_some() {
            return value::select(key, location, entry.value.expose().to_owned(), field);
        }
        // Quoted values are taken as written, line breaks included (a PEM block).
        if entry.value.expose().trim().is_empty() {
            tracing::debug!(key, location, "value is empty; treated as absent");
            return Ok(None);
        }
        Ok(Some(entry.value.clone()))
    }
}

/// The registry's constructor for `type = "dotenv"`.
pub(super) fn build(
    settings: SourceSettings,
    options: toml::Table,
    env: Arc<dyn Environment>,
) -> Result<Arc<dyn CredentialSource>, SourceError> {
    let options: DotenvOptions = super::parse_options("dotenv", options)?;
    let path = options.path.unwrap_or_else(|| DEFAULT_PATH.to_owned());
    Ok(Arc::new(DotenvSource::new(settings, path, env)))
}

#[async_trait]
impl CredentialSource for DotenvSource {
    fn name(&self) -> &str {
        &self.settings.name
    }

    async fn fetch(&self, key: &str) -> Result<Option<Resolved>, SourceError> {
        let address = self.settings.address(key, str::to_owned)?;
        let parsed = self.load().await?;
        let Some(entry) = parsed.entries.get(&address.location) else {
            tracing::debug!(key, file = %self.shown, "not set in the file");
            return Ok(None);
        };
        let mut location = format!("{}:{}", self.shown, entry.line);
        let field = address.field.as_deref();
        let Some(value) = self.clean(key, &location, entry, field)? else {
            return Ok(None);
        };
        if let Some(field) = field {
            location = format!("{location}#{field}");
        }
        Ok(Some(Resolved {
            value,
            provenance: Provenance {
                source: self.settings.name.clone(),
                location,
                version: None,
            },
            lifetime: Lifetime::File(self.path.clone()),
        }))
    }

    async fn diagnose(&self) -> Result<Diagnosis, SourceError> {
        let parsed = self.load_logging(false).await?;
        let mut diagnosis = Diagnosis::default();
        let count = parsed.entries.len();
        let noun = if count == 1 { "key" } else { "keys" };
        diagnosis
            .details
            .push(format!("file {} ({count} {noun})", self.path.display()));
        diagnosis.warnings = checks::warnings(&self.path, &self.shown, &parsed).await;
        Ok(diagnosis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credchain_core::MapEnv;

    #[tokio::test]
    async fn unchanged_file_is_parsed_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), "A=1\nB=2\n").unwrap();
        let mut settings = SourceSettings::new("dotenv");
        settings.base_dir = dir.path().to_owned();
        let source = DotenvSource::new(settings, ".env", Arc::new(MapEnv::default()));

        for key in ["A", "B", "A"] {
            assert!(source.fetch(key).await.unwrap().is_some());
        }
        assert_eq!(source.parses.load(Ordering::Relaxed), 1);
    }
}
