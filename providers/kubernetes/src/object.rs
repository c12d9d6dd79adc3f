//! A Secret object as the API returns it, and the decoding of one of its data keys.
//!
//! The body is parsed with the values still in base64, so that only the key asked for is
//! decoded (exactly once) and a bad value can be reported by key, without its bytes.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use zeroize::Zeroize;

/// The parts of a `v1/Secret` the source reads.
#[derive(Deserialize)]
pub struct SecretObject {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    data: Data,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    resource_version: Option<String>,
}

/// The `data` map, base64 text per key; wiped when dropped.
#[derive(Default, Deserialize)]
struct Data(Option<BTreeMap<String, String>>);

impl Drop for Data {
    fn drop(&mut self) {
        for value in self.0.iter_mut().flat_map(|m| m.values_mut()) {
            value.zeroize();
        }
    }
}

/// Why a data key could not be decoded. Never holds the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeFailure {
    /// The text is not base64.
    NotBase64,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

impl SecretObject {
    /// Parses a response body, then wipes it. The error is serde's, which quotes no input.
    pub fn parse(mut body: String) -> Result<Self, serde_json::Error> {
        let parsed = serde_json::from_str(&body);
        body.zeroize();
        parsed
    }

    /// The object's `metadata.resourceVersion`.
    pub fn resource_version(&self) -> Option<&str> {
        self.metadata.resource_version.as_deref()
    }

    /// How many data keys the Secret has.
    pub fn key_count(&self) -> usize {
        self.data.0.as_ref().map_or(0, BTreeMap::len)
    }

    /// The decoded value of `data[key]`; `Ok(None)` when the Secret has no such key.
    pub fn decode(&self, key: &str) -> Result<Option<String>, DecodeFailure> {
        let Some(encoded) = self.data.0.as_ref().and_then(|m| m.get(key)) else {
            return Ok(None);
        };
        let engine = base64::engine::general_purpose::STANDARD;
        let mut bytes = engine
            .decode(encoded.as_bytes())
            .map_err(|_| DecodeFailure::NotBase64)?;
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Some(text)),
            Err(err) => {
                bytes = err.into_bytes();
                bytes.zeroize();
                Err(DecodeFailure::NotUtf8)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(data: &str) -> SecretObject {
        let body = format!(
            r#"{{"kind":"Secret","apiVersion":"v1","metadata":{{"name":"p","resourceVersion":"42"}},
               "type":"Opaque","data":{data}}}"#
        );
        SecretObject::parse(body).unwrap()
    }

    #[test]
    fn decodes_once() {
        // "cG51X0ZBS0VfS0VZXzAwMQo=" is base64 of "pnu_FAKE_KEY_001\n"; decoding it again would
        // fail, so a double decode shows up here.
        let o = object(r#"{"PREFECT_API_KEY":"cG51X0ZBS0VfS0VZXzAwMQo="}"#);
        assert_eq!(
            o.decode("PREFECT_API_KEY").unwrap().unwrap(),
            "pnu_FAKE_KEY_001\n"
        );
        assert_eq!(o.resource_version(), Some("42"));
        assert_eq!(o.key_count(), 1);
    }

    #[test]
    fn missing_key_and_missing_data_are_none() {
        assert!(object(r#"{"A":"YQ=="}"#).decode("B").unwrap().is_none());
        assert!(object("null").decode("B").unwrap().is_none());
    }

    #[test]
    fn bad_base64_and_bad_utf8_are_told_apart() {
        let o = object(r#"{"A":"not base64!","B":"/w=="}"#);
        assert_eq!(o.decode("A"), Err(DecodeFailure::NotBase64));
        assert_eq!(o.decode("B"), Err(DecodeFailure::NotUtf8));
    }
}
