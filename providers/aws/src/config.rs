//! The AWS source's settings: its `[[sources]]` options, the standard `AWS_*` variables, and
//! which of the two wins (the config file does).

use std::fmt;
use std::time::Duration;

use credchain_core::{Environment, Secret, SourceError, SourceSettings};
use serde::Deserialize;

/// The version stage read unless `version_stage` or `version_id` says otherwise.
pub const DEFAULT_VERSION_STAGE: &str = "AWSCURRENT";
/// The stage a rotation puts the next value under before it becomes current.
pub const PENDING_STAGE: &str = "AWSPENDING";
/// How long connecting to Secrets Manager may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one attempt of a Secrets Manager call may take, connecting included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A setting with where it came from, for `credchain doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The value.
    pub value: String,
    /// Where it was found: `config`, or the variable's name.
    pub from: &'static str,
}

/// Which version of a secret to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// The version carrying this staging label (`AWSCURRENT` by default).
    Stage(String),
    /// This exact version id.
    Id(String),
}

impl Version {
    /// Whether this is the default `AWSCURRENT` stage, the only one a rotation window follows.
    pub fn is_current(&self) -> bool {
        matches!(self, Version::Stage(stage) if stage == DEFAULT_VERSION_STAGE)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Stage(stage) => write!(f, "stage {stage}"),
            Version::Id(id) => write!(f, "version id {id}"),
        }
    }
}

/// Static keys from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`).
/// `Debug` shows only which parts are present.
#[derive(Clone)]
pub struct EnvKeys {
    /// The access key id.
    pub access_key_id: Secret,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// The session token of temporary credentials.
    pub session_token: Option<Secret>,
}

impl fmt::Debug for EnvKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvKeys")
            .field("session_token", &self.session_token.is_some())
            .finish_non_exhaustive()
    }
}

/// What the key variables say about credentials.
#[derive(Debug, Clone)]
pub enum EnvCredentials {
    /// Neither key variable is set: the SDK's default chain looks further.
    Unset,
    /// Both are set.
    Keys(EnvKeys),
    /// Only one is set; the other is named here.
    Incomplete {
        /// The variable that is missing.
        missing: &'static str,
    },
}

/// The AWS source's resolved settings.
#[derive(Debug, Clone)]
pub struct AwsConfig {
    /// The region; `None` leaves it to the profile file and the instance metadata.
    pub region: Option<Setting>,
    /// The named profile; `None` means `default`.
    pub profile: Option<Setting>,
    /// An endpoint other than AWS's (a proxy, a VPC endpoint, a test server).
    pub endpoint_url: Option<Setting>,
    /// The secret whose JSON fields are named like the keys.
    pub secret_id: Option<String>,
    /// Which version to read.
    pub version: Version,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long one attempt of a call may take.
    pub timeout: Duration,
    /// Keys from the environment, which come first in the chain (as in the SDK's).
    pub env_credentials: EnvCredentials,
}

/// The options table as written, before the environment is consulted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptions {
    region: Option<String>,
    profile: Option<String>,
    endpoint_url: Option<String>,
    secret_id: Option<String>,
    version_stage: Option<String>,
    version_id: Option<String>,
    #[serde(default, with = "humantime_serde")]
    connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
}

impl AwsConfig {
    /// Reads the options table of a `type = "aws"` source, filling gaps from `env`.
    pub fn from_options(
        settings: &SourceSettings,
        mut options: toml::Table,
        env: &dyn Environment,
    ) -> Result<Self, SourceError> {
        let invalid =
            |why: String| SourceError::invalid(format!("source `{}`: {why}", settings.name));
        for common in credchain_core::COMMON_SOURCE_FIELDS {
            options.remove(common);
        }
        let raw: RawOptions = options
            .try_into()
            .map_err(|e: toml::de::Error| invalid(e.message().to_string()))?;
        if raw.secret_id.is_none() && settings.keys.is_empty() {
            return Err(
                invalid("neither `secret_id` nor a `keys` table is set".into())
                    .with_hint("name the secret holding a JSON object with `secret_id = \"...\"`"),
            );
        }
        let version = match (raw.version_stage, raw.version_id) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "`version_stage` and `version_id` cannot both be set".into(),
                ))
            }
            (None, Some(id)) => Version::Id(id),
            (stage, None) => Version::Stage(stage.unwrap_or_else(|| DEFAULT_VERSION_STAGE.into())),
        };
        Ok(AwsConfig {
            region: from_config(raw.region)
                .or_else(|| first_var(env, &["AWS_REGION", "AWS_DEFAULT_REGION"])),
            profile: from_config(raw.profile).or_else(|| first_var(env, &["AWS_PROFILE"])),
            endpoint_url: from_config(raw.endpoint_url).or_else(|| endpoint_from_env(env)),
            secret_id: raw.secret_id,
            version,
            connect_timeout: raw.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            timeout: raw.timeout.unwrap_or(DEFAULT_TIMEOUT),
            env_credentials: env_credentials(env),
        })
    }
}

fn from_config(value: Option<String>) -> Option<Setting> {
    value.filter(|v| !v.trim().is_empty()).map(|value| Setting {
        value,
        from: "config",
    })
}

/// The first of `names` that is set and not blank.
fn first_var(env: &dyn Environment, names: &[&'static str]) -> Option<Setting> {
    names.iter().find_map(|name| {
        env.var(name)
            .filter(|v| !v.trim().is_empty())
            .map(|value| Setting { value, from: name })
    })
}

/// The service-specific variable wins over the general one, and neither counts when
/// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is true (the SDK's rule).
fn endpoint_from_env(env: &dyn Environment) -> Option<Setting> {
    let ignore = env
        .var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if ignore {
        return None;
    }
    first_var(
        env,
        &["AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL"],
    )
}

fn env_credentials(env: &dyn Environment) -> EnvCredentials {
    let get = |name: &str| {
        env.var(name)
            .filter(|v| !v.trim().is_empty())
            .map(Secret::new)
    };
    match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
        (None, None) => EnvCredentials::Unset,
        (Some(_), None) => EnvCredentials::Incomplete {
            missing: "AWS_SECRET_ACCESS_KEY",
        },
        (None, Some(_)) => EnvCredentials::Incomplete {
            missing: "AWS_ACCESS_KEY_ID",
        },
        (Some(access_key_id), Some(secret_access_key)) => EnvCredentials::Keys(EnvKeys {
            access_key_id,
            secret_access_key,
            session_token: get("AWS_SESSION_TOKEN"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credchain_core::MapEnv;

    fn settings() -> SourceSettings {
        SourceSettings::new("aws")
    }

    fn parse(options: &str, env: &MapEnv) -> Result<AwsConfig, SourceError> {
        AwsConfig::from_options(&settings(), options.parse().unwrap(), env)
    }

    #[test]
    fn config_file_wins_over_the_variables() {
        let env = MapEnv::new([
            ("AWS_REGION", "eu-west-1"),
            ("AWS_PROFILE", "ops"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
        ]);
        let opts = "secret_id = \"etl\"\nregion = \"us-east-1\"\nprofile = \"etl\"\n\
                    endpoint_url = \"http://127.0.0.1:2\"";
        let config = parse(opts, &env).unwrap();
        assert_eq!(
            config.region.unwrap(),
            Setting {
                value: "us-east-1".into(),
                from: "config"
            }
        );
        assert_eq!(config.profile.unwrap().value, "etl");
        assert_eq!(config.endpoint_url.unwrap().value, "http://127.0.0.1:2");
    }

    #[test]
    fn variables_fill_the_gaps_in_the_sdk_order() {
        let env = MapEnv::new([
            ("AWS_DEFAULT_REGION", "eu-west-2"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:3"),
        ]);
        let config = parse("secret_id = \"etl\"", &env).unwrap();
        assert_eq!(config.region.unwrap().from, "AWS_DEFAULT_REGION");
        let endpoint = config.endpoint_url.unwrap();
        assert_eq!(
            (endpoint.value.as_str(), endpoint.from),
            ("http://127.0.0.1:3", "AWS_ENDPOINT_URL_SECRETS_MANAGER")
        );
        assert_eq!(config.version, Version::Stage("AWSCURRENT".into()));
        assert!(config.profile.is_none());
    }

    #[test]
    fn ignore_configured_endpoint_urls_drops_the_variables() {
        let env = MapEnv::new([
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ]);
        assert!(parse("secret_id = \"etl\"", &env)
            .unwrap()
            .endpoint_url
            .is_none());
    }

    #[test]
    fn version_id_and_stage_exclude_each_other() {
        let env = MapEnv::default();
        let err = parse(
            "secret_id = \"e\"\nversion_stage = \"A\"\nversion_id = \"B\"",
            &env,
        )
        .unwrap_err();
        assert!(err.to_string().contains("cannot both be set"), "{err}");
        let config = parse("secret_id = \"e\"\nversion_id = \"v1\"", &env).unwrap();
        assert_eq!(config.version, Version::Id("v1".into()));
        assert!(!config.version.is_current());
    }

    #[test]
    fn a_source_without_secret_id_or_keys_is_invalid() {
        let err = parse("region = \"us-east-1\"", &MapEnv::default()).unwrap_err();
        assert_eq!(err.kind(), credchain_core::ErrorKind::Invalid);
        assert!(err.to_string().contains("secret_id"), "{err}");
    }

    #[test]
    fn unknown_options_are_refused() {
        let err = parse(
            "secret_id = \"e\"\nsecret_access_key = \"x\"",
            &MapEnv::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("secret_access_key"), "{err}");
    }

    #[test]
    fn env_keys_never_show_in_debug() {
        let env = MapEnv::new([
            ("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKE0001"),
            ("AWS_SECRET_ACCESS_KEY", "FAKEsecretFAKEsecret"),
            ("AWS_SESSION_TOKEN", "FAKEsessionTOKEN"),
        ]);
        let config = parse("secret_id = \"e\"", &env).unwrap();
        let shown = format!("{config:?} {config:#?}");
        for secret in ["AKIAFAKE", "FAKEsecret", "FAKEsession"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(matches!(config.env_credentials, EnvCredentials::Keys(_)));
    }

    #[test]
    fn half_set_keys_name_the_missing_variable() {
        let env = MapEnv::new([("AWS_ACCESS_KEY_ID", "AKIAFAKE")]);
        let config = parse("secret_id = \"e\"", &env).unwrap();
        assert!(matches!(
            config.env_credentials,
            EnvCredentials::Incomplete {
                missing: "AWS_SECRET_ACCESS_KEY"
            }
        ));
    }
}
