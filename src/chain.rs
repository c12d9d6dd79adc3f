//! The priority chain: sources in order, first match wins.
//!
//! Resolution order for one key:
//! 1. Ask each source in the order the config lists them.
//! 2. A source that holds the key wins; its value carries its [`Provenance`].
//! 3. A source that does not hold the key, or is not configured here, is passed over.
//! 4. Any other failure (denied, unavailable, invalid) stops resolution with an error that names
//!    the source, unless that source is `optional`: then it is passed over with a warning.
//! 5. When no source holds the key, the error lists every source tried and why it had nothing.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use credchain_core::{CredentialSource, ErrorKind, Resolved, Secret, SourceError, SourceSettings};
use tracing::{debug, warn, Instrument};

/// One source in the chain, with its shared settings.
#[derive(Debug, Clone)]
pub struct Link {
    /// The source.
    pub source: Arc<dyn CredentialSource>,
    /// Its settings: name, `optional`, refresh interval, `max_stale`, key overrides.
    pub settings: SourceSettings,
}

/// Why a source had nothing for a key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Attempt {
    /// The source's name.
    pub source: String,
    /// Why it did not supply the key: `does not hold the key`, `not configured: ...`,
    /// `skipped (optional): unavailable: ...`.
    pub outcome: String,
}

/// A value with the index of the link that supplied it.
#[derive(Debug, Clone)]
pub struct Found {
    /// The value and its provenance.
    pub resolved: Resolved,
    /// Index into [`Chain::links`] of the source that supplied it.
    pub link: usize,
}

/// Why a key could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No source holds the key.
    #[error("no source holds {key}; tried: {}", Tried(.tried))]
    NotFound {
        /// The key asked for.
        key: String,
        /// Every source asked, in order, with its reason.
        tried: Vec<Attempt>,
    },
    /// A source failed and is not optional.
    #[error("source `{source_name}` failed while resolving {key}")]
    FetchKey {
        /// The key asked for.
        key: String,
        /// The failing source's name.
        source_name: String,
        /// What went wrong.
        #[source]
        error: SourceError,
    },
}

impl ResolveError {
    /// The category, for exit codes: `None` for a key that no source holds.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ResolveError::NotFound { .. } => None,
            ResolveError::FetchKey { error, .. } => Some(error.kind()),
        }
    }

    /// The name of the source that failed, if one did.
    pub fn source_name(&self) -> Option<&str> {
        match self {
            ResolveError::NotFound { .. } => None,
            ResolveError::FetchKey { source_name, .. } => Some(source_name),
        }
    }
}

struct Tried<'a>(&'a [Attempt]);

impl fmt::Display for Tried<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no sources are configured");
        }
        for (i, attempt) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{} ({})", attempt.source, attempt.outcome)?;
        }
        Ok(())
    }
}

/// Sources in priority order.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    links: Vec<Link>,
    /// The last failure warned about for each link, so that one broken source (a
    /// malformed `.env` line) warns once, not once per key and per refresh.
    warned: Arc<Mutex<HashMap<usize, String>>>,
}

impl Chain {
    /// A chain over these links, highest priority first.
    pub fn new(links: Vec<Link>) -> Self {
        Chain {
            links,
            warned: Arc::default(),
        }
    }

    /// Whether the failure of link `index` is news: true once per distinct message
    /// until the link answers again.
    fn first_warning(&self, index: usize, message: &str) -> bool {
        let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        if warned.get(&index).is_some_and(|last| last == message) {
            return false;
        }
        warned.insert(index, message.to_string());
        true
    }

    /// Link `index` answered: its next failure is news again.
    fn answered(&self, index: usize) {
        self.warned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&index);
    }

    /// The links, highest priority first.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// Resolves `key` through the chain.
    pub async fn resolve(&self, key: &str) -> Result<Found, ResolveError> {
        self.resolve_inner(key, None).await
    }

    /// Resolves `key` again after a server rejected `rejected`, which link `from` supplied. That
    /// link is asked through [`CredentialSource::fetch_after_rejection`], so a store with staged
    /// rotation can offer its next value; the others are asked as usual.
    pub async fn resolve_after_rejection(
        &self,
        key: &str,
        from: usize,
        rejected: &Secret,
    ) -> Result<Found, ResolveError> {
        self.resolve_inner(key, Some((from, rejected))).await
    }

    async fn resolve_inner(
        &self,
        key: &str,
        rejected: Option<(usize, &Secret)>,
    ) -> Result<Found, ResolveError> {
        let mut tried = Vec::new();
        for (index, link) in self.links.iter().enumerate() {
            let name = link.settings.name.as_str();
            let span = tracing::debug_span!("source", source = name, key);
            let outcome = match rejected {
                Some((from, value)) if from == index => {
                    link.source
                        .fetch_after_rejection(key, value)
                        .instrument(span.clone())
                        .await
                }
                _ => link.source.fetch(key).instrument(span.clone()).await,
            };
            let _entered = span.enter();
            if outcome.is_ok() {
                self.answered(index);
            }
            match outcome {
                Ok(Some(resolved)) => {
                    debug!(location = %resolved.provenance.location, "found");
                    return Ok(Found {
                        resolved,
                        link: index,
                    });
                }
                Ok(None) => {
                    debug!("does not hold the key");
                    tried.push(attempt(name, "does not hold the key".into()));
                }
                Err(error) if error.kind() == ErrorKind::NotConfigured => {
                    debug!(reason = %error, "not configured; moving on");
                    tried.push(attempt(name, format!("not configured: {error}")));
                }
                Err(error) if link.settings.optional => {
                    if self.first_warning(index, &error.to_string()) {
                        warn!(error = %error, kind = %error.kind(), "optional source failed; moving on");
                    } else {
                        debug!(error = %error, kind = %error.kind(), "optional source failed again; moving on");
                    }
                    tried.push(attempt(
                        name,
                        format!("skipped (optional): {}: {error}", error.kind()),
                    ));
                }
                Err(error) => {
                    if self.first_warning(index, &error.to_string()) {
                        warn!(error = %error, kind = %error.kind(), "source failed");
                    } else {
                        debug!(error = %error, kind = %error.kind(), "source failed again");
                    }
                    return Err(ResolveError::FetchKey {
                        key: key.to_string(),
                        source_name: name.to_string(),
                        error,
                    });
                }
            }
        }
        Err(ResolveError::NotFound {
            key: key.to_string(),
            tried,
        })
    }
}

fn attempt(source: &str, outcome: String) -> Attempt {
    Attempt {
        source: source.to_string(),
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credchain_core::{async_trait, Lifetime, Provenance};
    use std::collections::HashMap;

    #[derive(Debug)]
    enum Behaviour {
        Holds(HashMap<&'static str, &'static str>),
        Fails(ErrorKind),
    }

    #[derive(Debug)]
    struct Fake(&'static str, Behaviour);

    #[async_trait]
    impl CredentialSource for Fake {
        fn name(&self) -> &str {
            self.0
        }

        async fn fetch(&self, key: &str) -> Result<Option<Resolved>, SourceError> {
            match &self.1 {
                Behaviour::Holds(map) => Ok(map.get(key).map(|v| Resolved {
                    value: Secret::new(*v),
                    provenance: Provenance {
                        source: self.0.into(),
                        location: key.into(),
                        version: None,
                    },
                    lifetime: Lifetime::Static,
                })),
                Behaviour::Fails(kind) => Err(SourceError::new(*kind, "boom")),
            }
        }
    }

    fn chain(sources: Vec<(Fake, bool)>) -> Chain {
        Chain::new(
            sources
                .into_iter()
                .map(|(fake, optional)| {
                    let mut settings = SourceSettings::new(fake.0);
                    settings.optional = optional;
                    Link {
                        source: Arc::new(fake),
                        settings,
                    }
                })
                .collect(),
        )
    }

    fn holds(pairs: &[(&'static str, &'static str)]) -> Behaviour {
        Behaviour::Holds(pairs.iter().copied().collect())
    }

    #[tokio::test]
    async fn a_failing_source_is_news_once_until_it_answers_again() {
        let c = chain(vec![
            (Fake("broken", Behaviour::Fails(ErrorKind::Invalid)), true),
            (Fake("fallback", holds(&[("A", "1"), ("B", "2")])), false),
        ]);
        assert!(c.first_warning(0, "boom"));
        assert!(
            !c.first_warning(0, "boom"),
            "the same failure again is not news"
        );
        assert!(c.first_warning(0, "other"), "a different failure is");
        assert!(c.first_warning(1, "other"), "per link");
        c.answered(0);
        assert!(c.first_warning(0, "other"), "after an answer, news again");
        // Resolving keys through the broken optional link records its failure once.
        c.answered(0);
        for key in ["A", "B"] {
            c.resolve(key).await.unwrap();
        }
        assert!(
            !c.first_warning(0, "boom"),
            "both lookups shared one warning"
        );
    }

    #[tokio::test]
    async fn first_source_holding_the_key_wins() {
        let c = chain(vec![
            (Fake("a", holds(&[])), false),
            (Fake("b", holds(&[("K", "pnu_FAKE_b")])), false),
            (Fake("c", holds(&[("K", "pnu_FAKE_c")])), false),
        ]);
        let found = c.resolve("K").await.unwrap();
        assert_eq!(found.link, 1);
        assert_eq!(found.resolved.value.expose(), "pnu_FAKE_b");
    }

    #[tokio::test]
    async fn not_configured_moves_on() {
        let c = chain(vec![
            (
                Fake("vault", Behaviour::Fails(ErrorKind::NotConfigured)),
                false,
            ),
            (Fake("env", holds(&[("K", "v")])), false),
        ]);
        assert_eq!(c.resolve("K").await.unwrap().link, 1);
    }

    #[tokio::test]
    async fn hard_failure_stops_and_names_the_source() {
        let c = chain(vec![
            (
                Fake("vault", Behaviour::Fails(ErrorKind::Unavailable)),
                false,
            ),
            (Fake("env", holds(&[("K", "v")])), false),
        ]);
        let err = c.resolve("K").await.unwrap_err();
        assert_eq!(err.source_name(), Some("vault"));
        assert_eq!(err.kind(), Some(ErrorKind::Unavailable));
    }

    #[tokio::test]
    async fn optional_failure_is_skipped() {
        let c = chain(vec![
            (Fake("vault", Behaviour::Fails(ErrorKind::Denied)), true),
            (Fake("env", holds(&[("K", "v")])), false),
        ]);
        assert_eq!(c.resolve("K").await.unwrap().link, 1);
    }

    #[tokio::test]
    async fn exhausted_chain_lists_every_source() {
        let c = chain(vec![
            (
                Fake("vault", Behaviour::Fails(ErrorKind::NotConfigured)),
                false,
            ),
            (Fake("aws", Behaviour::Fails(ErrorKind::Unavailable)), true),
            (Fake("env", holds(&[])), false),
        ]);
        let err = c.resolve("PREFECT_API_KEY").await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("PREFECT_API_KEY"), "{text}");
        for name in [
            "vault (not configured",
            "aws (skipped (optional)",
            "env (does not",
        ] {
            assert!(text.contains(name), "{name} missing from: {text}");
        }
    }
}
