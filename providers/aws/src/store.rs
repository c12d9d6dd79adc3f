//! The connection to Secrets Manager: the region and credential chains with bounded timeouts,
//! the SDK client built from them once, and reading one version of a secret.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::ecs::EcsCredentialsProvider;
use aws_config::identity::IdentityCache;
use aws_config::imds;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::{ProfileFileCredentialsProvider, ProfileFileRegionProvider};
use aws_config::provider_config::ProviderConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::web_identity_token::WebIdentityTokenCredentialsProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
use aws_sdk_secretsmanager::Client;
use aws_types::service_config::ServiceConfigKey;
use credchain_core::{redact_url, ErrorKind, Secret, SourceError};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::classify::{self, Call};
use crate::config::{AwsConfig, EnvCredentials, EnvKeys, Setting, Version};

/// How long connecting to, and then each read from, the instance metadata endpoint may take.
/// Off EC2 nothing answers there, so this bounds how long "no credentials" takes to decide.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(1);
/// How many times an instance metadata request is tried.
pub const METADATA_ATTEMPTS: u32 = 2;
/// How long one instance metadata request may take, all attempts included.
const METADATA_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the credential chain may take to produce credentials before the call fails.
pub const CREDENTIALS_LOAD_TIMEOUT: Duration = Duration::from_secs(8);
/// How long "not configured" is remembered, so that resolving several keys in a row probes
/// the instance metadata endpoint once rather than once per key.
pub const NOT_CONFIGURED_MEMORY: Duration = Duration::from_secs(60);

/// One version of a secret as read. Holds the text only as a [`Secret`].
pub struct StoredVersion {
    /// `SecretString`, or `SecretBinary` read as UTF-8 text.
    pub text: Secret,
    /// The version id, for provenance.
    pub version_id: Option<String>,
}

/// The SDK client and what was decided while building it.
pub struct Connection {
    client: Client,
    /// The region used, with where it came from.
    pub region: Setting,
    /// The endpoint, safe to print.
    pub endpoint: String,
    /// The credential chain (the same one the client uses, without its cache).
    pub credentials: SharedCredentialsProvider,
    /// The name of the chain link that last produced credentials.
    answered: Arc<Mutex<Option<&'static str>>>,
}

impl Connection {
    /// The name of the credential provider that last answered, if one did.
    pub fn provider(&self) -> Option<&'static str> {
        *self.answered.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What a failed call says about where it went.
    fn call<'a>(&'a self, secret_id: &'a str) -> Call<'a> {
        Call {
            secret_id,
            region: &self.region.value,
            endpoint: &self.endpoint,
            provider: self.provider(),
        }
    }
}

/// Builds the connection on first use and reads secrets through it.
pub struct Store {
    config: AwsConfig,
    connection: OnceCell<Connection>,
    not_configured: Mutex<Option<Remembered>>,
}

/// A "not configured" answer and until when it stands.
struct Remembered {
    until: Instant,
    message: String,
    hint: Option<String>,
}

impl Store {
    /// A store that connects lazily with these settings.
    pub fn new(config: AwsConfig) -> Self {
        Store {
            config,
            connection: OnceCell::new(),
            not_configured: Mutex::new(None),
        }
    }

    /// The settings.
    pub fn config(&self) -> &AwsConfig {
        &self.config
    }

    /// The connection, built on first use. Fails as not configured when no region is found.
    pub async fn connection(&self) -> Result<&Connection, SourceError> {
        self.connection
            .get_or_try_init(|| connect(&self.config))
            .await
    }

    /// Reads `secret_id` at `version`. `Ok(None)` when the secret or the version does not exist.
    /// A "not configured" answer is given again without asking for [`NOT_CONFIGURED_MEMORY`].
    pub async fn read(
        &self,
        secret_id: &str,
        version: &Version,
    ) -> Result<Option<StoredVersion>, SourceError> {
        if let Some(error) = self.remembered() {
            return Err(error);
        }
        let outcome = self.read_now(secret_id, version).await;
        if let Err(error) = &outcome {
            self.remember(error);
        }
        outcome
    }

    /// The remembered "not configured" answer, while it stands.
    fn remembered(&self) -> Option<SourceError> {
        let memory = self
            .not_configured
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let remembered = memory.as_ref().filter(|r| Instant::now() < r.until)?;
        let error = SourceError::not_configured(remembered.message.clone());
        Some(match &remembered.hint {
            Some(hint) => error.with_hint(hint.clone()),
            None => error,
        })
    }

    fn remember(&self, error: &SourceError) {
        if error.kind() != ErrorKind::NotConfigured {
            return;
        }
        *self
            .not_configured
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Remembered {
            until: Instant::now() + NOT_CONFIGURED_MEMORY,
            message: error.message().to_string(),
            hint: error.hint().map(str::to_string),
        });
    }

    async fn read_now(
        &self,
        secret_id: &str,
        version: &Version,
    ) -> Result<Option<StoredVersion>, SourceError> {
        let connection = self.connection().await?;
        let request = connection.client.get_secret_value().secret_id(secret_id);
        let request = match version {
            Version::Stage(stage) => request.version_stage(stage),
            Version::Id(id) => request.version_id(id),
        };
        match request.send().await {
            Ok(output) => stored_version(secret_id, output).map(Some),
            Err(error) => classify::call_error(error, &connection.call(secret_id)),
        }
    }
}

/// Takes the text out of an answer. `SecretBinary` arrives already decoded from base64 by the
/// SDK, so it is only checked to be UTF-8 here, never decoded again.
fn stored_version(
    secret_id: &str,
    mut output: GetSecretValueOutput,
) -> Result<StoredVersion, SourceError> {
    let text = match (output.secret_string.take(), output.secret_binary.take()) {
        (Some(text), _) => Secret::new(text),
        (None, Some(blob)) => String::from_utf8(blob.into_inner())
            .map(Secret::new)
            .map_err(|error| {
                // The bytes are part of the secret: wipe them rather than keep them in the error.
                zeroize::Zeroize::zeroize(&mut error.into_bytes());
                SourceError::invalid(format!(
                    "secret `{secret_id}` holds binary data that is not UTF-8 text"
                ))
                .with_hint("store the value as SecretString, or as UTF-8 bytes in SecretBinary")
            })?,
        (None, None) => Secret::new(String::new()),
    };
    Ok(StoredVersion {
        text,
        version_id: output.version_id.take(),
    })
}

/// Decides the region, builds the credential chain and loads the SDK configuration with the
/// timeouts above. Only the region and endpoint are read here; credentials are first asked for
/// when a call needs them.
async fn connect(config: &AwsConfig) -> Result<Connection, SourceError> {
    let metadata = metadata_client();
    let profile = config.profile.as_ref().map(|p| p.value.as_str());
    let Some(region) = resolve_region(config, profile, &metadata).await else {
        return Err(SourceError::not_configured("no AWS region is set")
            .with_hint("set `region` in the source, AWS_REGION, or `region` in the AWS profile"));
    };
    let answered = Arc::new(Mutex::new(None));
    let credentials = credential_chain(config, &region.value, metadata, &answered)?;
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.value.clone()))
        .credentials_provider(credentials.clone())
        .identity_cache(
            IdentityCache::lazy()
                .load_timeout(CREDENTIALS_LOAD_TIMEOUT)
                .build(),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(config.connect_timeout)
                .operation_attempt_timeout(config.timeout)
                .build(),
        );
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
    if let Some(endpoint) = &config.endpoint_url {
        loader = loader.endpoint_url(&endpoint.value);
    }
    let sdk_config = loader.load().await;
    let endpoint = endpoint_label(config, &sdk_config, &region.value);
    tracing::debug!(region = %region.value, %endpoint, "AWS Secrets Manager client ready");
    Ok(Connection {
        client: Client::new(&sdk_config),
        region,
        endpoint,
        credentials,
        answered,
    })
}

/// The endpoint calls go to, for messages: the configured one, else the one the SDK takes from
/// its own variables or the profile, else AWS's endpoint for the region.
fn endpoint_label(config: &AwsConfig, sdk_config: &SdkConfig, region: &str) -> String {
    if let Some(url) = &config.endpoint_url {
        return redact_url(&url.value);
    }
    let key = ServiceConfigKey::builder()
        .service_id("Secrets Manager")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build();
    let from_sdk = key
        .ok()
        .and_then(|key| sdk_config.service_config()?.load_config(key));
    match from_sdk {
        Some(url) => redact_url(&url),
        None => format!("https://secretsmanager.{region}.amazonaws.com"),
    }
}

/// An instance metadata client that gives up within a few seconds when nothing answers.
fn metadata_client() -> imds::Client {
    imds::Client::builder()
        .connect_timeout(METADATA_TIMEOUT)
        .read_timeout(METADATA_TIMEOUT)
        .operation_attempt_timeout(METADATA_TIMEOUT * 2)
        .operation_timeout(METADATA_OPERATION_TIMEOUT)
        .max_attempts(METADATA_ATTEMPTS)
        .build()
}

/// The configured region, else the profile's, else the instance's (the SDK's order; the
/// variables were already read into the configuration).
async fn resolve_region(
    config: &AwsConfig,
    profile: Option<&str>,
    metadata: &imds::Client,
) -> Option<Setting> {
    if let Some(region) = &config.region {
        return Some(region.clone());
    }
    let mut from_profile = ProfileFileRegionProvider::builder();
    if let Some(profile) = profile {
        from_profile = from_profile.profile_name(profile);
    }
    let chain = RegionProviderChain::first_try(from_profile.build()).or_else(
        imds::region::ImdsRegionProvider::builder()
            .imds_client(metadata.clone())
            .build(),
    );
    let region = chain.region().await?;
    Some(Setting {
        value: region.to_string(),
        from: "AWS profile or instance metadata",
    })
}

/// The SDK's default chain (environment, profile, web identity, ECS, instance metadata), each
/// link named so `doctor` can say which one answered. A profile named in the config file is
/// the only link, as on the AWS command line.
fn credential_chain(
    config: &AwsConfig,
    region: &str,
    metadata: imds::Client,
    answered: &Arc<Mutex<Option<&'static str>>>,
) -> Result<SharedCredentialsProvider, SourceError> {
    let conf = ProviderConfig::default().with_region(Some(Region::new(region.to_string())));
    let mut profile = ProfileFileCredentialsProvider::builder().configure(&conf);
    if let Some(name) = &config.profile {
        profile = profile.profile_name(&name.value);
    }
    let link = |name, provider| Named::new(name, provider, answered);
    let profile = link("Profile", SharedCredentialsProvider::new(profile.build()));
    if config.profile.as_ref().is_some_and(|p| p.from == "config") {
        return Ok(SharedCredentialsProvider::new(profile));
    }
    let mut chain = match &config.env_credentials {
        EnvCredentials::Unset => CredentialsProviderChain::first_try("Profile", profile),
        EnvCredentials::Keys(keys) => {
            CredentialsProviderChain::first_try("Environment", link("Environment", env_keys(keys)))
                .or_else("Profile", profile)
        }
        EnvCredentials::Incomplete { missing } => {
            return Err(SourceError::invalid(format!(
                "AWS credentials in the environment are incomplete: {missing} is not set"
            )))
        }
    };
    let web_identity = WebIdentityTokenCredentialsProvider::builder()
        .configure(&conf)
        .build();
    let ecs = EcsCredentialsProvider::builder().configure(&conf).build();
    let instance = imds::credentials::ImdsCredentialsProvider::builder()
        .configure(&conf)
        .imds_client(metadata)
        .build();
    chain = chain
        .or_else(
            "WebIdentityToken",
            link(
                "WebIdentityToken",
                SharedCredentialsProvider::new(web_identity),
            ),
        )
        .or_else(
            "EcsContainer",
            link("EcsContainer", SharedCredentialsProvider::new(ecs)),
        )
        .or_else(
            "Ec2InstanceMetadata",
            link(
                "Ec2InstanceMetadata",
                SharedCredentialsProvider::new(instance),
            ),
        );
    Ok(SharedCredentialsProvider::new(chain))
}

fn env_keys(keys: &EnvKeys) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new(
        keys.access_key_id.expose(),
        keys.secret_access_key.expose(),
        keys.session_token.as_ref().map(|t| t.expose().to_string()),
        None,
        "Environment",
    ))
}

/// A chain link that records its name when it produces credentials.
#[derive(Debug)]
struct Named {
    name: &'static str,
    inner: SharedCredentialsProvider,
    answered: Arc<Mutex<Option<&'static str>>>,
}

impl Named {
    fn new(
        name: &'static str,
        inner: SharedCredentialsProvider,
        answered: &Arc<Mutex<Option<&'static str>>>,
    ) -> Self {
        Named {
            name,
            inner,
            answered: Arc::clone(answered),
        }
    }
}

impl ProvideCredentials for Named {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let credentials = self.inner.provide_credentials().await?;
            *self.answered.lock().unwrap_or_else(|e| e.into_inner()) = Some(self.name);
            Ok(credentials)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_secretsmanager::primitives::Blob;

    fn output(text: Option<&str>, binary: Option<Vec<u8>>) -> GetSecretValueOutput {
        GetSecretValueOutput::builder()
            .set_secret_string(text.map(str::to_string))
            .set_secret_binary(binary.map(Blob::new))
            .version_id("v-1")
            .build()
    }

    #[tokio::test(start_paused = true)]
    async fn not_configured_is_remembered_for_a_while() {
        let settings = credchain_core::SourceSettings::new("aws");
        let options: toml::Table = toml::from_str("secret_id = 'x'").unwrap();
        let config =
            AwsConfig::from_options(&settings, options, &credchain_core::MapEnv::default());
        let store = Store::new(config.unwrap());
        store.remember(&SourceError::unavailable("not remembered"));
        assert!(store.remembered().is_none());
        store.remember(&SourceError::not_configured("no AWS region is set").with_hint("set one"));
        let again = store.remembered().expect("remembered");
        assert_eq!(
            (again.kind(), again.message(), again.hint()),
            (
                ErrorKind::NotConfigured,
                "no AWS region is set",
                Some("set one")
            )
        );
        tokio::time::advance(NOT_CONFIGURED_MEMORY).await;
        assert!(store.remembered().is_none(), "asked again after a while");
    }

    #[test]
    fn binary_is_read_as_text_once() {
        // The SDK has already decoded the base64 of the wire format: these bytes are the value,
        // and they happen to look like base64 themselves; they must not be decoded again.
        let stored = stored_version("s", output(None, Some(b"cG51X0ZBS0U=".to_vec()))).unwrap();
        assert_eq!(stored.text.expose(), "cG51X0ZBS0U=");
        assert_eq!(stored.version_id.as_deref(), Some("v-1"));
    }

    #[test]
    fn binary_that_is_not_utf8_is_invalid_and_unprinted() {
        let err = stored_version("s", output(None, Some(vec![b'p', 0xff, 0xfe])))
            .err()
            .unwrap();
        assert_eq!(err.kind(), credchain_core::ErrorKind::Invalid);
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        assert!(std::error::Error::source(&err).is_none());
    }

    #[test]
    fn string_wins_and_nothing_is_empty() {
        let stored = stored_version("s", output(Some("pnu_FAKE_1"), None)).unwrap();
        assert_eq!(stored.text.expose(), "pnu_FAKE_1");
        let empty = stored_version("s", output(None, None)).unwrap();
        assert!(empty.text.is_empty());
    }
}
