//! Rules every source applies to the values it reads: trimming, control characters, JSON
//! fields, and the `location#field` address syntax.

use crate::{Secret, SourceError};

/// Where a key lives inside a source, with an optional JSON field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// A path, a secret name or an id, depending on the source.
    pub location: String,
    /// A field of a JSON object stored there.
    pub field: Option<String>,
}

impl Address {
    /// Parses `location` or `location#field`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (location, field) = match spec.split_once('#') {
            Some((loc, field)) => (loc, Some(field)),
            None => (spec, None),
        };
        if location.trim().is_empty() {
            return Err("the location is empty".into());
        }
        if field.is_some_and(|f| f.trim().is_empty()) {
            return Err("the field after `#` is empty".into());
        }
        Ok(Address {
            location: location.to_string(),
            field: field.map(str::to_string),
        })
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}#{field}", self.location),
            None => f.write_str(&self.location),
        }
    }
}

/// Cleans a value read from a file or a store: removes trailing CR, LF, space and tab, treats an
/// empty result as absent, and refuses a control character inside (the error names `key` and
/// `origin`, never the value).
pub fn normalize(key: &str, origin: &str, raw: String) -> Result<Option<Secret>, SourceError> {
    let secret = Secret::new(raw);
    let value = secret.expose();
    let trimmed = value.trim_end_matches(['\r', '\n', ' ', '\t']);
    if trimmed.trim().is_empty() {
        tracing::debug!(key, origin, "value is empty; treated as absent");
        return Ok(None);
    }
    if trimmed.chars().any(char::is_control) {
        return Err(SourceError::invalid(format!(
            "the value of {key} in {origin} contains a control character (such as a line break); \
             the value is not shown"
        ))
        .with_hint("store the value on one line, without line breaks or tabs"));
    }
    if trimmed.len() == value.len() {
        Ok(Some(secret))
    } else {
        Ok(Some(Secret::new(trimmed)))
    }
}

/// Picks `field` out of a value that must be a JSON object. `Ok(None)` when the object has no
/// such field or it is null. Strings are taken as they are; numbers and booleans as their JSON
/// text. The error names `origin` and the field, never the value.
pub fn json_field(origin: &str, raw: &Secret, field: &str) -> Result<Option<Secret>, SourceError> {
    let parsed: serde_json::Value = serde_json::from_str(raw.expose()).map_err(|_| {
        SourceError::invalid(format!(
            "{origin} is not a JSON object, so field `{field}` cannot be read from it"
        ))
        .with_hint("remove `#field` from the location, or store a JSON object")
    })?;
    let serde_json::Value::Object(map) = parsed else {
        return Err(SourceError::invalid(format!(
            "{origin} is not a JSON object, so field `{field}` cannot be read from it"
        )));
    };
    Ok(match map.get(field) {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(Secret::new(s.clone())),
        Some(serde_json::Value::Number(n)) => Some(Secret::new(n.to_string())),
        Some(serde_json::Value::Bool(b)) => Some(Secret::new(b.to_string())),
        Some(_) => {
            return Err(SourceError::invalid(format!(
                "field `{field}` of {origin} is an object or a list, not a string"
            )))
        }
    })
}

/// Cleans a raw value read at `origin` for `key`, picking `field` out of it first when the
/// address names one: without a field this is [`normalize`]; with one, the raw value must be a
/// JSON object (it may span lines), and the field's value goes through [`normalize`]. A blank
/// raw value is absent either way.
pub fn select(
    key: &str,
    origin: &str,
    raw: String,
    field: Option<&str>,
) -> Result<Option<Secret>, SourceError> {
    let Some(field) = field else {
        return normalize(key, origin, raw);
    };
    let raw = Secret::new(raw);
    if raw.expose().trim().is_empty() {
        tracing::debug!(key, origin, "value is empty; treated as absent");
        return Ok(None);
    }
    match json_field(origin, &raw, field)? {
        Some(value) => normalize(key, &format!("{origin}#{field}"), value.expose().to_owned()),
        None => {
            tracing::debug!(key, origin, field, "the JSON object has no such field");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_newline_is_trimmed() {
        let v = normalize("K", "test", "pnu_FAKE_KEY_001\r\n".into())
            .unwrap()
            .unwrap();
        assert_eq!(v.expose(), "pnu_FAKE_KEY_001");
    }

    #[test]
    fn inner_newline_is_invalid_and_hidden() {
        let err = normalize("K", "test", "pnu_A\nB".into()).unwrap_err();
        assert!(!err.to_string().contains("pnu_A"));
        assert_eq!(err.kind(), crate::ErrorKind::Invalid);
    }

    #[test]
    fn blank_is_absent() {
        assert!(normalize("K", "test", " \n\t".into()).unwrap().is_none());
    }

    #[test]
    fn address_with_field() {
        let a = Address::parse("secret/etl#api_key").unwrap();
        assert_eq!(a.location, "secret/etl");
        assert_eq!(a.field.as_deref(), Some("api_key"));
        assert!(Address::parse("x#").is_err());
    }

    #[test]
    fn json_field_on_plain_text_says_not_an_object() {
        let err = json_field("secret `k`", &Secret::new("pnu_FAKE_x"), "api_key").unwrap_err();
        assert!(err.to_string().contains("not a JSON object"));
        assert!(!err.to_string().contains("pnu_FAKE_x"));
    }

    #[test]
    fn select_without_field_normalizes() {
        let v = select("K", "test", "pnu_FAKE_x\n".into(), None)
            .unwrap()
            .unwrap();
        assert_eq!(v.expose(), "pnu_FAKE_x");
    }

    #[test]
    fn select_picks_a_field_of_a_multi_line_object() {
        let raw = "{\n  \"api_key\": \"pnu_FAKE_y\"\n}\n".to_string();
        let v = select("K", "test", raw, Some("api_key")).unwrap().unwrap();
        assert_eq!(v.expose(), "pnu_FAKE_y");
        let missing = select("K", "test", "{}".into(), Some("api_key")).unwrap();
        assert!(missing.is_none());
    }
}
