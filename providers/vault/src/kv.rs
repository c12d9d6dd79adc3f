//! The KV secrets engine: where a path's mount is and which KV version it runs (from the config
//! or from Vault's mount discovery, never from the mount's name), the API path of a read, and
//! what a read's answer means.

use std::time::Duration;

use credchain_core::{Secret, SourceError};
use serde::Deserialize;

use crate::config::KvVersion;

/// A secret's path split the way the KV engine needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvPath {
    /// The path as the user wrote it (`secret/prefect/etl`).
    pub logical: String,
    /// The engine version of its mount.
    pub kv: KvVersion,
    /// The mount without slashes (`secret`); empty for KV v1 when not known (not needed there).
    pub mount: String,
    /// The path inside the mount (`prefect/etl`).
    pub rel: String,
}

/// What one read of a KV secret found.
#[derive(Debug)]
pub enum KvRead {
    /// The secret exists; `fields` is its data as JSON object text.
    Found {
        /// The secret's fields as a JSON object; prints as `[REDACTED]`.
        fields: Secret,
        /// The KV v2 version read.
        version: Option<u64>,
        /// The KV v1 lease duration, when Vault gives one.
        lease: Option<Duration>,
    },
    /// No secret at this path.
    Missing,
    /// The version asked for (the latest unless pinned) is deleted or destroyed.
    Deleted {
        /// The deleted version.
        version: u64,
        /// Destroyed (gone for good) rather than soft-deleted.
        destroyed: bool,
    },
}

impl KvPath {
    /// Splits `logical` by a mount and version the config names. `Ok(None)` means Vault has to be
    /// asked (KV v2 without a configured mount, or no configured version).
    pub fn configured(
        logical: &str,
        mount: Option<&str>,
        kv: Option<KvVersion>,
    ) -> Result<Option<Self>, SourceError> {
        match (kv, mount) {
            (Some(KvVersion::V1), None) => Ok(Some(KvPath {
                logical: logical.to_string(),
                kv: KvVersion::V1,
                mount: String::new(),
                rel: logical.to_string(),
            })),
            (Some(kv), Some(mount)) => Self::split(logical, mount, kv).map(Some),
            (None, _) | (Some(KvVersion::V2), None) => Ok(None),
        }
    }

    /// Splits `logical` at `mount` (given without slashes). A KV v2 path that already holds the
    /// API's `data/` segment is refused with the path to write instead.
    pub fn split(logical: &str, mount: &str, kv: KvVersion) -> Result<Self, SourceError> {
        let rel = logical
            .strip_prefix(mount)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|rest| !rest.is_empty())
            .ok_or_else(|| {
                SourceError::invalid(format!(
                    "the Vault path `{logical}` is not a secret inside the mount `{mount}/`"
                ))
            })?;
        if kv == KvVersion::V2 {
            if let Some(inner) = rel.strip_prefix("data/") {
                return Err(SourceError::invalid(format!(
                    "the Vault path `{logical}` holds the KV v2 API segment `data/`; \
                     write `{mount}/{inner}` instead"
                ))
                .with_hint("credchain adds `data/` itself, like `vault kv get` does"));
            }
        }
        Ok(KvPath {
            logical: logical.to_string(),
            kv,
            mount: mount.to_string(),
            rel: rel.to_string(),
        })
    }

    /// Splits `logical` by the answer of `GET sys/internal/ui/mounts/<logical>`.
    pub fn discovered(logical: &str, body: &Secret) -> Result<Self, SourceError> {
        #[derive(Deserialize)]
        struct Body {
            data: Mount,
        }
        #[derive(Deserialize)]
        struct Mount {
            path: String,
            #[serde(rename = "type")]
            kind: String,
            options: Option<Options>,
        }
        #[derive(Deserialize)]
        struct Options {
            version: Option<String>,
        }
        let mount = serde_json::from_str::<Body>(body.expose())
            .map_err(|e| {
                SourceError::invalid(format!(
                    "Vault's description of the mount of `{logical}` is unreadable"
                ))
                .with_cause(e)
            })?
            .data;
        let version = mount.options.and_then(|o| o.version);
        let kv = match (mount.kind.as_str(), version.as_deref()) {
            ("kv" | "generic", Some("2")) => KvVersion::V2,
            ("kv" | "generic", _) => KvVersion::V1,
            (other, _) => {
                return Err(SourceError::invalid(format!(
                    "the Vault path `{logical}` is on a `{other}` mount, not a KV secrets engine"
                )))
            }
        };
        Self::split(logical, mount.path.trim_matches('/'), kv)
    }

    /// The path of `GET sys/internal/ui/mounts/...` for `logical`.
    pub fn discovery_path(logical: &str) -> String {
        format!("sys/internal/ui/mounts/{logical}")
    }

    /// The API path that reads this secret, at `version` when pinned (KV v2 only).
    pub fn read_path(&self, version: Option<u64>) -> Result<String, SourceError> {
        match (self.kv, version) {
            (KvVersion::V1, None) => Ok(self.logical.clone()),
            (KvVersion::V1, Some(_)) => Err(SourceError::invalid(format!(
                "`version` needs KV v2, but `{}` is on a KV v1 mount",
                self.logical
            ))),
            (KvVersion::V2, None) => Ok(format!("{}/data/{}", self.mount, self.rel)),
            (KvVersion::V2, Some(v)) => Ok(format!("{}/data/{}?version={v}", self.mount, self.rel)),
        }
    }

    /// What an answer with `status` (not 403) and `body` to [`KvPath::read_path`] means.
    /// `Err(None)` is an error status the caller describes.
    pub fn parse_read(&self, status: u16, body: &Secret) -> Result<KvRead, Option<SourceError>> {
        match (status, self.kv) {
            (200, KvVersion::V1) => parse_v1(&self.logical, body).map_err(Some),
            (200 | 404, KvVersion::V2) => parse_v2(&self.logical, body).map_err(Some),
            (404, KvVersion::V1) => Ok(KvRead::Missing),
            _ => Err(None),
        }
    }
}

fn unreadable(logical: &str, cause: serde_json::Error) -> SourceError {
    SourceError::invalid(format!("Vault's answer for `{logical}` is not a KV secret"))
        .with_cause(cause)
}

fn parse_v1(logical: &str, body: &Secret) -> Result<KvRead, SourceError> {
    #[derive(Deserialize)]
    struct Body {
        data: Option<serde_json::Map<String, serde_json::Value>>,
        #[serde(default)]
        lease_duration: u64,
    }
    let body: Body = serde_json::from_str(body.expose()).map_err(|e| unreadable(logical, e))?;
    Ok(match body.data {
        Some(fields) => KvRead::Found {
            fields: Secret::new(serde_json::Value::Object(fields).to_string()),
            version: None,
            lease: (body.lease_duration > 0).then(|| Duration::from_secs(body.lease_duration)),
        },
        None => KvRead::Missing,
    })
}

fn parse_v2(logical: &str, body: &Secret) -> Result<KvRead, SourceError> {
    #[derive(Deserialize)]
    struct Body {
        data: Option<Data>,
    }
    #[derive(Deserialize)]
    struct Data {
        data: Option<serde_json::Map<String, serde_json::Value>>,
        metadata: Option<Metadata>,
    }
    #[derive(Deserialize)]
    struct Metadata {
        version: u64,
        #[serde(default)]
        deletion_time: String,
        #[serde(default)]
        destroyed: bool,
    }
    let body: Body = serde_json::from_str(body.expose()).map_err(|e| unreadable(logical, e))?;
    let Some(Data { data, metadata }) = body.data else {
        return Ok(KvRead::Missing);
    };
    let version = metadata.as_ref().map(|m| m.version);
    Ok(match (data, metadata) {
        (Some(fields), _) => KvRead::Found {
            fields: Secret::new(serde_json::Value::Object(fields).to_string()),
            version,
            lease: None,
        },
        (None, Some(m)) if m.destroyed || !m.deletion_time.is_empty() => KvRead::Deleted {
            version: m.version,
            destroyed: m.destroyed,
        },
        (None, _) => KvRead::Missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_v2_mount_splits_the_path() {
        let p = KvPath::configured("kv/prefect/etl", Some("kv"), Some(KvVersion::V2))
            .unwrap()
            .unwrap();
        assert_eq!(p.read_path(None).unwrap(), "kv/data/prefect/etl");
        assert_eq!(
            p.read_path(Some(2)).unwrap(),
            "kv/data/prefect/etl?version=2"
        );
    }

    #[test]
    fn an_api_data_segment_names_the_path_to_write() {
        let err = KvPath::split("kv/data/prefect", "kv", KvVersion::V2).unwrap_err();
        assert!(err.to_string().contains("`kv/prefect`"), "{err}");
        assert_eq!(err.kind(), credchain_core::ErrorKind::Invalid);
        // On KV v1, `data` is an ordinary folder.
        assert!(KvPath::split("kv/data/prefect", "kv", KvVersion::V1).is_ok());
    }

    #[test]
    fn v1_needs_no_mount_and_no_version_pin() {
        let p = KvPath::configured("kv1/prefect", None, Some(KvVersion::V1))
            .unwrap()
            .unwrap();
        assert_eq!(p.read_path(None).unwrap(), "kv1/prefect");
        assert!(p.read_path(Some(1)).is_err());
        assert!(KvPath::configured("x/y", None, Some(KvVersion::V2))
            .unwrap()
            .is_none());
        assert!(KvPath::configured("x/y", Some("x"), None)
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_path_outside_the_mount_is_invalid() {
        assert!(KvPath::split("other/prefect", "kv", KvVersion::V2).is_err());
        assert!(KvPath::split("kv", "kv", KvVersion::V2).is_err());
        assert!(KvPath::split("kvx/prefect", "kv", KvVersion::V2).is_err());
    }

    #[test]
    fn discovery_reads_the_version_from_the_options_not_the_name() {
        let body =
            Secret::new(r#"{"data":{"path":"secret/","type":"kv","options":{"version":"1"}}}"#);
        let p = KvPath::discovered("secret/etl", &body).unwrap();
        assert_eq!(p.kv, KvVersion::V1);
        let body =
            Secret::new(r#"{"data":{"path":"team/kv/","type":"kv","options":{"version":"2"}}}"#);
        let p = KvPath::discovered("team/kv/etl", &body).unwrap();
        assert_eq!(
            (p.kv, p.mount.as_str(), p.rel.as_str()),
            (KvVersion::V2, "team/kv", "etl")
        );
        let body =
            Secret::new(r#"{"data":{"path":"cubbyhole/","type":"cubbyhole","options":null}}"#);
        assert!(KvPath::discovered("cubbyhole/etl", &body).is_err());
    }

    #[test]
    fn a_deleted_latest_version_is_reported_as_deleted() {
        let p = KvPath::split("secret/etl", "secret", KvVersion::V2).unwrap();
        let body = Secret::new(
            r#"{"data":{"data":null,"metadata":{"deletion_time":"2026-01-01T00:00:00Z","destroyed":false,"version":2}}}"#,
        );
        assert!(matches!(
            p.parse_read(404, &body),
            Ok(KvRead::Deleted {
                version: 2,
                destroyed: false
            })
        ));
        let missing = Secret::new(r#"{"errors":[]}"#);
        assert!(matches!(p.parse_read(404, &missing), Ok(KvRead::Missing)));
    }

    #[test]
    fn a_found_secret_carries_its_version() {
        let p = KvPath::split("secret/etl", "secret", KvVersion::V2).unwrap();
        let body = Secret::new(
            r#"{"data":{"data":{"K":"pnu_FAKE_1"},"metadata":{"deletion_time":"","destroyed":false,"version":3}}}"#,
        );
        let Ok(KvRead::Found {
            fields, version, ..
        }) = p.parse_read(200, &body)
        else {
            panic!()
        };
        assert_eq!(version, Some(3));
        assert!(fields.expose().contains("pnu_FAKE_1"));
        assert!(p.parse_read(500, &body).unwrap_err().is_none());
    }
}
