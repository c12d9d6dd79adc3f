//! [`KubernetesSource`]: the [`CredentialSource`] that reads keys from the data of a Kubernetes
//! Secret through the API server.

use credchain_core::value::select;
use credchain_core::{
    async_trait, CredentialSource, Diagnosis, Environment, Lifetime, Provenance, Resolved,
    SourceError, SourceSettings,
};
use http::header::{HeaderValue, AUTHORIZATION};
use k8s_openapi::api::core::v1::Secret as SecretResource;
use kube::core::params::GetParams;
use kube::Resource as _;
use tokio::sync::OnceCell;
use zeroize::Zeroize;

use crate::config::KubernetesConfig;
use crate::connect::{connect, read_token, Connection};
use crate::errors::{is_not_found, read_failure, timed_out, Request};
use crate::names::{check_data_key, check_secret_name};
use crate::object::{DecodeFailure, SecretObject};

/// Reads credentials from a Kubernetes Secret: key `PREFECT_API_KEY` is the data key of the same
/// name in the Secret `secret`, unless `keys` maps it to `other-secret/data-key` (or just
/// `data-key`), with `#field` to pick a field of a JSON value. See `docs/kubernetes.md`.
#[derive(Debug)]
pub struct KubernetesSource {
    settings: SourceSettings,
    config: KubernetesConfig,
    /// Set up on first use; a failed setup is tried again on the next fetch.
    connection: OnceCell<Connection>,
}

/// Where one key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Location {
    secret: String,
    data_key: String,
    field: Option<String>,
}

impl KubernetesSource {
    /// Builds the source of a `[[sources]]` entry with `type = "kubernetes"`: `options` is its
    /// table (the shared settings may be left in it), and `env` supplies the in-cluster and
    /// kubeconfig variables. Fails only on a bad configuration; a cluster that is not there is
    /// reported by `fetch` as "not configured".
    pub fn from_options(
        settings: SourceSettings,
        options: toml::Table,
        env: &dyn Environment,
    ) -> Result<Self, SourceError> {
        let config = KubernetesConfig::from_options(&settings, options, env)?;
        Self::new(settings, config)
    }

    /// Builds the source from resolved settings; checks every `keys` override.
    pub fn new(settings: SourceSettings, config: KubernetesConfig) -> Result<Self, SourceError> {
        let source = KubernetesSource {
            settings,
            config,
            connection: OnceCell::new(),
        };
        for key in source.settings.keys.keys() {
            source.locate(key)?;
        }
        Ok(source)
    }

    /// Where `key` lives; `None` when there is no `secret` and no override for it.
    fn locate(&self, key: &str) -> Result<Option<Location>, SourceError> {
        let secret = self.config.secret.clone();
        if secret.is_none() && !self.settings.keys.contains_key(key) {
            return Ok(None);
        }
        let address = self.settings.address(key, str::to_string)?;
        let (secret, data_key) = match address.location.split_once('/') {
            Some((secret, data_key)) => (secret.to_string(), data_key.to_string()),
            None => match secret {
                Some(secret) => (secret, address.location.clone()),
                None => {
                    return Err(
                        self.bad_location(key, "has no `secret/` and the source no `secret`")
                    )
                }
            },
        };
        check_secret_name(&secret).map_err(|why| self.bad_location(key, &why))?;
        check_data_key(&data_key).map_err(|why| self.bad_location(key, &why))?;
        Ok(Some(Location {
            secret,
            data_key,
            field: address.field,
        }))
    }

    fn bad_location(&self, key: &str, why: &str) -> SourceError {
        SourceError::invalid(format!("the location of key {key} {why}"))
            .with_hint("write locations as `secret-name/data-key`, optionally with `#field`")
    }

    async fn connection(&self) -> Result<&Connection, SourceError> {
        self.connection
            .get_or_try_init(|| connect(&self.config))
            .await
    }

    fn namespace<'a>(&'a self, connection: &'a Connection) -> &'a str {
        self.config
            .namespace
            .as_deref()
            .unwrap_or(&connection.namespace)
    }

    /// Reads the Secret `name`; `Ok(None)` when the API says 404.
    async fn read_secret(
        &self,
        conn: &Connection,
        name: &str,
    ) -> Result<Option<SecretObject>, SourceError> {
        let namespace = self.namespace(conn);
        let req = Request {
            namespace,
            secret: name,
            server: &conn.server,
            in_cluster: conn.token_file.is_some(),
        };
        let mut request = kube::core::Request::new(SecretResource::url_path(&(), Some(namespace)))
            .get(name, &GetParams::default())
            .map_err(|err| read_failure(req, kube::Error::BuildRequest(err)))?;
        if let Some(file) = &conn.token_file {
            let header = bearer(&read_token(file).await?);
            request.headers_mut().insert(AUTHORIZATION, header);
        }
        let timeout = self.config.request_timeout;
        let body = match tokio::time::timeout(timeout, conn.client.request_text(request)).await {
            Err(_) => return Err(timed_out(req, timeout)),
            Ok(Err(err)) if is_not_found(&err) => return Ok(None),
            Ok(Err(err)) => return Err(read_failure(req, err)),
            Ok(Ok(body)) => body,
        };
        let object = SecretObject::parse(body).map_err(|err| {
            SourceError::unavailable(format!(
                "the answer for Secret {namespace}/{name} is not a Secret object"
            ))
            .with_cause(err)
        })?;
        Ok(Some(object))
    }

    /// Turns the Secret's data key into the key's value.
    fn resolve(
        &self,
        key: &str,
        namespace: &str,
        at: &Location,
        object: &SecretObject,
    ) -> Result<Option<Resolved>, SourceError> {
        let Location {
            secret,
            data_key,
            field,
        } = at;
        let location = format!("{namespace}/{secret}#{data_key}");
        let raw = match object.decode(data_key) {
            Ok(Some(raw)) => raw,
            Ok(None) => {
                tracing::debug!(key, secret = %location, "the Secret has no such data key");
                return Ok(None);
            }
            Err(failure) => return Err(self.undecodable(&location, failure)),
        };
        let Some(value) = select(key, &format!("Secret {location}"), raw, field.as_deref())? else {
            return Ok(None);
        };
        let location = match field {
            Some(field) => format!("{location}#{field}"),
            None => location,
        };
        let version = object.resource_version().map(str::to_string);
        tracing::debug!(key, secret = %location, version, "read the key from a Kubernetes Secret");
        let provenance = Provenance {
            source: self.settings.name.clone(),
            location,
            version,
        };
        Ok(Some(Resolved {
            value,
            provenance,
            lifetime: Lifetime::Remote { expires_in: None },
        }))
    }

    fn undecodable(&self, location: &str, failure: DecodeFailure) -> SourceError {
        let what = match failure {
            DecodeFailure::NotBase64 => "is not valid base64",
            DecodeFailure::NotUtf8 => "is not UTF-8 text once decoded",
        };
        SourceError::invalid(format!(
            "the value of Secret {location} {what}; the value is not shown"
        ))
        .with_hint("the API returns `data` in base64; write the Secret with `stringData` or `kubectl create secret`")
    }
}

/// `Authorization: Bearer <token>`, marked sensitive so that it never prints.
fn bearer(token: &credchain_core::Secret) -> HeaderValue {
    let mut text = format!("Bearer {}", token.expose());
    let header = HeaderValue::from_str(&text);
    text.zeroize();
    // A token with bytes a header cannot hold is sent as an empty one; the server answers 401.
    let mut header = header.unwrap_or_else(|_| HeaderValue::from_static(""));
    header.set_sensitive(true);
    header
}

#[async_trait]
impl CredentialSource for KubernetesSource {
    fn name(&self) -> &str {
        &self.settings.name
    }

    async fn fetch(&self, key: &str) -> Result<Option<Resolved>, SourceError> {
        let Some(at) = self.locate(key)? else {
            tracing::debug!(key, "no Secret is configured for this key");
            return Ok(None);
        };
        let conn = self.connection().await?;
        let namespace = self.namespace(conn);
        match self.read_secret(conn, &at.secret).await? {
            Some(object) => self.resolve(key, namespace, &at, &object),
            None => {
                tracing::debug!(key, namespace, secret = %at.secret, "no such Secret (404)");
                Ok(None)
            }
        }
    }

    async fn diagnose(&self) -> Result<Diagnosis, SourceError> {
        let conn = self.connection().await?;
        let namespace = self.namespace(conn);
        let mut diagnosis = Diagnosis::default();
        diagnosis
            .details
            .push(format!("API server {} ({})", conn.server, conn.origin));
        diagnosis.details.push(format!("namespace {namespace}"));
        let Some(secret) = &self.config.secret else {
            return Ok(diagnosis);
        };
        match self.read_secret(conn, secret).await? {
            Some(object) => diagnosis.details.push(format!(
                "Secret {namespace}/{secret}: {} data keys, resourceVersion {}",
                object.key_count(),
                object.resource_version().unwrap_or("unknown")
            )),
            None => diagnosis
                .warnings
                .push(format!("Secret {namespace}/{secret} does not exist")),
        }
        Ok(diagnosis)
    }
}

#[cfg(test)]
mod tests {
    use credchain_core::{ErrorKind, MapEnv};

    use super::*;

    fn source(options: &str, keys: &[(&str, &str)]) -> Result<KubernetesSource, SourceError> {
        let mut settings = SourceSettings::new("k8s");
        for (k, v) in keys {
            settings.keys.insert(k.to_string(), v.to_string());
        }
        let options = toml::from_str(options).unwrap();
        KubernetesSource::from_options(settings, options, &MapEnv::default())
    }

    fn location(secret: &str, data_key: &str, field: Option<&str>) -> Option<Location> {
        Some(Location {
            secret: secret.into(),
            data_key: data_key.into(),
            field: field.map(Into::into),
        })
    }

    #[test]
    fn keys_are_data_keys_of_the_secret() {
        let s = source("secret = \"prefect\"", &[]).unwrap();
        assert_eq!(
            s.locate("PREFECT_API_KEY").unwrap(),
            location("prefect", "PREFECT_API_KEY", None)
        );
    }

    #[test]
    fn overrides_name_another_secret_a_data_key_and_a_field() {
        let keys = [
            ("DATABASE_URL", "db/url"),
            ("A", "api-key"),
            ("B", "cfg/config.json#token"),
        ];
        let s = source("secret = \"prefect\"", &keys).unwrap();
        assert_eq!(
            s.locate("DATABASE_URL").unwrap(),
            location("db", "url", None)
        );
        assert_eq!(s.locate("A").unwrap(), location("prefect", "api-key", None));
        assert_eq!(
            s.locate("B").unwrap(),
            location("cfg", "config.json", Some("token"))
        );
    }

    #[test]
    fn without_secret_only_overridden_keys_are_located() {
        let s = source("", &[("A", "db/url")]).unwrap();
        assert_eq!(s.locate("A").unwrap(), location("db", "url", None));
        assert_eq!(s.locate("B").unwrap(), None);
    }

    #[test]
    fn bad_overrides_are_refused_when_built() {
        assert_eq!(
            source("", &[("A", "url")]).unwrap_err().kind(),
            ErrorKind::Invalid
        );
        assert_eq!(
            source("", &[("A", "db/a/b")]).unwrap_err().kind(),
            ErrorKind::Invalid
        );
    }

    #[tokio::test]
    async fn fetch_without_a_cluster_is_not_configured() {
        let s = source("secret = \"prefect\"", &[]).unwrap();
        let err = s.fetch("PREFECT_API_KEY").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotConfigured);
    }

    #[test]
    fn bearer_header_is_sensitive() {
        let header = bearer(&credchain_core::Secret::new("FAKE_TOKEN"));
        assert!(header.is_sensitive());
        assert!(!format!("{header:?}").contains("FAKE_TOKEN"));
    }
}
