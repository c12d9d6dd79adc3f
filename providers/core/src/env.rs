//! The process environment behind a trait, so sources are tested without `set_var`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;

/// Read access to environment variables.
pub trait Environment: Send + Sync + fmt::Debug {
    /// The raw value of a variable, if set.
    fn var_os(&self, key: &str) -> Option<OsString>;

    /// The value of a variable if it is set and valid UTF-8.
    fn var(&self, key: &str) -> Option<String> {
        self.var_os(key).and_then(|v| v.into_string().ok())
    }
}

/// The real process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var_os(&self, key: &str) -> Option<OsString> {
        std::env::var_os(key)
    }
}

/// A fixed environment for tests. `Debug` lists the names only.
#[derive(Default, Clone)]
pub struct MapEnv(BTreeMap<String, String>);

impl MapEnv {
    /// An environment holding these pairs.
    pub fn new<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        MapEnv(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl fmt::Debug for MapEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Environment for MapEnv {
    fn var_os(&self, key: &str) -> Option<OsString> {
        self.0.get(key).map(OsString::from)
    }
}
