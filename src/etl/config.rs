//! The `[pipeline]` table: what to read, where to load it, and how strict to be.
//!
//! It lives in the main config file or in a file of its own (`--pipeline FILE`) whose top level
//! holds only a `[pipeline]` table. Unknown fields and bad values are errors that name the file,
//! the line and the field; a value that may hold a password is never quoted.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use credchain_core::{redact_url, Secret};
use serde::{Deserialize, Deserializer};

use super::ident;
use super::value::ColumnType;

/// The target when the table names none.
pub const DEFAULT_TARGET: &str = "sqlite://etl.db";
/// The share of rows that may be rejected before the run fails.
pub const DEFAULT_MAX_REJECTED: f64 = 0.05;
/// Appended to the table name to name the rejects file when the table names none.
pub const REJECTS_SUFFIX: &str = ".rejects.csv";
/// The prefix of a source embedded in the binary, such as `builtin:birdstrikes.csv`.
pub const BUILTIN_PREFIX: &str = "builtin:";

/// The layout of the source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line; the columns are the union of the objects' keys.
    #[serde(alias = "ndjson")]
    Jsonl,
}

impl Format {
    /// The format a file name implies: `.csv`, or `.jsonl`/`.ndjson`.
    pub fn from_name(name: &str) -> Option<Format> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            Some(Format::Csv)
        } else if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
            Some(Format::Jsonl)
        } else {
            None
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        })
    }
}

/// A target URL as written in the config. It may carry a password, so it is a [`Secret`] and
/// prints redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct TargetUrl(Secret);

impl TargetUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        TargetUrl(Secret::new(url))
    }

    /// The URL as a secret.
    pub fn secret(&self) -> &Secret {
        &self.0
    }
}

impl fmt::Debug for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(self.0.expose()))
    }
}

impl<'de> Deserialize<'de> for TargetUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(TargetUrl::new)
    }
}

/// The `[pipeline]` table. `Debug` prints a source URL redacted (see
/// [`redact_source_url`](super::source::redact_source_url)).
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// A path (relative to the config file's directory), an `http(s)://` URL, or
    /// `builtin:NAME` for a file embedded in the binary.
    pub source: String,
    /// `csv` or `jsonl`; taken from the source's extension when absent.
    #[serde(default)]
    pub format: Option<Format>,
    /// `sqlite://PATH` or `postgres://...`; [`DEFAULT_TARGET`] when neither this nor
    /// `target_key` is set.
    #[serde(default)]
    pub target: Option<TargetUrl>,
    /// The credential key whose value is the target URL (for example `DATABASE_URL`).
    #[serde(default)]
    pub target_key: Option<String>,
    /// The credential key whose value is the database password.
    #[serde(default)]
    pub password_key: Option<String>,
    /// The table to load into: `name` or `schema.name`.
    pub table: String,
    /// Key columns; with them the load upserts, so a re-run changes nothing.
    #[serde(default, deserialize_with = "one_or_many")]
    pub key: Vec<String>,
    /// Delete every row of the table before inserting, in the same transaction, so the table
    /// holds exactly this input.
    #[serde(default)]
    pub replace: bool,
    /// Column types that win over inference, by header name or column name.
    #[serde(default)]
    pub types: BTreeMap<String, ColumnType>,
    /// Where rejected rows go; `<table>.rejects.csv` in the working directory by default.
    #[serde(default)]
    pub rejects: Option<PathBuf>,
    /// The share of rows (0.0 to 1.0) that may be rejected before the run fails.
    #[serde(default = "default_max_rejected")]
    pub max_rejected: f64,
    /// Tags of the load task, for Prefect tag concurrency.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The directory a relative `source` path is read from: the config file's directory.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

impl fmt::Debug for PipelineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = if super::source::is_url(&self.source) {
            super::source::redact_source_url(self.source.trim())
        } else {
            self.source.clone()
        };
        f.debug_struct("PipelineConfig")
            .field("source", &source)
            .field("format", &self.format)
            .field("target", &self.target)
            .field("target_key", &self.target_key)
            .field("password_key", &self.password_key)
            .field("table", &self.table)
            .field("key", &self.key)
            .field("replace", &self.replace)
            .field("types", &self.types)
            .field("rejects", &self.rejects)
            .field("max_rejected", &self.max_rejected)
            .field("tags", &self.tags)
            .field("base_dir", &self.base_dir)
            .finish()
    }
}

fn default_max_rejected() -> f64 {
    DEFAULT_MAX_REJECTED
}

fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(deserializer) {
        Ok(OneOrMany::One(one)) => Ok(vec![one]),
        Ok(OneOrMany::Many(many)) => Ok(many),
        Err(_) => Err(serde::de::Error::custom(
            "expected a column name or a list of column names",
        )),
    }
}

/// Why the `[pipeline]` table is not usable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The pipeline file could not be read.
    #[error("cannot read pipeline file {}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a field is unknown or has a bad value.
    #[error("{origin}:{line}: {message}")]
    ParseTable {
        /// The file, or `built-in pipeline`.
        origin: String,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong; quoted string values are removed.
        message: String,
    },
    /// The file has no `[pipeline]` table.
    #[error("{}: no [pipeline] table", path.display())]
    MissingTable {
        /// The file.
        path: PathBuf,
    },
    /// A field parsed but its value is not allowed.
    #[error("{at}pipeline.{field}: {reason}")]
    InvalidField {
        /// `FILE:LINE: ` of the field when known, else empty.
        at: String,
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError::InvalidField {
            at: String::new(),
            field,
            reason: reason.into(),
        }
    }

    /// Names the file and line of an invalid field: the line of `field = ` in the `[pipeline]`
    /// table that starts at 1-based `table_line` of `text`, else the table's own line.
    fn located(self, origin: &str, text: Option<&str>, table_line: usize) -> Self {
        match self {
            ConfigError::InvalidField { field, reason, .. } => {
                let line = text
                    .and_then(|t| field_line(t, table_line, field))
                    .unwrap_or(table_line);
                ConfigError::InvalidField {
                    at: format!("{origin}:{line}: "),
                    field,
                    reason,
                }
            }
            other => other,
        }
    }
}

/// The 1-based line of `field = ...` inside the table whose header is at `table_line`.
fn field_line(text: &str, table_line: usize, field: &str) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(table_line)
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| {
            l.trim_start()
                .strip_prefix(field)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|(i, _)| i + 1)
}

/// The 1-based line of the `[pipeline]` header, or 1.
fn table_line(text: &str) -> usize {
    text.lines()
        .position(|l| l.trim() == "[pipeline]")
        .map_or(1, |i| i + 1)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    pipeline: Option<PipelineConfig>,
}

/// A config file with other tables beside `[pipeline]`, parsed only to locate an error.
#[derive(Deserialize)]
struct AnyFile {
    #[serde(rename = "pipeline")]
    _pipeline: Option<PipelineConfig>,
}

impl PipelineConfig {
    /// Reads a pipeline file (`--pipeline FILE`): its top level holds only a `[pipeline]`
    /// table. Relative source paths are read from the file's directory. The result is
    /// validated.
    pub fn from_file(path: &Path) -> Result<PipelineConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = path.display().to_string();
        let file: PipelineFile = parse_toml(&text, &origin)?;
        let config = file.pipeline.ok_or_else(|| ConfigError::MissingTable {
            path: path.to_path_buf(),
        })?;
        config
            .finish(dir_of(path))
            .map_err(|e| e.located(&origin, Some(&text), table_line(&text)))
    }

    /// Parses the `[pipeline]` table the main config loader kept as TOML. `path` and `line`
    /// say where the table stands, for errors; when the file can be read again, an error names
    /// the exact line of the bad field. The result is validated.
    pub fn from_table(
        table: toml::Table,
        path: Option<&Path>,
        line: usize,
    ) -> Result<PipelineConfig, ConfigError> {
        let origin = path.map_or_else(|| "built-in pipeline".into(), |p| p.display().to_string());
        let config = match table.try_into::<PipelineConfig>() {
            Ok(config) => config,
            Err(e) => return Err(locate_table_error(path, &origin, line, e)),
        };
        config
            .finish(path.map_or_else(|| PathBuf::from("."), dir_of))
            .map_err(|e| {
                let text = path.and_then(|p| std::fs::read_to_string(p).ok());
                e.located(&origin, text.as_deref(), line)
            })
    }

    /// Parses a pipeline file's text; used for the embedded sample. Relative source paths are
    /// read from `base_dir`.
    pub fn from_toml_str(text: &str, origin: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let file: PipelineFile = parse_toml(text, origin)?;
        let config = file.pipeline.ok_or_else(|| ConfigError::MissingTable {
            path: PathBuf::from(origin),
        })?;
        config
            .finish(base_dir.to_path_buf())
            .map_err(|e| e.located(origin, Some(text), table_line(text)))
    }

    fn finish(mut self, base_dir: PathBuf) -> Result<Self, ConfigError> {
        self.base_dir = base_dir;
        self.validate()?;
        Ok(self)
    }

    /// Checks every value that parsed but is not allowed. The error names the field and never
    /// quotes the target URL.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_source()?;
        self.validate_target()?;
        validate_table_name(&self.table)?;
        validate_names("key", &self.key)?;
        validate_names("tags", &self.tags)?;
        if self.types.keys().any(|name| name.trim().is_empty()) {
            return Err(ConfigError::invalid("types", "a column name is empty"));
        }
        if !(0.0..=1.0).contains(&self.max_rejected) {
            return Err(ConfigError::invalid(
                "max_rejected",
                format!("{:?} is not a share between 0.0 and 1.0", self.max_rejected),
            ));
        }
        if self
            .rejects
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(ConfigError::invalid("rejects", "the path is empty"));
        }
        self.check_rejects_path(self.literal_sqlite_target().as_deref())
    }

    /// The SQLite file the config names without a lookup: `target`, or the default target
    /// when neither `target` nor `target_key` is set.
    fn literal_sqlite_target(&self) -> Option<PathBuf> {
        let url = match (&self.target, &self.target_key) {
            (Some(url), _) => url.secret().expose(),
            (None, None) => DEFAULT_TARGET,
            (None, Some(_)) => return None,
        };
        url.strip_prefix(super::target::SQLITE_SCHEME)
            .map(PathBuf::from)
    }

    /// Refuses a rejects path that is the source file or the SQLite target file (or one of its
    /// journal files), which writing the rejects would replace. `sqlite_target` is the target
    /// file when the target is SQLite. Existing files are compared as the same file (any path
    /// or link to it), others by their normalized absolute paths; the rejects path and the
    /// target are relative to the working directory, the source to the config's directory.
    pub fn check_rejects_path(&self, sqlite_target: Option<&Path>) -> Result<(), ConfigError> {
        let rejects = self.rejects_path();
        let source = match super::source::SourceLocation::of(self) {
            super::source::SourceLocation::Path(path) => Some(path),
            _ => None,
        };
        let collides = |other: &Path| same_file(&rejects, other);
        if let Some(source) = source.filter(|s| collides(s)) {
            return Err(ConfigError::invalid(
                "rejects",
                format!(
                    "{} is the source file {}; writing the rejects there would replace the \
                     input: choose another rejects path",
                    rejects.display(),
                    source.display()
                ),
            ));
        }
        let Some(target) = sqlite_target else {
            return Ok(());
        };
        let journals = ["", "-journal", "-wal", "-shm"].map(|suffix| {
            let mut name = target.as_os_str().to_os_string();
            name.push(suffix);
            PathBuf::from(name)
        });
        if let Some(file) = journals.iter().find(|f| collides(f)) {
            return Err(ConfigError::invalid(
                "rejects",
                format!(
                    "{} is the SQLite target's file {}; writing the rejects there would \
                     destroy the database: choose another rejects path",
                    rejects.display(),
                    file.display()
                ),
            ));
        }
        Ok(())
    }

    fn validate_source(&self) -> Result<(), ConfigError> {
        if self.source.trim().is_empty() {
            return Err(ConfigError::invalid("source", "the source is empty"));
        }
        if self.format.is_none() && Format::from_name(source_file_name(&self.source)).is_none() {
            return Err(ConfigError::invalid(
                "format",
                "the source's extension is neither .csv nor .jsonl; set format = \"csv\" or \"jsonl\"",
            ));
        }
        Ok(())
    }

    fn validate_target(&self) -> Result<(), ConfigError> {
        if self.target.is_some() && self.target_key.is_some() {
            return Err(ConfigError::invalid(
                "target_key",
                "set either target or target_key, not both",
            ));
        }
        for (field, key) in [
            ("target_key", &self.target_key),
            ("password_key", &self.password_key),
        ] {
            if key.as_ref().is_some_and(|k| k.trim().is_empty()) {
                return Err(ConfigError::invalid(field, "the key name is empty"));
            }
        }
        if let Some(url) = &self.target {
            let kind = super::target::TargetKind::of(url.secret().expose())
                .map_err(|reason| ConfigError::invalid("target", reason))?;
            if kind == super::target::TargetKind::Sqlite && self.password_key.is_some() {
                return Err(ConfigError::invalid(
                    "password_key",
                    "a SQLite target takes no password",
                ));
            }
        }
        Ok(())
    }

    /// The format of the source: the configured one, else the one its extension implies.
    pub fn source_format(&self) -> Option<Format> {
        self.format
            .or_else(|| Format::from_name(source_file_name(&self.source)))
    }

    /// Where rejected rows are written.
    pub fn rejects_path(&self) -> PathBuf {
        self.rejects
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}{REJECTS_SUFFIX}", self.table)))
    }

    /// The credential keys this pipeline needs resolved before it can run: `target_key` and
    /// `password_key`, when set.
    pub fn required_keys(&self) -> Vec<&str> {
        [&self.target_key, &self.password_key]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }
}

fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, origin: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::ParseTable {
        origin: origin.to_string(),
        line: e
            .span()
            .map_or(1, |s| crate::config::line_of(text, s.start)),
        message: crate::config::scrub(e.message()),
    })
}

/// Re-reads the file the table came from to name the exact line of the bad field; falls back
/// to the table's own line.
fn locate_table_error(
    path: Option<&Path>,
    origin: &str,
    line: usize,
    error: toml::de::Error,
) -> ConfigError {
    let precise = path
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| parse_toml::<AnyFile>(&text, origin).err());
    precise.unwrap_or_else(|| ConfigError::ParseTable {
        origin: origin.to_string(),
        line,
        message: format!("pipeline: {}", crate::config::scrub(error.message())),
    })
}

/// Whether two paths (relative ones to the working directory) name the same file: the same
/// file on disk when both exist, else the same normalized absolute path.
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    if let (Ok(a), Ok(b)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        use std::os::unix::fs::MetadataExt;
        return (a.dev(), a.ino()) == (b.dev(), b.ino());
    }
    normalized(a) == normalized(b)
}

/// The absolute path of `path` with its longest existing ancestor canonicalized (links
/// resolved) and `.` and `..` removed from the rest.
fn normalized(path: &Path) -> PathBuf {
    let Ok(absolute) = std::path::absolute(path) else {
        return path.to_path_buf();
    };
    for ancestor in absolute.ancestors() {
        if let Ok(real) = ancestor.canonicalize() {
            let rest = absolute.strip_prefix(ancestor).unwrap_or(Path::new(""));
            let mut out = real;
            for part in rest.components() {
                match part {
                    std::path::Component::ParentDir => {
                        out.pop();
                    }
                    std::path::Component::Normal(name) => out.push(name),
                    _ => {}
                }
            }
            return out;
        }
    }
    absolute
}

fn dir_of(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// The last path segment of a source, without a URL's query or fragment.
fn source_file_name(source: &str) -> &str {
    let path = source.split(['?', '#']).next().unwrap_or(source);
    path.rsplit('/').next().unwrap_or(path)
}

fn validate_table_name(table: &str) -> Result<(), ConfigError> {
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() > 2 || !parts.iter().all(|p| ident::is_plain(p)) {
        return Err(ConfigError::invalid(
            "table",
            format!(
                "`{table}` is not a table name: use letters, digits and `_`, \
                 optionally as schema.name"
            ),
        ));
    }
    Ok(())
}

fn validate_names(field: &'static str, names: &[String]) -> Result<(), ConfigError> {
    for (i, name) in names.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(ConfigError::invalid(field, "an entry is empty"));
        }
        if names[..i].contains(name) {
            return Err(ConfigError::invalid(
                field,
                format!("`{name}` appears twice"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<PipelineConfig, ConfigError> {
        PipelineConfig::from_toml_str(&format!("[pipeline]\n{body}"), "p.toml", Path::new("."))
    }

    #[test]
    fn minimal_table_gets_defaults() {
        let c = parse("source = \"a.csv\"\ntable = \"t\"").unwrap();
        assert_eq!(c.source_format(), Some(Format::Csv));
        assert_eq!(c.max_rejected, DEFAULT_MAX_REJECTED);
        assert_eq!(c.rejects_path(), PathBuf::from("t.rejects.csv"));
        assert!(c.target.is_none() && c.key.is_empty() && c.required_keys().is_empty());
    }

    #[test]
    fn every_field_parses() {
        let c = parse(
            "source = \"https://x.example/data?x=1\"\nformat = \"jsonl\"\n\
             target_key = \"DATABASE_URL\"\npassword_key = \"DB_PASSWORD\"\n\
             table = \"etl.birds\"\nkey = \"id\"\nreplace = true\ntypes = { \"Flight Date\" = \"date\" }\n\
             rejects = \"r.csv\"\nmax_rejected = 0.5\ntags = [\"etl\", \"db\"]",
        )
        .unwrap();
        assert_eq!(c.key, vec!["id"]);
        assert!(c.replace);
        assert_eq!(c.types["Flight Date"], ColumnType::Date);
        assert_eq!(c.required_keys(), vec!["DATABASE_URL", "DB_PASSWORD"]);
    }

    #[test]
    fn unknown_field_names_the_field_and_line() {
        let err = parse("source = \"a.csv\"\ntable = \"t\"\nbatch = 3").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("p.toml:4:"), "{text}");
        assert!(text.contains("batch"), "{text}");
    }

    #[test]
    fn bad_type_name_is_an_error() {
        let err = parse("source = \"a.csv\"\ntable = \"t\"\ntypes = { a = \"money\" }");
        assert!(err.unwrap_err().to_string().contains("money"));
    }

    #[test]
    fn max_rejected_out_of_range_names_the_field() {
        let err = parse("source = \"a.csv\"\ntable = \"t\"\nmax_rejected = 1.5").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("p.toml:4: pipeline.max_rejected:"),
            "{err}"
        );
        let err = parse("source = \"a.csv\"\ntable = \"t\"\nmax_rejected = 1e308").unwrap_err();
        assert!(err.to_string().contains(" 1e308 is not a share"), "{err}");
    }

    #[test]
    fn target_password_never_appears_in_errors() {
        let err = parse("source = \"a.csv\"\ntable = \"t\"\ntarget = \"mysql://u:FAKEpw@h/db\"")
            .unwrap_err();
        assert!(!err.to_string().contains("FAKEpw"), "{err}");
        let ok = parse("source = \"a.csv\"\ntable = \"t\"\ntarget = \"postgres://u:FAKEpw@h/db\"");
        assert!(!format!("{ok:?}").contains("FAKEpw"));
    }

    #[test]
    fn target_and_target_key_conflict() {
        let err = parse(
            "source = \"a.csv\"\ntable = \"t\"\ntarget = \"sqlite://x.db\"\ntarget_key = \"K\"",
        );
        assert!(err.unwrap_err().to_string().contains("target_key"));
    }

    #[test]
    fn format_is_required_without_a_known_extension() {
        let err = parse("source = \"data.txt\"\ntable = \"t\"").unwrap_err();
        // No `format` line: the table's own line.
        assert!(
            err.to_string().starts_with("p.toml:1: pipeline.format:"),
            "{err}"
        );
        assert!(parse("source = \"data.txt\"\nformat = \"csv\"\ntable = \"t\"").is_ok());
    }

    #[test]
    fn table_name_must_be_plain() {
        assert!(parse("source = \"a.csv\"\ntable = \"a b\"").is_err());
        assert!(parse("source = \"a.csv\"\ntable = \"a.b.c\"").is_err());
        assert!(parse("source = \"a.csv\"\ntable = \"Public.birds_2\"").is_ok());
    }

    #[test]
    fn from_table_reports_the_table_line_without_a_file() {
        let table: toml::Table = toml::from_str("source = 1\ntable = \"t\"").unwrap();
        let err = PipelineConfig::from_table(table, None, 7).unwrap_err();
        assert!(err.to_string().starts_with("built-in pipeline:7:"), "{err}");
    }

    /// A config read from `dir/p.toml`, so a relative source is read from `dir`.
    fn parse_in(dir: &Path, body: &str) -> Result<PipelineConfig, ConfigError> {
        let text = format!("[pipeline]\ntable = \"t\"\n{body}");
        PipelineConfig::from_toml_str(&text, "p.toml", dir)
    }

    fn quoted(path: &Path) -> String {
        toml::Value::String(path.display().to_string()).to_string()
    }

    #[test]
    fn rejects_that_is_the_sqlite_target_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("z.db");
        let source = quoted(&dir.path().join("src.csv"));
        // Absent or present, through another spelling of the same path.
        for exists in [false, true] {
            if exists {
                std::fs::write(&db, b"SQLite format 3\0").unwrap();
            }
            let other = dir.path().join("sub").join("..").join(".").join("z.db");
            let body = format!(
                "source = {source}\ntarget = {}\nrejects = {}",
                quoted(&PathBuf::from(format!("sqlite://{}", db.display()))),
                quoted(&other),
            );
            let err = parse_in(dir.path(), &body).unwrap_err().to_string();
            assert!(err.starts_with("p.toml:5: pipeline.rejects:"), "{err}");
            assert!(
                err.contains("SQLite target") && err.contains("z.db"),
                "{err}"
            );
        }
        assert_eq!(std::fs::read(&db).unwrap(), b"SQLite format 3\0");
        let wal = format!(
            "source = {source}\ntarget = {}\nrejects = {}",
            quoted(&PathBuf::from(format!("sqlite://{}", db.display()))),
            quoted(&dir.path().join("z.db-wal")),
        );
        assert!(parse_in(dir.path(), &wal).is_err());
    }

    #[test]
    fn rejects_that_is_the_source_is_refused_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("src.csv"), "a\n1\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        // The source is relative to the config's directory, the rejects path absolute.
        let body = format!(
            "source = \"src.csv\"\nrejects = {}",
            quoted(&link.join("src.csv"))
        );
        let err = parse_in(dir.path(), &body).unwrap_err().to_string();
        assert!(
            err.contains("pipeline.rejects:") && err.contains("source file"),
            "{err}"
        );
        let fine = format!(
            "source = \"src.csv\"\nrejects = {}",
            quoted(&link.join("src.rejects.csv"))
        );
        assert!(parse_in(dir.path(), &fine).is_ok());
        // A URL or built-in source is no file to collide with.
        assert!(parse_in(
            dir.path(),
            "source = \"http://h/src.csv\"\nrejects = \"src.csv\""
        )
        .is_ok());
    }

    #[test]
    fn pipeline_file_rejects_other_tables() {
        let err = PipelineConfig::from_toml_str(
            "[pipeline]\nsource = \"a.csv\"\ntable = \"t\"\n[serve]\nlimit = 1",
            "p.toml",
            Path::new("."),
        );
        assert!(err.unwrap_err().to_string().contains("serve"));
    }
}
