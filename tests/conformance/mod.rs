//! The conformance suite every credential source runs: found, absent, empty, invalid, rotated,
//! and (for sources that can fail that way) denied, unavailable and slow.
//!
//! A source's test file implements [`Fixture`] and lists the behaviours it runs:
//!
//! ```ignore
//! mod conformance;
//! conformance::conformance_tests!(env_suite, EnvFixture::new());           // the local five
//! conformance::conformance_tests!(vault_suite, VaultFixture::start().await;
//!     found, absent, empty_is_absent, invalid_control_char_is_hidden,
//!     rotated_between_two_reads, denied, unavailable, slow);
//! ```
//!
//! Every behaviour captures TRACE logs and fails if a value it put shows up in them, in any
//! error (`Display` and `Debug` of every link of the cause chain) or in `Debug` of a result.
#![allow(dead_code)] // each test binary uses a different part of the suite

mod capture;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
pub use capture::{printed, Capture};
use credchain::core::{CredentialSource, ErrorKind, Resolved, SourceError};

/// The key most behaviours put and fetch.
pub const KEY: &str = "PREFECT_API_KEY";
/// A second key, so "absent" runs against a store that exists and holds something.
pub const OTHER_KEY: &str = "PREFECT_API_URL";

const FOUND: &str = "pnu_FAKE_CONF_FOUND_001";
const OTHER: &str = "pnu_FAKE_CONF_OTHER_002";
/// An escape sequence inside: a control character a terminal would act on.
const CONTROL: &str = "pnu_FAKE_CONF_CTRL_003\u{1b}[31mtail";
const FIRST: &str = "pnu_FAKE_CONF_ROTA_004";
const SECOND: &str = "pnu_FAKE_CONF_ROTB_005";
const GUARDED: &str = "pnu_FAKE_CONF_GUARD_006";

/// How long `slow` waits for the source to give up before calling it a hang. Not a timing
/// assertion: the source must fail with `unavailable` well within its own timeout.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// A store in a known state, and the source that reads it.
#[async_trait]
pub trait Fixture: Send + Sync {
    /// The source under test.
    fn source(&self) -> Arc<dyn CredentialSource>;

    /// Stores `value` under `key`, replacing what was there.
    async fn put(&self, key: &str, value: &str);

    /// Removes `key` from the store; the store itself stays.
    async fn remove(&self, key: &str);

    /// Stores an empty value under `key`.
    async fn put_empty(&self, key: &str) {
        self.put(key, "").await;
    }

    /// Makes the source's next fetch be refused (401/403). `false` if this store cannot.
    async fn deny(&self) -> bool {
        false
    }

    /// Makes the store unreachable or failing (connect error, 5xx). `false` if it cannot.
    async fn make_unavailable(&self) -> bool {
        false
    }

    /// Makes the store answer slower than the source's timeout. `false` if it cannot.
    async fn make_slow(&self) -> bool {
        false
    }
}

/// A value that is there is returned with provenance naming the source.
pub async fn found(fixture: impl Fixture) {
    let capture = Capture::start();
    fixture.put(KEY, FOUND).await;
    let source = fixture.source();
    let resolved = fetch_some(&capture, &*source, KEY).await;
    assert!(resolved.value.expose() == FOUND, "found: wrong value");
    assert_eq!(resolved.provenance.source, source.name());
    assert!(!resolved.provenance.location.is_empty());
    capture.record_debug(&resolved.provenance.to_string());
    capture.assert_hidden(&[FOUND]);
}

/// A key the store does not hold is `Ok(None)`, so the chain moves on.
pub async fn absent(fixture: impl Fixture) {
    let capture = Capture::start();
    fixture.put(OTHER_KEY, OTHER).await;
    fixture.remove(KEY).await;
    let outcome = fixture.source().fetch(KEY).await;
    capture.record(&outcome);
    assert!(
        matches!(outcome, Ok(None)),
        "absent: expected Ok(None), got {}",
        printed(&outcome)
    );
    capture.assert_hidden(&[OTHER]);
}

/// An empty value counts as absent, with a debug line naming the key.
pub async fn empty_is_absent(fixture: impl Fixture) {
    let capture = Capture::start();
    fixture.put(OTHER_KEY, OTHER).await;
    fixture.put_empty(KEY).await;
    let outcome = fixture.source().fetch(KEY).await;
    capture.record(&outcome);
    assert!(
        matches!(outcome, Ok(None)),
        "empty: expected Ok(None), got {}",
        printed(&outcome)
    );
    assert!(
        capture.text().contains(KEY),
        "empty: no debug line names the key"
    );
    capture.assert_hidden(&[OTHER]);
}

/// A control character inside a value is an invalid error that does not show the value.
pub async fn invalid_control_char_is_hidden(fixture: impl Fixture) {
    let capture = Capture::start();
    fixture.put(KEY, CONTROL).await;
    let err = fetch_err(&capture, &*fixture.source(), KEY).await;
    assert_eq!(err.kind(), ErrorKind::Invalid, "invalid: {err}");
    capture.assert_hidden(&[CONTROL]);
}

/// A value changed in the store between two reads is seen by the second read.
pub async fn rotated_between_two_reads(fixture: impl Fixture) {
    let capture = Capture::start();
    let source = fixture.source();
    fixture.put(KEY, FIRST).await;
    let first = fetch_some(&capture, &*source, KEY).await;
    assert!(first.value.expose() == FIRST, "rotated: wrong first value");

    fixture.put(KEY, SECOND).await;
    let second = fetch_some(&capture, &*source, KEY).await;
    assert!(
        second.value.expose() == SECOND,
        "rotated: the new value was not seen"
    );
    capture.assert_hidden(&[FIRST, SECOND]);
}

/// A store that refuses the source gives a `denied` error.
pub async fn denied(fixture: impl Fixture) {
    let capture = Capture::start();
    fixture.put(KEY, GUARDED).await;
    let able = fixture.deny().await;
    fails_with(&capture, &fixture, able, ErrorKind::Denied).await;
}

/// A store that cannot be reached or fails gives an `unavailable` error.
pub async fn unavailable(fixture: impl Fixture) {
    let capture = Capture::start();
    fixture.put(KEY, GUARDED).await;
    let able = fixture.make_unavailable().await;
    fails_with(&capture, &fixture, able, ErrorKind::Unavailable).await;
}

/// The fetch of [`KEY`] fails with `kind` and shows nothing of [`GUARDED`]. `able` is whether
/// the fixture could break its store that way.
async fn fails_with(capture: &Capture, fixture: &impl Fixture, able: bool, kind: ErrorKind) {
    assert!(
        able,
        "this fixture cannot make its source fail as {kind}; leave that behaviour out of its list"
    );
    let err = fetch_err(capture, &*fixture.source(), KEY).await;
    assert_eq!(err.kind(), kind, "{err}");
    capture.assert_hidden(&[GUARDED]);
}

/// A store slower than the source's timeout gives an `unavailable` error instead of a hang.
pub async fn slow(fixture: impl Fixture) {
    let capture = Capture::start();
    fixture.put(KEY, GUARDED).await;
    assert!(
        fixture.make_slow().await,
        "this fixture cannot be slow; leave `slow` out of its list"
    );
    let source = fixture.source();
    let outcome = tokio::time::timeout(HANG_GUARD, source.fetch(KEY))
        .await
        .expect("slow: the source hung instead of timing out");
    capture.record(&outcome);
    let err = outcome.expect_err("slow: expected an error");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "slow: {err}");
    capture.assert_hidden(&[GUARDED]);
}

async fn fetch_some(capture: &Capture, source: &dyn CredentialSource, key: &str) -> Resolved {
    let outcome = source.fetch(key).await;
    capture.record(&outcome);
    match outcome {
        Ok(Some(resolved)) => resolved,
        other => panic!("expected a value for {key}, got {}", printed(&other)),
    }
}

async fn fetch_err(capture: &Capture, source: &dyn CredentialSource, key: &str) -> SourceError {
    let outcome = source.fetch(key).await;
    capture.record(&outcome);
    match outcome {
        Err(err) => err,
        Ok(found) => panic!(
            "expected an error for {key}, got {:?}",
            found.map(|r| r.provenance)
        ),
    }
}

/// Expands to `mod $suite { ... }` with one `#[tokio::test]` per behaviour, each running it
/// against a fresh fixture made by `$make` (an expression, which may `.await`). Without a list,
/// runs the five behaviours every source supports.
macro_rules! conformance_tests {
    ($suite:ident, $make:expr) => {
        $crate::conformance::conformance_tests!($suite, $make;
            found, absent, empty_is_absent, invalid_control_char_is_hidden,
            rotated_between_two_reads);
    };
    ($suite:ident, $make:expr; $($behaviour:ident),+ $(,)?) => {
        mod $suite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $behaviour() {
                    $crate::conformance::$behaviour($make).await;
                }
            )+
        }
    };
}
pub(crate) use conformance_tests;
