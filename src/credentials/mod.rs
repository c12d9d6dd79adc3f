//! Rotating credentials: one cache over the [`Chain`], shared by every task, that keeps values
//! fresh and re-resolves a rejected value once, however many callers saw it rejected.
//!
//! When a cached value is looked at again depends on its [`Lifetime`]:
//! 1. `Static` (the process environment): never.
//! 2. `File(path)`: on every [`Credentials::get`], the file's stamp (change time, modification
//!    time, inode, size) is compared with the one taken when it was read; a change re-resolves.
//! 3. `Remote { expires_in: Some(d) }`: a background task re-resolves at two thirds of `d`.
//! 4. `Remote { expires_in: None }`: a background task re-resolves every `refresh_interval` of
//!    the link that supplied it.
//!
//! A refresh that fails keeps the last good value in service, with a warning, until `max_stale`
//! of its link has passed (for a lease, no later than the lease's end); after that, `get`
//! tries once more itself and fails if that fails too.
//!
//! [`Credentials::rejected`] is for a server's 401: one re-resolution runs per rejected value
//! (single flight), and while the store keeps returning the rejected value it backs off 1 s,
//! 2 s, 4 s, ... up to a bound before giving up. All resolutions of one key, refreshes and
//! rejections alike, share one flight, so a rotation costs one read of the store.

mod error;
mod slot;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use credchain_core::{Lifetime, Provenance, Resolved, Secret};
use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::chain::{Chain, Found, ResolveError};
use crate::config::Config;
use crate::sources::stamp::file_stamp;

pub use error::CredError;
use slot::{Check, Slot};

/// How long a rejected value may keep coming back from its store before
/// [`Credentials::rejected`] gives up, unless the config says otherwise.
pub const DEFAULT_REJECTION_BACKOFF_TOTAL: Duration = Duration::from_secs(30);

/// The first wait after the store returned the rejected value again; it doubles each time.
const FIRST_REJECTION_BACKOFF: Duration = Duration::from_secs(1);

/// A cached value with where it came from and which resolution produced it.
#[derive(Debug, Clone)]
pub struct Current {
    resolved: Arc<Resolved>,
    link: usize,
    generation: u64,
}

impl Current {
    /// The value; prints as `[REDACTED]`.
    pub fn value(&self) -> &Secret {
        &self.resolved.value
    }

    /// Where the value came from.
    pub fn provenance(&self) -> &Provenance {
        &self.resolved.provenance
    }

    /// The value, its provenance and its lifetime.
    pub fn resolved(&self) -> &Resolved {
        &self.resolved
    }

    /// Index into [`Chain::links`] of the source that supplied the value.
    pub fn link(&self) -> usize {
        self.link
    }

    /// Changes whenever the cached value of the key changes; two `Current`s of one key with the
    /// same generation hold the same value.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A value outside any cache, for tests of code that takes a `Current`.
    #[cfg(test)]
    pub(crate) fn for_tests(resolved: Resolved) -> Current {
        Current {
            resolved: Arc::new(resolved),
            link: 0,
            generation: 0,
        }
    }
}

/// The result every flight ends with, shared by all its callers.
type Outcome = Result<Option<Current>, CredError>;

/// A resolution in progress that later callers join instead of starting their own.
#[derive(Clone)]
struct Flight {
    /// `None` for a plain resolution; the rejected generation for a re-resolution after a 401.
    rejected: Option<u64>,
    future: Shared<BoxFuture<'static, Outcome>>,
}

/// The shared handle: cheap to clone, every clone sees the same cache.
#[derive(Debug, Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

struct Inner {
    chain: Chain,
    rejection_backoff_total: Duration,
    slots: Mutex<HashMap<String, Slot>>,
    generations: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("sources", &self.chain.links().len())
            .field("rejection_backoff_total", &self.rejection_backoff_total)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// A cache over `chain` with the default rejection bound.
    pub fn new(chain: Chain) -> Self {
        Self::with_rejection_backoff(chain, DEFAULT_REJECTION_BACKOFF_TOTAL)
    }

    /// A cache over `chain` that stops backing off on a rejected value after `total`.
    pub fn with_rejection_backoff(chain: Chain, total: Duration) -> Self {
        Credentials {
            inner: Arc::new(Inner {
                chain,
                rejection_backoff_total: total,
                slots: Mutex::new(HashMap::new()),
                generations: AtomicU64::new(1),
            }),
        }
    }

    /// A cache over the config's chain with its `[prefect] rejection_backoff_total`.
    pub fn from_config(config: &Config) -> Self {
        Self::with_rejection_backoff(config.chain.clone(), config.prefect.rejection_backoff_total)
    }

    /// The chain behind the cache.
    pub fn chain(&self) -> &Chain {
        &self.inner.chain
    }

    /// The current value of `key`, resolving or refreshing it first when it is missing or
    /// stale. `Ok(None)` when no source holds the key (absence is not cached).
    pub async fn get(&self, key: &str) -> Result<Option<Current>, CredError> {
        let future = {
            let mut slots = self.inner.lock();
            let slot = slots.entry(key.to_string()).or_default();
            match &slot.flight {
                Some(flight) => flight.future.clone(),
                None => match slot.check(Instant::now()) {
                    Check::Fresh(current) => return Ok(Some(current)),
                    Check::Resolve => self.inner.start_resolve(slot, key),
                },
            }
        };
        future.await
    }

    /// Tells the cache that a server rejected `rejected`, the value of `key` the caller sent,
    /// and returns the value to send instead.
    ///
    /// However many callers report the same value, one re-resolution runs and all get its
    /// result; a caller reporting a value that was already replaced gets the new one at once.
    /// While the store still returns the rejected value this waits 1 s, 2 s, 4 s, ... between
    /// reads, and fails with [`CredError::ReplaceRejected`] when the bound is spent (at once for
    /// a value from the process environment, which cannot change).
    pub async fn rejected(&self, key: &str, rejected: &Current) -> Result<Current, CredError> {
        loop {
            let (future, joined_resolve) = {
                let mut slots = self.inner.lock();
                let slot = slots.entry(key.to_string()).or_default();
                if let Some(current) = &slot.current {
                    if current.generation != rejected.generation {
                        debug!(key, "rejected value was already replaced");
                        return Ok(current.clone());
                    }
                }
                match &slot.flight {
                    Some(f) => (f.future.clone(), f.rejected.is_none()),
                    None => (self.inner.start_reject(slot, key, rejected.clone()), false),
                }
            };
            let outcome = future.await;
            // A refresh that was already running may have brought the new value; look again.
            if !joined_resolve {
                return outcome?.ok_or_else(|| CredError::vanished(key));
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn link_name(&self, link: usize) -> &str {
        self.chain
            .links()
            .get(link)
            .map_or("unknown", |l| l.settings.name.as_str())
    }

    /// Starts a plain resolution of `key` and records it in `slot` for others to join.
    fn start_resolve(
        self: &Arc<Self>,
        slot: &mut Slot,
        key: &str,
    ) -> Shared<BoxFuture<'static, Outcome>> {
        let path = slot.file_path();
        let future = resolve_flight(self.clone(), key.to_string(), path)
            .boxed()
            .shared();
        slot.flight = Some(Flight {
            rejected: None,
            future: future.clone(),
        });
        future
    }

    /// Starts a re-resolution after `rejected` was refused and records it in `slot`.
    fn start_reject(
        self: &Arc<Self>,
        slot: &mut Slot,
        key: &str,
        rejected: Current,
    ) -> Shared<BoxFuture<'static, Outcome>> {
        let generation = rejected.generation;
        let future = reject_flight(self.clone(), key.to_string(), rejected)
            .boxed()
            .shared();
        slot.flight = Some(Flight {
            rejected: Some(generation),
            future: future.clone(),
        });
        future
    }

    /// Puts a freshly resolved value in the cache and returns it. The generation changes only
    /// when the value or the link that supplied it changed.
    fn install(
        self: &Arc<Self>,
        slot: &mut Slot,
        key: &str,
        found: Found,
        taken: StampTaken,
    ) -> Current {
        let now = Instant::now();
        let generation = match &slot.current {
            Some(old) if old.link == found.link && old.resolved.value == found.resolved.value => {
                old.generation
            }
            old => {
                let generation = self.generations.fetch_add(1, Ordering::Relaxed);
                if old.is_some() {
                    info!(key, from = %found.resolved.provenance, "new value in use");
                }
                generation
            }
        };
        let current = Current {
            resolved: Arc::new(found.resolved),
            link: found.link,
            generation,
        };
        let stamp = match (&current.resolved.lifetime, taken) {
            (Lifetime::File(path), StampTaken::Before(taken_path, stamp))
                if *path == taken_path =>
            {
                stamp
            }
            (Lifetime::File(path), _) => file_stamp(path),
            _ => None,
        };
        let settings = &self.chain.links()[current.link].settings;
        slot.installed(current.clone(), now, stamp, settings);
        if let Some(at) = slot.refresh_due {
            self.schedule_refresh(slot, key, at);
        }
        current
    }

    /// Records a failed refresh: the last good value stays in service until its deadline.
    fn refresh_failed(
        self: &Arc<Self>,
        slot: &mut Slot,
        key: &str,
        error: ResolveError,
    ) -> Outcome {
        let now = Instant::now();
        let Some(current) = slot.current.clone() else {
            return match error {
                ResolveError::NotFound { .. } => Ok(None),
                error => Err(CredError::resolve(key, error)),
            };
        };
        let settings = &self.chain.links()[current.link].settings;
        let retry_at = slot.failed(now, settings);
        let source = self.link_name(current.link).to_string();
        if now < slot.serve_until.unwrap_or(now) {
            warn!(
                key, source, error = %crate::exit::error_chain(&error),
                serve_for = ?slot.serve_until.map(|t| t - now),
                "refresh failed; serving the last good value"
            );
            if matches!(current.resolved.lifetime, Lifetime::Remote { .. }) {
                self.schedule_refresh(slot, key, retry_at);
            }
            return Ok(Some(current));
        }
        warn!(key, source, error = %crate::exit::error_chain(&error), "refresh failed past max_stale");
        Err(CredError::stale(key, &source, settings.max_stale, error))
    }

    /// Sleeps until `at`, then refreshes `key` through the shared flight. Replaces any refresh
    /// already scheduled for the key.
    fn schedule_refresh(self: &Arc<Self>, slot: &mut Slot, key: &str, at: Instant) {
        let weak = Arc::downgrade(self);
        let key = key.to_string();
        slot.refresh_token += 1;
        let token = slot.refresh_token;
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let Some(inner) = weak.upgrade() else { return };
            let future = {
                let mut slots = inner.lock();
                let Some(slot) = slots.get_mut(&key) else {
                    return;
                };
                if slot.refresh_token != token {
                    return;
                }
                // This task runs the refresh now; a later schedule must not abort it.
                slot.refresher = None;
                match &slot.flight {
                    Some(flight) => flight.future.clone(),
                    None => inner.start_resolve(slot, &key),
                }
            };
            drop(inner);
            debug!(key, "background refresh");
            let _ = future.await;
        });
        if let Some(old) = slot.refresher.replace(task.abort_handle()) {
            old.abort();
        }
    }
}

/// Whether a file stamp was taken before reading, and of which file.
enum StampTaken {
    Before(std::path::PathBuf, Option<crate::sources::stamp::FileStamp>),
    No,
}

fn stamp_before(path: Option<std::path::PathBuf>) -> StampTaken {
    match path {
        Some(path) => {
            let stamp = file_stamp(&path);
            StampTaken::Before(path, stamp)
        }
        None => StampTaken::No,
    }
}

/// Resolves `key` through the chain and settles the outcome in its slot.
async fn resolve_flight(
    inner: Arc<Inner>,
    key: String,
    path: Option<std::path::PathBuf>,
) -> Outcome {
    // The stamp is taken before the read, so a change during the read is seen next time.
    let taken = stamp_before(path);
    let result = inner.chain.resolve(&key).await;
    let mut slots = inner.lock();
    let slot = slots.entry(key.clone()).or_default();
    slot.flight = None;
    match result {
        Ok(found) => Ok(Some(inner.install(slot, &key, found, taken))),
        Err(error) => inner.refresh_failed(slot, &key, error),
    }
}

/// Re-resolves `key` after `rejected` was refused, backing off while the store still returns
/// it, and settles the outcome in its slot.
async fn reject_flight(inner: Arc<Inner>, key: String, rejected: Current) -> Outcome {
    let started = Instant::now();
    let mut delay = FIRST_REJECTION_BACKOFF;
    let source = inner.link_name(rejected.link).to_string();
    loop {
        let taken = stamp_before(file_path(&rejected));
        let result = inner
            .chain
            .resolve_after_rejection(&key, rejected.link, rejected.value())
            .await;
        let found = match result {
            Ok(found) if found.resolved.value != *rejected.value() => {
                let mut slots = inner.lock();
                let slot = slots.entry(key.clone()).or_default();
                slot.flight = None;
                return Ok(Some(inner.install(slot, &key, found, taken)));
            }
            Ok(found) => found,
            Err(error) => return settle_reject(&inner, &key, Err(CredError::resolve(&key, error))),
        };
        let waited = started.elapsed();
        let remaining = inner.rejection_backoff_total.saturating_sub(waited);
        if found.resolved.lifetime == Lifetime::Static || remaining.is_zero() {
            let error = CredError::ReplaceRejected {
                key: key.clone(),
                source_name: inner.link_name(found.link).to_string(),
                location: found.resolved.provenance.location.clone(),
                waited,
            };
            return settle_reject(&inner, &key, Err(error));
        }
        let wait = delay.min(remaining);
        warn!(
            key,
            source,
            ?wait,
            "the source still returns the rejected value; reading again"
        );
        tokio::time::sleep(wait).await;
        delay *= 2;
    }
}

fn settle_reject(inner: &Inner, key: &str, outcome: Outcome) -> Outcome {
    let mut slots = inner.lock();
    if let Some(slot) = slots.get_mut(key) {
        slot.flight = None;
    }
    outcome
}

fn file_path(current: &Current) -> Option<std::path::PathBuf> {
    match &current.resolved.lifetime {
        Lifetime::File(path) => Some(path.clone()),
        _ => None,
    }
}
