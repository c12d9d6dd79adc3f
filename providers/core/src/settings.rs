//! Settings every source shares, read from its `[[sources]]` table by the config loader.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::value::Address;
use crate::SourceError;

/// How often a remote value without an expiry is read again, unless the source says otherwise.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// How long the last good value is served while refreshes fail, unless the source says otherwise.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(15 * 60);

/// The fields every `[[sources]]` table may have, whatever its type. The config loader takes
/// them out before a source sees its options; a source built from a raw table removes them too.
pub const COMMON_SOURCE_FIELDS: [&str; 6] = [
    "type",
    "name",
    "optional",
    "refresh_interval",
    "max_stale",
    "keys",
];

/// The part of a source's configuration that is the same for every kind of source.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// The name shown in provenance and errors; defaults to the source's type.
    pub name: String,
    /// A failure of an optional source is a warning, and the chain moves on.
    pub optional: bool,
    /// How often remote values without an expiry are read again.
    pub refresh_interval: Duration,
    /// How long the last good value is served while refreshes fail.
    pub max_stale: Duration,
    /// Per-key location overrides: `KEY = "location"` or `KEY = "location#field"`.
    pub keys: BTreeMap<String, String>,
    /// The directory relative paths in the config are resolved against.
    pub base_dir: PathBuf,
}

impl SourceSettings {
    /// Settings with every default, for a source named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        SourceSettings {
            name: name.into(),
            optional: false,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            max_stale: DEFAULT_MAX_STALE,
            keys: BTreeMap::new(),
            base_dir: PathBuf::from("."),
        }
    }

    /// Where `key` lives in this source: the `keys` override if there is one, else what
    /// `natural` maps it to.
    pub fn address(
        &self,
        key: &str,
        natural: impl FnOnce(&str) -> String,
    ) -> Result<Address, SourceError> {
        match self.keys.get(key) {
            Some(spec) => Address::parse(spec)
                .map_err(|why| SourceError::invalid(format!("bad location for key {key}: {why}"))),
            None => Ok(Address {
                location: natural(key),
                field: None,
            }),
        }
    }
}
