//! The `file` source: a directory holding one file per key (Docker secrets, Kubernetes secret
//! volumes, CSI secret-store mounts), read by path on every fetch.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use credchain_core::value;
use credchain_core::{
    CredentialSource, Diagnosis, Environment, Lifetime, Provenance, Resolved, SourceError,
    SourceSettings,
};
use serde::Deserialize;

/// Options of a `type = "file"` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOptions {
    /// The directory; relative paths are relative to the config file's directory.
    dir: String,
}

/// Reads key `KEY` from the file `<dir>/KEY`, or from the file its `keys` override names
/// (relative to `dir`; `name#field` picks a JSON field). Files are opened by path on every
/// fetch and closed at once, so a rotated file (including a Kubernetes `..data` symlink swap)
/// is seen on the next fetch. Contents are never base64-decoded.
#[derive(Debug)]
pub struct FileSource {
    settings: SourceSettings,
    /// The directory as configured, used in provenance and messages.
    shown: String,
    /// The directory resolved against the settings' `base_dir`.
    dir: PathBuf,
}

impl FileSource {
    /// A source reading files in `dir` (relative paths are relative to `settings.base_dir`).
    pub fn new(settings: SourceSettings, dir: impl Into<String>) -> Self {
        let shown = dir.into();
        FileSource {
            dir: settings.base_dir.join(&shown),
            shown,
            settings,
        }
    }

    /// The directory this source reads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A key without an override names its file, so it must be a plain file name.
    fn check_file_name(&self, key: &str) -> Result<(), SourceError> {
        if key.is_empty() || key == "." || key == ".." || key.contains(['/', '\0']) {
            return Err(
                SourceError::invalid(format!("key {key:?} is not a valid file name"))
                    .with_hint("map the key to a file with the source's `keys` table"),
            );
        }
        Ok(())
    }

    /// A missing file: the key is absent if the directory exists, else the source is not set up.
    async fn missing(&self, key: &str, shown: &str) -> Result<Option<Resolved>, SourceError> {
        match tokio::fs::metadata(&self.dir).await {
            Ok(meta) if meta.is_dir() => {
                tracing::debug!(key, file = %shown, "no such file");
                Ok(None)
            }
            Ok(_) => Err(SourceError::invalid(format!(
                "{} is not a directory",
                self.shown
            ))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Err(SourceError::not_configured(
                format!("directory {} does not exist", self.shown),
            )),
            Err(err) => Err(super::read_failure(&self.shown, err)),
        }
    }
}

/// The registry's constructor for `type = "file"`.
pub(super) fn build(
    settings: SourceSettings,
    options: toml::Table,
    _env: Arc<dyn Environment>,
) -> Result<Arc<dyn CredentialSource>, SourceError> {
    let options: FileOptions = super::parse_options("file", options)?;
    for (key, target) in &settings.keys {
        let file = target.split('#').next().unwrap_or(target);
        let inside = !file.is_empty()
            && Path::new(file).components().all(|c| {
                matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            });
        if !inside {
            return Err(SourceError::invalid(format!(
                "keys.{key}: `{file}` is not a path inside `dir`"
            ))
            .with_hint(
                "map each key to a file name, or a relative path without `..`, inside dir",
            ));
        }
    }
    Ok(Arc::new(FileSource::new(settings, options.dir)))
}

#[async_trait]
impl CredentialSource for FileSource {
    fn name(&self) -> &str {
        &self.settings.name
    }

    async fn fetch(&self, key: &str) -> Result<Option<Resolved>, SourceError> {
        let address = self.settings.address(key, str::to_owned)?;
        if !self.settings.keys.contains_key(key) {
            self.check_file_name(key)?;
        }
        let path = self.dir.join(&address.location);
        let shown = Path::new(&self.shown)
            .join(&address.location)
            .display()
            .to_string();
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return self.missing(key, &shown).await
            }
            Err(err) => return Err(super::read_failure(&shown, err)),
        };
        let text = super::decode_utf8(key, &shown, bytes)?;
        let field = address.field.as_deref();
        let Some(value) = value::select(key, &shown, text, field)? else {
            return Ok(None);
        };
        let location = match field {
            Some(field) => format!("{shown}#{field}"),
            None => shown,
        };
        Ok(Some(Resolved {
            value,
            provenance: Provenance {
                source: self.settings.name.clone(),
                location,
                version: None,
            },
            lifetime: Lifetime::File(path),
        }))
    }

    async fn diagnose(&self) -> Result<Diagnosis, SourceError> {
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(SourceError::not_configured(format!(
                    "directory {} does not exist",
                    self.shown
                )))
            }
            Err(err) => return Err(super::read_failure(&self.shown, err)),
        };
        let mut files = 0usize;
        while let Ok(Some(entry)) = entries.next_entry().await {
            // Kubernetes keeps its timestamped directories and `..data` link beside the keys.
            files += usize::from(!entry.file_name().to_string_lossy().starts_with(".."));
        }
        let mut diagnosis = Diagnosis::default();
        diagnosis.details.push(format!(
            "directory {} ({files} entries)",
            self.dir.display()
        ));
        if files == 0 {
            diagnosis
                .warnings
                .push(format!("directory {} is empty", self.shown));
        }
        Ok(diagnosis)
    }
}
