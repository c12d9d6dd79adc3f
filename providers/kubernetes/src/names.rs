//! Kubernetes naming rules for Secrets, namespaces and data keys, checked before a name goes
//! into a request path.

/// The longest Secret name (a DNS subdomain) and the longest data key.
const MAX_SUBDOMAIN: usize = 253;
/// The longest namespace (a DNS label).
const MAX_LABEL: usize = 63;

/// A Secret name: a DNS subdomain (lowercase letters, digits, `-` and `.`, starting and ending
/// with a letter or digit).
pub fn check_secret_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_SUBDOMAIN {
        return Err(format!(
            "{name:?} is longer than {MAX_SUBDOMAIN} characters"
        ));
    }
    if name.split('.').all(is_label) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid Secret name (lowercase letters, digits, `-` and `.`)"
        ))
    }
}

/// A namespace: a DNS label (lowercase letters, digits and `-`).
pub fn check_namespace(name: &str) -> Result<(), String> {
    if name.len() <= MAX_LABEL && is_label(name) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid namespace (at most {MAX_LABEL} lowercase letters, digits \
             and `-`)"
        ))
    }
}

/// A key of a Secret's `data`: letters, digits, `-`, `_` and `.`.
pub fn check_data_key(key: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !key.is_empty() && key.len() <= MAX_SUBDOMAIN && key.chars().all(allowed) {
        Ok(())
    } else {
        Err(format!(
            "{key:?} is not a valid Secret data key (letters, digits, `-`, `_` and `.`)"
        ))
    }
}

/// One DNS label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
fn is_label(part: &str) -> bool {
    let inner = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let edge = |c: Option<char>| c.is_some_and(|c| c != '-');
    !part.is_empty()
        && part.chars().all(inner)
        && edge(part.chars().next())
        && edge(part.chars().last())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        assert!(check_secret_name("prefect-api.v2").is_ok());
        assert!(check_secret_name("Prefect").is_err());
        assert!(check_secret_name("-x").is_err());
        assert!(check_secret_name("a..b").is_err());
        assert!(check_secret_name("a/b").is_err());
    }

    #[test]
    fn namespaces() {
        assert!(check_namespace("etl-prod").is_ok());
        assert!(check_namespace("etl.prod").is_err());
        assert!(check_namespace(&"a".repeat(64)).is_err());
    }

    #[test]
    fn data_keys() {
        assert!(check_data_key("PREFECT_API_KEY").is_ok());
        assert!(check_data_key("config.json").is_ok());
        assert!(check_data_key("a/b").is_err());
        assert!(check_data_key("").is_err());
    }
}
