//! The AWS Secrets Manager source: where each key lives, reading it at the configured version,
//! and offering the `AWSPENDING` version while a rotation is in progress.

use std::fmt;

use async_trait::async_trait;
use credchain_core::value::{self, Address};
use credchain_core::{
    redact_url, CredentialSource, Diagnosis, Environment, Lifetime, Provenance, Resolved, Secret,
    SourceError, SourceSettings,
};

use crate::classify;
use crate::config::{AwsConfig, Version, PENDING_STAGE};
use crate::store::{Store, CREDENTIALS_LOAD_TIMEOUT};

/// Reads keys from AWS Secrets Manager: fields of the JSON object in `secret_id`, or a whole
/// secret (or one of its fields) per key through the `keys` table.
pub struct AwsSource {
    settings: SourceSettings,
    store: Store,
}

/// Names, the region and the endpoint (with any password in it masked); never a key.
impl fmt::Debug for AwsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = self.store.config();
        let value = |s: &Option<crate::Setting>| s.as_ref().map(|s| s.value.clone());
        f.debug_struct("AwsSource")
            .field("name", &self.settings.name)
            .field("secret_id", &config.secret_id)
            .field("version", &config.version)
            .field("region", &value(&config.region))
            .field("profile", &value(&config.profile))
            .field(
                "endpoint_url",
                &value(&config.endpoint_url).map(|u| redact_url(&u)),
            )
            .finish_non_exhaustive()
    }
}

impl AwsSource {
    /// Builds the source from its `[[sources]]` options, reading the standard `AWS_*`
    /// variables from `env` now. Nothing is sent to AWS until the first fetch.
    pub fn from_options(
        settings: SourceSettings,
        options: toml::Table,
        env: &dyn Environment,
    ) -> Result<Self, SourceError> {
        let config = AwsConfig::from_options(&settings, options, env)?;
        Ok(Self::new(settings, config))
    }

    /// A source with settings already resolved.
    pub fn new(settings: SourceSettings, config: AwsConfig) -> Self {
        AwsSource {
            settings,
            store: Store::new(config),
        }
    }

    /// Where `key` lives: its `keys` entry, else the field named like it in `secret_id`.
    /// `None` when neither applies.
    fn address(&self, key: &str) -> Result<Option<Address>, SourceError> {
        if self.settings.keys.contains_key(key) {
            return self.settings.address(key, str::to_string).map(Some);
        }
        Ok(self
            .store
            .config()
            .secret_id
            .as_ref()
            .map(|secret_id| Address {
                location: secret_id.clone(),
                field: Some(key.to_string()),
            }))
    }

    /// Reads `key` from the secret at `address`, at `version`.
    async fn read(
        &self,
        key: &str,
        address: &Address,
        version: &Version,
    ) -> Result<Option<Resolved>, SourceError> {
        let Some(stored) = self.store.read(&address.location, version).await? else {
            tracing::debug!(key, secret_id = %address.location, %version, "no such secret or version");
            return Ok(None);
        };
        let origin = format!("secret `{}`", address.location);
        let raw = stored.text.expose().to_string();
        let Some(value) = value::select(key, &origin, raw, address.field.as_deref())? else {
            return Ok(None);
        };
        let version_id = match version {
            Version::Stage(stage) if stage != crate::DEFAULT_VERSION_STAGE => {
                stored.version_id.map(|id| format!("{id} ({stage})"))
            }
            _ => stored.version_id,
        };
        tracing::debug!(key, location = %address, version = ?version_id, "read from AWS Secrets Manager");
        Ok(Some(Resolved {
            value,
            provenance: Provenance {
                source: self.settings.name.clone(),
                location: address.to_string(),
                version: version_id,
            },
            lifetime: Lifetime::Remote { expires_in: None },
        }))
    }

    /// The `AWSPENDING` value of `key` when it differs from `rejected`. A failure to read it
    /// is logged and treated as "no pending version": the current value was already read.
    async fn pending(&self, key: &str, address: &Address, rejected: &Secret) -> Option<Resolved> {
        let stage = Version::Stage(PENDING_STAGE.to_string());
        match self.read(key, address, &stage).await {
            Ok(Some(pending)) if pending.value != *rejected => Some(pending),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(key, secret_id = %address.location, error = %error, "could not read the AWSPENDING version");
                None
            }
        }
    }
}

#[async_trait]
impl CredentialSource for AwsSource {
    fn name(&self) -> &str {
        &self.settings.name
    }

    async fn fetch(&self, key: &str) -> Result<Option<Resolved>, SourceError> {
        let Some(address) = self.address(key)? else {
            tracing::debug!(key, "no `secret_id` and no `keys` entry for this key");
            return Ok(None);
        };
        self.read(key, &address, &self.store.config().version).await
    }

    /// When the server rejected the current value and the store still returns it, a rotation
    /// may be in progress whose new value the server already accepts: offer `AWSPENDING`.
    // TODO: the next scheduled refresh reads AWSCURRENT again, so while a rotation stays
    // unfinished the cache falls back to the old value once per refresh_interval and costs one
    // 401 to come back here. Remembering the version in use and never stepping back to an older
    // one would remove that (needs the version to travel with `Resolved` into `fetch`).
    async fn fetch_after_rejection(
        &self,
        key: &str,
        rejected: &Secret,
    ) -> Result<Option<Resolved>, SourceError> {
        let current = self.fetch(key).await?;
        let unchanged = current.as_ref().is_some_and(|c| c.value == *rejected);
        if !unchanged || !self.store.config().version.is_current() {
            return Ok(current);
        }
        let Some(address) = self.address(key)? else {
            return Ok(current);
        };
        match self.pending(key, &address, rejected).await {
            Some(pending) => {
                tracing::info!(key, location = %address, "the current value was rejected; offering AWSPENDING");
                Ok(Some(pending))
            }
            None => {
                tracing::debug!(key, location = %address, "the current value was rejected and no other version is pending");
                Ok(current)
            }
        }
    }

    async fn diagnose(&self) -> Result<Diagnosis, SourceError> {
        let connection = self.store.connection().await?;
        let config = self.store.config();
        let mut diagnosis = Diagnosis::default();
        let region = &connection.region;
        diagnosis
            .details
            .push(format!("region {} (from {})", region.value, region.from));
        diagnosis
            .details
            .push(format!("endpoint {}", connection.endpoint));
        if let Some(profile) = &config.profile {
            diagnosis
                .details
                .push(format!("profile {} (from {})", profile.value, profile.from));
        }
        if let Some(secret_id) = &config.secret_id {
            diagnosis
                .details
                .push(format!("secret `{secret_id}` at {}", config.version));
        }
        let answer = tokio::time::timeout(
            CREDENTIALS_LOAD_TIMEOUT,
            aws_credential_types::provider::ProvideCredentials::provide_credentials(
                &connection.credentials,
            ),
        )
        .await
        .map_err(|_| SourceError::unavailable("the AWS credential chain did not answer in time"))?;
        let credentials = answer.map_err(|e| classify::credentials_error(&e))?;
        let provider = connection.provider().unwrap_or("an unnamed provider");
        diagnosis
            .details
            .push(format!("credentials from {provider}"));
        if let Some(account) = credentials.account_id() {
            diagnosis
                .details
                .push(format!("account {}", account.as_str()));
        }
        Ok(diagnosis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credchain_core::MapEnv;

    #[test]
    fn debug_shows_names_and_masks_the_endpoint_password() {
        let env = MapEnv::new([
            ("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKE0001"),
            ("AWS_SECRET_ACCESS_KEY", "FAKEsecretFAKEsecret"),
            (
                "AWS_ENDPOINT_URL",
                "https://user:FAKEproxyPASS@proxy.example",
            ),
        ]);
        let options: toml::Table = toml::from_str("secret_id = 'prod/etl'").unwrap();
        let source = AwsSource::from_options(SourceSettings::new("aws"), options, &env).unwrap();
        let shown = format!("{source:?}");
        assert!(
            shown.contains("prod/etl") && shown.contains("proxy.example"),
            "{shown}"
        );
        for secret in ["AKIAFAKE", "FAKEsecret", "FAKEproxyPASS"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
