//! The cache entry of one key: its value, when to look again, and the flight in progress.

use std::path::PathBuf;
use std::time::Duration;

use credchain_core::{Lifetime, SourceSettings};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::{Current, Flight};
use crate::sources::stamp::{file_stamp, FileStamp};

/// The shortest refresh period, so a lease of zero seconds cannot make a busy loop.
const MIN_REFRESH_PERIOD: Duration = Duration::from_secs(1);
/// The first wait after a failed refresh; it doubles with each failure.
const FIRST_RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// The longest wait between refresh attempts while refreshes fail.
const MAX_RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

/// What [`Slot::check`] decided.
pub(super) enum Check {
    /// Serve this value.
    Fresh(Current),
    /// Resolve the key (again) before answering.
    Resolve,
}

/// Refreshes that keep failing.
#[derive(Debug, Clone, Copy)]
struct Failing {
    since: Instant,
    attempts: u32,
    retry_at: Instant,
}

/// One key's entry.
#[derive(Default)]
pub(super) struct Slot {
    /// The value in service, once one was resolved.
    pub(super) current: Option<Current>,
    /// The resolution in progress, if any.
    pub(super) flight: Option<Flight>,
    /// The scheduled background refresh of a remote value.
    pub(super) refresher: Option<AbortHandle>,
    /// Identifies the latest scheduled refresh; older ones see a different token and stop.
    pub(super) refresh_token: u64,
    /// When the background refresh of a remote value is due.
    pub(super) refresh_due: Option<Instant>,
    /// Until when the value may be served without a successful refresh.
    pub(super) serve_until: Option<Instant>,
    /// The stamp of the file a `File` value was read from.
    stamp: Option<FileStamp>,
    failing: Option<Failing>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(task) = self.refresher.take() {
            task.abort();
        }
    }
}

impl Slot {
    /// Whether the cached value can be served now, or the key must be resolved first.
    pub(super) fn check(&self, now: Instant) -> Check {
        let Some(current) = &self.current else {
            return Check::Resolve;
        };
        let fresh = match &current.resolved.lifetime {
            Lifetime::Static => true,
            Lifetime::File(path) => match self.failing {
                // After a failed re-read, wait before reading again; serve until max_stale.
                Some(failing) if now < failing.retry_at => self.servable(now),
                _ => self.stamp.is_some() && file_stamp(path) == self.stamp,
            },
            Lifetime::Remote { .. } => self.servable(now),
        };
        if fresh {
            Check::Fresh(current.clone())
        } else {
            Check::Resolve
        }
    }

    fn servable(&self, now: Instant) -> bool {
        self.serve_until.is_some_and(|until| now < until)
    }

    /// The file the cached value was read from, if it came from one.
    pub(super) fn file_path(&self) -> Option<PathBuf> {
        self.current.as_ref().and_then(super::file_path)
    }

    /// Records a newly resolved value and when to look at it again.
    pub(super) fn installed(
        &mut self,
        current: Current,
        now: Instant,
        stamp: Option<FileStamp>,
        settings: &SourceSettings,
    ) {
        let (refresh_due, serve_until) = match current.resolved.lifetime {
            Lifetime::Static | Lifetime::File(_) => (None, None),
            Lifetime::Remote {
                expires_in: Some(lease),
            } => {
                let due = now + (lease * 2 / 3).max(MIN_REFRESH_PERIOD);
                (Some(due), Some((due + settings.max_stale).min(now + lease)))
            }
            Lifetime::Remote { expires_in: None } => {
                let due = now + settings.refresh_interval.max(MIN_REFRESH_PERIOD);
                (Some(due), Some(due + settings.max_stale))
            }
        };
        self.current = Some(current);
        self.stamp = stamp;
        self.failing = None;
        self.refresh_due = refresh_due;
        self.serve_until = serve_until;
    }

    /// Records a failed refresh and returns when to try again. A file value's `max_stale`
    /// counts from its first failed re-read; a remote value's from when its refresh was due.
    pub(super) fn failed(&mut self, now: Instant, settings: &SourceSettings) -> Instant {
        let failing = self.failing.get_or_insert(Failing {
            since: now,
            attempts: 0,
            retry_at: now,
        });
        failing.attempts += 1;
        let doublings = failing.attempts.saturating_sub(1).min(16);
        let wait = (FIRST_RETRY_AFTER_FAILURE * 2u32.pow(doublings)).min(MAX_RETRY_AFTER_FAILURE);
        failing.retry_at = now + wait;
        let since = failing.since;
        if matches!(
            self.current.as_ref().map(|c| &c.resolved.lifetime),
            Some(Lifetime::File(_))
        ) {
            self.serve_until = Some(since + settings.max_stale);
        }
        now + wait
    }
}
