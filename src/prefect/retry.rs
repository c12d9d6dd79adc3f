//! The one place that decides whether a request is sent again, and after how long.
//!
//! Retried: 408, 429, 502, 503, 504, and connection failures (those before the server saw the
//! request only once the server has answered this client, so a wrong URL fails fast; TLS
//! failures never). The wait is the server's `Retry-After` in seconds (fractional values such
//! as `1.5` included), else 1 s, 2 s, 4 s, ... with ±20 % jitter, capped.

use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

/// Retries after the first attempt, unless the config says otherwise.
pub const DEFAULT_MAX_RETRIES: u32 = 5;
/// The wait before the first retry without `Retry-After`; it doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest computed backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest `Retry-After` honoured; a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// Backoff is multiplied by a random factor in `1 ± JITTER`.
const JITTER: f64 = 0.2;

/// How many times and how long to wait.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub(crate) max_retries: u32,
    pub(crate) first_backoff: Duration,
}

impl RetryPolicy {
    /// A policy with `max_retries` and the default backoff.
    pub(crate) fn new(max_retries: u32) -> Self {
        RetryPolicy {
            max_retries,
            first_backoff: FIRST_BACKOFF,
        }
    }

    /// The wait before retry number `retry` (1-based), given the answer's headers if any.
    pub(crate) fn delay(&self, retry: u32, headers: Option<&HeaderMap>) -> Duration {
        if let Some(after) = headers.and_then(retry_after) {
            // Wait at least what the server asked, a little more to spread clients out.
            let spread = rand::rng().random_range(0.0..=JITTER);
            return after.mul_f64(1.0 + spread).min(MAX_RETRY_AFTER);
        }
        let doublings = retry.saturating_sub(1).min(16);
        let base = (self.first_backoff * 2u32.pow(doublings)).min(MAX_BACKOFF);
        base.mul_f64(rand::rng().random_range(1.0 - JITTER..=1.0 + JITTER))
    }
}

/// Whether an answer with this status is worth sending again.
pub(crate) fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 502 | 503 | 504)
}

/// `Retry-After` in seconds, whole or fractional. An HTTP date is not honoured (the backoff
/// applies instead), nor is a negative or absurd value.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let secs: f64 = text.parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        secs.min(MAX_RETRY_AFTER.as_secs_f64()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn retry_after_takes_fractional_seconds() {
        assert_eq!(
            retry_after(&headers("1.5")),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(retry_after(&headers(" 2 ")), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(&headers("-1")), None);
    }

    #[test]
    fn delay_honours_retry_after_with_upward_jitter() {
        let policy = RetryPolicy::new(5);
        for _ in 0..100 {
            let d = policy.delay(1, Some(&headers("1.5")));
            assert!(
                d >= Duration::from_millis(1500) && d <= Duration::from_millis(1800),
                "{d:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let policy = RetryPolicy::new(5);
        for (retry, base) in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 30.0), (40, 30.0)] {
            let d = policy.delay(retry, None).as_secs_f64();
            assert!(
                d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9,
                "retry {retry}: {d}"
            );
        }
    }

    #[test]
    fn retryable_statuses() {
        for code in [408, 429, 502, 503, 504] {
            assert!(is_retryable(StatusCode::from_u16(code).unwrap()));
        }
        for code in [400, 401, 403, 404, 409, 423, 500] {
            assert!(!is_retryable(StatusCode::from_u16(code).unwrap()));
        }
    }
}
