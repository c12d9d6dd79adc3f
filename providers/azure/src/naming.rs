//! How a key becomes a Key Vault secret name, and which names and version ids Key Vault accepts.

/// The longest secret name Key Vault accepts.
pub const MAX_NAME_LEN: usize = 127;

/// Why a secret name or version id cannot be sent to Key Vault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("the secret name is empty")]
    EmptyName,
    /// The name is longer than Key Vault allows.
    #[error(
        "secret name `{name}` is {len} characters long; Key Vault allows at most {MAX_NAME_LEN}"
    )]
    LongName {
        /// The name.
        name: String,
        /// Its length.
        len: usize,
    },
    /// The name holds a character Key Vault does not allow.
    #[error(
        "secret name `{name}` contains `{ch}`; Key Vault names allow only letters, digits and `-`"
    )]
    IllegalCharacter {
        /// The name.
        name: String,
        /// The first character that is not allowed.
        ch: char,
    },
    /// The version id holds something other than letters and digits.
    #[error("version `{version}` of secret `{name}` is not a Key Vault version id (letters and digits only)")]
    BadVersion {
        /// The secret name.
        name: String,
        /// The version id as configured.
        version: String,
    },
}

/// The natural secret name of a key: `_` becomes `-`, because Key Vault names allow only
/// letters, digits and `-`. `PREFECT_API_KEY` is read from the secret `PREFECT-API-KEY`.
pub fn natural_name(key: &str) -> String {
    key.replace('_', "-")
}

/// Checks that Key Vault accepts `name`: 1 to 127 ASCII letters, digits and `-`.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::EmptyName);
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && *c != '-')
    {
        return Err(NameError::IllegalCharacter {
            name: name.to_string(),
            ch,
        });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::LongName {
            name: name.to_string(),
            len: name.len(),
        });
    }
    Ok(())
}

/// Checks a pinned version id: Key Vault's are 32 hex digits; any run of ASCII letters and
/// digits is let through so that the vault, not this check, says whether it exists.
pub fn check_version(name: &str, version: &str) -> Result<(), NameError> {
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(NameError::BadVersion {
            name: name.to_string(),
            version: version.to_string(),
        });
    }
    Ok(())
}

/// The secret identifier's last path segment, when it is a version id
/// (`https://<vault>/secrets/<name>/<version>`).
pub fn version_of_id(id: &str) -> Option<String> {
    let url = url::Url::parse(id).ok()?;
    let mut segments = url.path_segments()?.filter(|s| !s.is_empty());
    match (segments.next(), segments.next(), segments.next()) {
        (Some("secrets"), Some(_), Some(version)) => Some(version.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underscores_become_dashes() {
        assert_eq!(natural_name("PREFECT_API_KEY"), "PREFECT-API-KEY");
        assert!(check_name(&natural_name("PREFECT_API_KEY")).is_ok());
    }

    #[test]
    fn dot_in_a_name_is_refused() {
        let err = check_name("prefect.api-key").unwrap_err();
        assert_eq!(
            err,
            NameError::IllegalCharacter {
                name: "prefect.api-key".into(),
                ch: '.'
            }
        );
        assert!(err.to_string().contains("`.`"));
    }

    #[test]
    fn name_of_128_characters_is_refused() {
        assert!(check_name(&"a".repeat(MAX_NAME_LEN)).is_ok());
        let err = check_name(&"a".repeat(MAX_NAME_LEN + 1)).unwrap_err();
        assert!(matches!(err, NameError::LongName { len: 128, .. }));
    }

    #[test]
    fn non_ascii_letter_is_refused() {
        assert!(check_name("clé").is_err());
        assert!(check_name("").is_err());
    }

    #[test]
    fn version_must_be_letters_and_digits() {
        assert!(check_version("n", "4d1d0c5e6f7a8b9c0d1e2f3a4b5c6d7e").is_ok());
        assert!(check_version("n", "../x").is_err());
        assert!(check_version("n", "").is_err());
    }

    #[test]
    fn version_is_read_from_the_secret_id() {
        let id = "https://etl.vault.azure.net/secrets/PREFECT-API-KEY/0a1b2c";
        assert_eq!(version_of_id(id).as_deref(), Some("0a1b2c"));
        assert_eq!(version_of_id("https://etl.vault.azure.net/secrets/X"), None);
        assert_eq!(version_of_id("not a url"), None);
    }
}
