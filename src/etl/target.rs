//! The load target once its URL and password are known: a SQLite file or a PostgreSQL server.

use std::fmt;
use std::path::PathBuf;

use credchain_core::{redact_url, Secret};

use super::config::{ConfigError, PipelineConfig, DEFAULT_TARGET};

pub(crate) const SQLITE_SCHEME: &str = "sqlite://";
const POSTGRES_SCHEMES: [&str; 2] = ["postgres://", "postgresql://"];

/// Which database a target URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// `sqlite://PATH`.
    Sqlite,
    /// `postgres://...` or `postgresql://...`.
    Postgres,
}

impl TargetKind {
    /// The kind of `url`, or why it is not a target. The reason never quotes the URL.
    pub fn of(url: &str) -> Result<TargetKind, String> {
        if let Some(path) = url.strip_prefix(SQLITE_SCHEME) {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, as in sqlite://etl.db".into());
            }
            if path.contains(['?', '#']) {
                return Err(
                    "sqlite://PATH takes a file path only, without ?options or #fragment \
                     (they would become part of the file name)"
                        .into(),
                );
            }
            return Ok(TargetKind::Sqlite);
        }
        if POSTGRES_SCHEMES.iter().any(|s| url.starts_with(s)) {
            return Ok(TargetKind::Postgres);
        }
        Err("the target must start with sqlite:// or postgres://".into())
    }
}

/// The target with every credential resolved.
#[derive(Clone)]
pub enum ResolvedTarget {
    /// A SQLite database file, relative to the working directory unless absolute.
    Sqlite {
        /// The file.
        path: PathBuf,
    },
    /// A PostgreSQL server.
    Postgres {
        /// The connection URL; it may carry a password.
        url: Secret,
        /// A password that replaces the URL's, from `password_key`.
        password: Option<Secret>,
    },
}

/// Why the target could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The URL is not a SQLite or PostgreSQL URL.
    #[error("target {origin}: {reason}")]
    ParseUrl {
        /// Where the URL came from: `pipeline.target` or the key's name.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// A key the pipeline names was not resolved.
    #[error("key {key} (pipeline.{field}) was found in no source")]
    MissingKey {
        /// The key.
        key: String,
        /// The field that names it.
        field: &'static str,
    },
    /// A password was given for a SQLite target.
    #[error("pipeline.password_key: a SQLite target takes no password")]
    PasswordForSqlite,
    /// The pipeline does not fit the resolved target: its rejects path is the target file.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl ResolvedTarget {
    /// Parses a target URL. `password` replaces the URL's password (PostgreSQL only).
    pub fn from_url(url: Secret, password: Option<Secret>) -> Result<Self, TargetError> {
        Self::parse(url, password, "pipeline.target".into())
    }

    fn parse(url: Secret, password: Option<Secret>, origin: String) -> Result<Self, TargetError> {
        let kind = TargetKind::of(url.expose())
            .map_err(|reason| TargetError::ParseUrl { origin, reason })?;
        match kind {
            TargetKind::Sqlite if password.is_some() => Err(TargetError::PasswordForSqlite),
            TargetKind::Sqlite => Ok(ResolvedTarget::Sqlite {
                path: PathBuf::from(&url.expose()[SQLITE_SCHEME.len()..]),
            }),
            TargetKind::Postgres => Ok(ResolvedTarget::Postgres { url, password }),
        }
    }

    /// Resolves the pipeline's target: `target`, else the value of `target_key`, else
    /// [`DEFAULT_TARGET`]; the password is the value of `password_key` when set. `lookup`
    /// returns the resolved value of a key (see [`PipelineConfig::required_keys`]). A SQLite
    /// target is checked against the rejects path (see
    /// [`PipelineConfig::check_rejects_path`]).
    pub fn resolve(
        config: &PipelineConfig,
        mut lookup: impl FnMut(&str) -> Option<Secret>,
    ) -> Result<Self, TargetError> {
        let mut fetch = |key: &str, field| {
            lookup(key).ok_or_else(|| TargetError::MissingKey {
                key: key.to_string(),
                field,
            })
        };
        let password = match &config.password_key {
            Some(key) => Some(fetch(key, "password_key")?),
            None => None,
        };
        let target = match (&config.target, &config.target_key) {
            (_, Some(key)) => {
                Self::parse(fetch(key, "target_key")?, password, format!("key {key}"))
            }
            (Some(url), None) => Self::from_url(url.secret().clone(), password),
            (None, None) => Self::from_url(Secret::new(DEFAULT_TARGET), password),
        }?;
        if let ResolvedTarget::Sqlite { path } = &target {
            config.check_rejects_path(Some(path))?;
        }
        Ok(target)
    }

    /// The target as it may be printed: the URL with any password masked.
    pub fn display_url(&self) -> String {
        match self {
            ResolvedTarget::Sqlite { path } => format!("{SQLITE_SCHEME}{}", path.display()),
            ResolvedTarget::Postgres { url, .. } => redact_url(url.expose()),
        }
    }
}

impl fmt::Debug for ResolvedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_url())
    }
}

impl fmt::Display for ResolvedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(extra: &str) -> PipelineConfig {
        let text = format!("[pipeline]\nsource = \"a.csv\"\ntable = \"t\"\n{extra}");
        PipelineConfig::from_toml_str(&text, "p.toml", Path::new(".")).unwrap()
    }

    #[test]
    fn a_sqlite_target_with_a_query_is_refused() {
        assert!(TargetKind::of("sqlite://t.db?mode=rwc").is_err());
        assert!(TargetKind::of("sqlite://t.db#x").is_err());
        assert_eq!(TargetKind::of("sqlite://t.db"), Ok(TargetKind::Sqlite));
    }

    #[test]
    fn default_target_is_sqlite_etl_db() {
        let t = ResolvedTarget::resolve(&config(""), |_| None).unwrap();
        assert!(matches!(t, ResolvedTarget::Sqlite { ref path } if path == Path::new("etl.db")));
        assert_eq!(t.to_string(), "sqlite://etl.db");
    }

    #[test]
    fn absolute_sqlite_path_keeps_its_slash() {
        let t = ResolvedTarget::from_url(Secret::new("sqlite:///tmp/x.db"), None).unwrap();
        assert_eq!(t.to_string(), "sqlite:///tmp/x.db");
    }

    #[test]
    fn target_key_and_password_key_are_looked_up() {
        let c = config("target_key = \"DATABASE_URL\"\npassword_key = \"DB_PW\"");
        let t = ResolvedTarget::resolve(&c, |k| match k {
            "DATABASE_URL" => Some(Secret::new("postgres://etl:FAKEpw@db:5432/etl")),
            "DB_PW" => Some(Secret::new("FAKEother")),
            _ => None,
        })
        .unwrap();
        let shown = format!("{t} {t:?}");
        assert!(
            !shown.contains("FAKEpw") && !shown.contains("FAKEother"),
            "{shown}"
        );
        assert!(matches!(
            t,
            ResolvedTarget::Postgres {
                password: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn missing_key_names_key_and_field() {
        let c = config("target_key = \"DATABASE_URL\"");
        let err = ResolvedTarget::resolve(&c, |_| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "key DATABASE_URL (pipeline.target_key) was found in no source"
        );
    }

    #[test]
    fn a_resolved_sqlite_target_that_is_the_rejects_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("z.db");
        let c = config(&format!(
            "target_key = \"DATABASE_URL\"\nrejects = {}",
            toml::Value::String(db.display().to_string())
        ));
        let url = format!("sqlite://{}", db.display());
        let err = ResolvedTarget::resolve(&c, |_| Some(Secret::new(url.clone()))).unwrap_err();
        assert!(matches!(err, TargetError::Config(_)), "{err}");
        assert!(err.to_string().starts_with("pipeline.rejects:"), "{err}");
    }

    #[test]
    fn bad_resolved_url_does_not_print_it() {
        let c = config("target_key = \"DATABASE_URL\"");
        let err = ResolvedTarget::resolve(&c, |_| Some(Secret::new("mysql://u:FAKEpw@h/d")));
        let text = err.unwrap_err().to_string();
        assert!(
            text.contains("DATABASE_URL") && !text.contains("FAKEpw"),
            "{text}"
        );
    }
}
