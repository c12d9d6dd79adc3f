//! The config file: which sources, in which order, and the settings of every command.
//!
//! Where it is read from, first match wins:
//! 1. `--config FILE`;
//! 2. the `CREDCHAIN_CONFIG` environment variable;
//! 3. `./credchain.toml`.
//!
//! Without a config file, or with one that has no `[[sources]]`, the chain is the process
//! environment, then `./.env` (or the `--env-file`), which is the development setup. An
//! `--env-file` given on the command line must exist. Unknown fields and bad values are errors
//! that name the file, the line and the field, and never the value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use credchain_core::{Environment, SourceError, SourceSettings};
use serde::Deserialize;
use toml::Spanned;

use crate::chain::{Chain, Link};
use crate::sources;

/// The config file read when neither `--config` nor `CREDCHAIN_CONFIG` names one.
pub const DEFAULT_CONFIG_FILE: &str = "credchain.toml";
/// The variable that names a config file.
pub const CONFIG_ENV_VAR: &str = "CREDCHAIN_CONFIG";
/// The `.env` file of the default chain.
pub const DEFAULT_ENV_FILE: &str = ".env";
/// How `[[sources]]` durations are written, for error hints.
const DURATION_HINT: &str = "durations look like 30s, 5m, 1h";
/// The keys every project has, all optional unless the config says otherwise.
pub const DEFAULT_KEYS: [&str; 3] = [
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_API_AUTH_STRING",
];

/// Whether a key must resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Need {
    /// Commands that use the key fail with exit 3 when no source holds it.
    Required,
    /// A missing key is reported but is not an error by itself.
    Optional,
}

/// A key the project uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// The logical name, such as `PREFECT_API_KEY`.
    pub name: String,
    /// Whether it must resolve.
    pub need: Need,
}

/// Why the configuration could not be loaded. Messages never quote a value from the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a field is unknown or has a bad value.
    #[error("{}:{line}: {message}", path.display())]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong, with any quoted value removed.
        message: String,
    },
    /// The `--env-file` given on the command line does not exist.
    #[error(
        "env file {} given with --env-file {}",
        path.display(),
        if path.exists() { "is not a file" } else { "does not exist" }
    )]
    MissingEnvFile {
        /// The file.
        path: PathBuf,
    },
    /// Two `[[sources]]` tables have the same name, so provenance could not tell them apart.
    #[error("{}:{line}: a source named `{name}` is already listed; give each source its own name", path.display())]
    DuplicateSource {
        /// The file.
        path: PathBuf,
        /// Line of the second table.
        line: usize,
        /// The name.
        name: String,
    },
    /// A setting parsed but its value cannot work.
    #[error("{}: {setting}: {reason}", path.display())]
    InvalidSetting {
        /// The file.
        path: PathBuf,
        /// The setting, as `[table] field`.
        setting: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A `[[sources]]` table could not be turned into a source.
    #[error("{}:{line}: source `{name}`: {}", path.display(), error)]
    BuildSource {
        /// The file.
        path: PathBuf,
        /// Line of the `[[sources]]` table.
        line: usize,
        /// The source's name.
        name: String,
        /// What is wrong.
        error: Box<SourceError>,
    },
}

/// Client settings for talking to Prefect (`[prefect]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrefectSettings {
    /// Retries of a failed request (408, 429, 502, 503, 504, connection errors).
    pub max_retries: u32,
    /// Time to establish a connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time for a whole request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long to keep re-resolving a rejected key that the store still returns unchanged.
    #[serde(with = "humantime_serde")]
    pub rejection_backoff_total: Duration,
}

impl Default for PrefectSettings {
    fn default() -> Self {
        PrefectSettings {
            max_retries: 5,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            rejection_backoff_total: Duration::from_secs(30),
        }
    }
}

/// A tag concurrency limit (`[[concurrency.tags]]`).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TagLimit {
    /// The tag.
    pub tag: String,
    /// How many task runs with the tag may run at once.
    pub limit: u32,
}

/// A global concurrency limit (`[[concurrency.global]]`).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalLimit {
    /// The limit's name.
    pub name: String,
    /// How many slots it has.
    pub limit: u32,
    /// Slots released per second; above zero the limit is a rate limit.
    #[serde(default)]
    pub slot_decay_per_second: f64,
}

/// Concurrency limits the project declares (`[concurrency]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConcurrencyConfig {
    /// Tag limits.
    pub tags: Vec<TagLimit>,
    /// Global limits.
    pub global: Vec<GlobalLimit>,
}

/// How `credchain serve` runs the deployment (`[serve]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// A cron schedule for the deployment.
    pub cron: Option<String>,
    /// An interval schedule for the deployment.
    #[serde(with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// The schedule's time zone.
    pub timezone: Option<String>,
    /// The deployment's concurrency limit.
    pub concurrency_limit: Option<u32>,
    /// How often to poll for due runs.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How many runs execute at once in this process.
    pub limit: usize,
    /// How long in-flight runs may finish after SIGINT or SIGTERM.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            cron: None,
            interval: None,
            timezone: None,
            concurrency_limit: None,
            poll_interval: Duration::from_secs(10),
            limit: 5,
            grace_period: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    keys: BTreeMap<String, Need>,
    #[serde(default)]
    sources: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    prefect: PrefectSettings,
    #[serde(default)]
    concurrency: ConcurrencyConfig,
    #[serde(default)]
    pipeline: Option<Spanned<toml::Table>>,
    #[serde(default)]
    serve: ServeConfig,
}

/// A section kept as TOML for the module that owns its schema, with where it stands.
#[derive(Debug, Clone)]
pub struct Section {
    /// The table.
    pub table: toml::Table,
    /// The file it came from (none for built-in defaults).
    pub path: Option<PathBuf>,
    /// The line of its header.
    pub line: usize,
}

/// The loaded configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file read, or `None` for the default development chain.
    pub path: Option<PathBuf>,
    /// The keys the project uses, defaults first.
    pub keys: Vec<KeySpec>,
    /// The chain of sources.
    pub chain: Chain,
    /// Prefect client settings.
    pub prefect: PrefectSettings,
    /// Declared concurrency limits.
    pub concurrency: ConcurrencyConfig,
    /// The `[pipeline]` table, parsed by the ETL module.
    pub pipeline: Option<Section>,
    /// Settings of `credchain serve`.
    pub serve: ServeConfig,
}

/// What the command line says about where configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct ConfigRequest {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--env-file FILE`.
    pub env_file: Option<PathBuf>,
}

impl Config {
    /// Finds and loads the configuration.
    pub fn load(request: &ConfigRequest, env: Arc<dyn Environment>) -> Result<Config, ConfigError> {
        if let Some(path) = request.env_file.as_deref().filter(|p| !p.is_file()) {
            return Err(ConfigError::MissingEnvFile {
                path: path.to_path_buf(),
            });
        }
        match find_config(request, env.as_ref()) {
            Some(path) => Self::load_file(&path, request.env_file.as_deref(), env),
            None => Ok(Self::development(request.env_file.as_deref(), env)),
        }
    }

    /// The chain without a config file: the environment, then the `.env` file.
    pub fn development(env_file: Option<&Path>, env: Arc<dyn Environment>) -> Config {
        Config {
            path: None,
            keys: merge_keys(BTreeMap::new()),
            chain: Chain::new(default_links(env_file, env)),
            prefect: PrefectSettings::default(),
            concurrency: ConcurrencyConfig::default(),
            pipeline: None,
            serve: ServeConfig::default(),
        }
    }

    /// Loads one config file.
    pub fn load_file(
        path: &Path,
        env_file: Option<&Path>,
        env: Arc<dyn Environment>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
            path: path.to_path_buf(),
            line: e.span().map_or(1, |s| line_of(&text, s.start)),
            message: scrub(e.message()),
        })?;
        let base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let mut links = Vec::with_capacity(raw.sources.len());
        for (index, spanned) in raw.sources.into_iter().enumerate() {
            let line = line_of(&text, spanned.span().start);
            let link = build_link(
                index,
                spanned.into_inner(),
                &base_dir,
                env_file,
                env.clone(),
            )
            .map_err(|(name, error)| ConfigError::BuildSource {
                path: path.to_path_buf(),
                line,
                name,
                error: Box::new(error),
            })?;
            let name = &link.settings.name;
            if links.iter().any(|l: &Link| l.settings.name == *name) {
                return Err(ConfigError::DuplicateSource {
                    path: path.to_path_buf(),
                    line,
                    name: name.clone(),
                });
            }
            links.push(link);
        }
        for (setting, value) in [
            ("[prefect] connect_timeout", raw.prefect.connect_timeout),
            ("[prefect] request_timeout", raw.prefect.request_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::InvalidSetting {
                    path: path.to_path_buf(),
                    setting,
                    reason: "must be longer than 0 s (for example \"10s\")",
                });
            }
        }
        if links.is_empty() {
            links = default_links(env_file, env);
        }
        let pipeline = raw.pipeline.map(|spanned| Section {
            line: line_of(&text, spanned.span().start),
            table: spanned.into_inner(),
            path: Some(path.to_path_buf()),
        });
        Ok(Config {
            path: Some(path.to_path_buf()),
            keys: merge_keys(raw.keys),
            chain: Chain::new(links),
            prefect: raw.prefect,
            concurrency: raw.concurrency,
            pipeline,
            serve: raw.serve,
        })
    }

    /// Whether `key` was declared required.
    pub fn is_required(&self, key: &str) -> bool {
        self.keys
            .iter()
            .any(|k| k.name == key && k.need == Need::Required)
    }
}

/// The development chain: the environment, then the `.env` file (`--env-file` or `./.env`).
fn default_links(env_file: Option<&Path>, env: Arc<dyn Environment>) -> Vec<Link> {
    let env_file = env_file.unwrap_or(Path::new(DEFAULT_ENV_FILE));
    sources::default_chain(env_file, env)
        .into_iter()
        .map(|(settings, source)| Link { source, settings })
        .collect()
}

fn find_config(request: &ConfigRequest, env: &dyn Environment) -> Option<PathBuf> {
    if let Some(path) = &request.config {
        return Some(path.clone());
    }
    if let Some(path) = env.var(CONFIG_ENV_VAR).filter(|p| !p.trim().is_empty()) {
        return Some(PathBuf::from(path));
    }
    let default = PathBuf::from(DEFAULT_CONFIG_FILE);
    default.is_file().then_some(default)
}

fn merge_keys(declared: BTreeMap<String, Need>) -> Vec<KeySpec> {
    let mut keys: Vec<KeySpec> = DEFAULT_KEYS
        .iter()
        .map(|name| KeySpec {
            name: name.to_string(),
            need: declared.get(*name).copied().unwrap_or(Need::Optional),
        })
        .collect();
    for (name, need) in declared {
        if !DEFAULT_KEYS.contains(&name.as_str()) {
            keys.push(KeySpec { name, need });
        }
    }
    keys
}

/// The fields every `[[sources]]` table may have, whatever its type.
#[derive(Debug, Deserialize)]
struct Common {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    #[serde(default)]
    optional: bool,
    #[serde(default, with = "humantime_serde")]
    refresh_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    max_stale: Option<Duration>,
    #[serde(default)]
    keys: BTreeMap<String, String>,
}

fn build_link(
    index: usize,
    mut table: toml::Table,
    base_dir: &Path,
    env_file: Option<&Path>,
    env: Arc<dyn Environment>,
) -> Result<Link, (String, SourceError)> {
    let label = ["name", "type"]
        .iter()
        .find_map(|field| table.get(*field).and_then(toml::Value::as_str))
        .map_or_else(|| format!("#{}", index + 1), str::to_string);
    let mut common = toml::Table::new();
    for field in credchain_core::COMMON_SOURCE_FIELDS {
        if let Some(value) = table.remove(field) {
            common.insert(field.to_string(), value);
        }
    }
    let hint = common_hint(&common);
    let common: Common = common.try_into().map_err(|e: toml::de::Error| {
        let error = SourceError::invalid(scrub(e.message()));
        let error = match &hint {
            Some(hint) => error.with_hint(*hint),
            None => error,
        };
        (label.clone(), error)
    })?;
    let name = common.name.clone().unwrap_or_else(|| common.kind.clone());
    if common.kind == "dotenv" {
        if let Some(file) = env_file {
            table.insert(
                "path".into(),
                toml::Value::String(file.display().to_string()),
            );
        }
    }
    let mut settings = SourceSettings::new(name.clone());
    settings.optional = common.optional;
    settings.keys = common.keys;
    settings.base_dir = base_dir.to_path_buf();
    if let Some(interval) = common.refresh_interval {
        settings.refresh_interval = interval;
    }
    if let Some(max_stale) = common.max_stale {
        settings.max_stale = max_stale;
    }
    let source = sources::build(&common.kind, settings.clone(), table, env)
        .map_err(|error| (name.clone(), error))?;
    Ok(Link { source, settings })
}

/// What to say about common fields that did not parse: `type` is missing, or a duration is not
/// written like one.
fn common_hint(common: &toml::Table) -> Option<&'static str> {
    if !common.contains_key("type") {
        return Some("every source needs `type = \"...\"`");
    }
    let bad_duration = ["refresh_interval", "max_stale"].iter().any(|field| {
        common.get(*field).is_some_and(|value| {
            value
                .as_str()
                .is_none_or(|text| humantime::parse_duration(text).is_err())
        })
    });
    bad_duration.then_some(DURATION_HINT)
}

/// 1-based line number of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Removes quoted values from a serde message (`invalid type: string "s.abc", expected ...`), so
/// a misplaced secret in a config file is never echoed.
pub fn scrub(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find("string \"") {
        let open = start + "string \"".len();
        out.push_str(&rest[..open]);
        match rest[open..].find('"') {
            Some(close) => {
                out.push_str("…\"");
                rest = &rest[open + close + 1..];
            }
            None => {
                out.push_str("…\"");
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_quoted_values() {
        let m = scrub("invalid type: string \"s.FAKEtoken\", expected a boolean");
        assert_eq!(m, "invalid type: string \"…\", expected a boolean");
    }

    #[test]
    fn line_of_counts_from_one() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
    }

    #[test]
    fn default_keys_are_optional_and_config_adds_more() {
        let keys = merge_keys(BTreeMap::from([
            ("DATABASE_URL".to_string(), Need::Required),
            ("PREFECT_API_KEY".to_string(), Need::Required),
        ]));
        assert_eq!(keys.len(), 4);
        assert_eq!(keys[1].need, Need::Required);
        assert_eq!(keys[3].name, "DATABASE_URL");
    }

    #[test]
    fn two_sources_with_one_name_and_a_zero_timeout_are_refused() {
        let text = "[[sources]]\ntype = \"env\"\n[[sources]]\ntype = \"env\"\n";
        let err = load_text(text, None).unwrap_err().to_string();
        assert!(
            err.contains(":3: a source named `env` is already listed"),
            "{err}"
        );
        let err = load_text("[prefect]\nconnect_timeout = \"0s\"\n", None).unwrap_err();
        assert!(
            err.to_string()
                .contains("[prefect] connect_timeout: must be longer than 0 s"),
            "{err}"
        );
    }

    fn load_text(text: &str, env_file: Option<&Path>) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credchain.toml");
        std::fs::write(&path, text).unwrap();
        let env = Arc::new(credchain_core::MapEnv::new([(
            "PREFECT_API_URL",
            "http://x",
        )]));
        Config::load_file(&path, env_file, env)
    }

    fn build_error(text: &str) -> String {
        let error = load_text(text, None).unwrap_err();
        let hint = match &error {
            ConfigError::BuildSource { error, .. } => error.hint().unwrap_or("").to_string(),
            _ => String::new(),
        };
        format!("{error} | {hint}")
    }

    #[test]
    fn config_without_sources_uses_the_development_chain() {
        let config = load_text("[prefect]\nmax_retries = 1\n", None).unwrap();
        let names: Vec<_> = config
            .chain
            .links()
            .iter()
            .map(|l| l.settings.name.clone())
            .collect();
        assert_eq!(names, ["env", "dotenv"]);
    }

    #[test]
    fn explicit_env_file_must_exist() {
        let request = ConfigRequest {
            config: None,
            env_file: Some(PathBuf::from("/nonexistent/credchain-test.env")),
        };
        let env = Arc::new(credchain_core::MapEnv::new([("X", "y")]));
        let error = Config::load(&request, env).unwrap_err();
        assert!(error
            .to_string()
            .contains("/nonexistent/credchain-test.env"));
    }

    #[test]
    fn bad_common_field_names_the_source_by_type_or_name() {
        let text = "[[sources]]\ntype = \"env\"\n[[sources]]\ntype = \"dotenv\"\noptional = 3\n";
        let message = build_error(text);
        assert!(message.contains("source `dotenv`"), "{message}");
        assert!(!message.contains("every source needs"), "{message}");
        let named = "[[sources]]\ntype = \"env\"\nname = \"shell\"\noptional = 3\n";
        assert!(build_error(named).contains("source `shell`"));
    }

    #[test]
    fn missing_type_and_bad_duration_get_their_own_hints() {
        let message = build_error("[[sources]]\noptional = true\n");
        assert!(message.contains("source `#1`"), "{message}");
        assert!(message.contains("every source needs `type"), "{message}");
        let message = build_error("[[sources]]\ntype = \"env\"\nmax_stale = \"soon\"\n");
        assert!(message.contains("30s, 5m, 1h"), "{message}");
    }
}
