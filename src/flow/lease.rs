//! Tag concurrency taken on the client side, as Prefect's own SDK does: a lease on the global
//! limits `tag:<tag>`, renewed while the work runs, released at the end. Taking it here means a
//! run never waits on the server's own task-run tag check, which can hang on a SQLite-backed
//! server (see docs/pipeline.md).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::FlowError;
use crate::prefect::{ApiResponse, PrefectClient};

/// How long a lease lasts unless renewed (Prefect accepts 60 s to 1 day).
const LEASE_SECONDS: f64 = 60.0;
/// Renewal period: three quarters of the lease.
const RENEW_EVERY: Duration = Duration::from_secs(45);
/// Wait after a 423 without `Retry-After`.
const DEFAULT_WAIT: Duration = Duration::from_secs(1);
/// The longest single wait for a slot, whatever the server says.
const MAX_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
struct Granted {
    lease_id: String,
    #[serde(default)]
    limits: Vec<serde_json::Value>,
}

/// A held lease; call [`TagLease::release`] when the work is done.
#[derive(Debug)]
pub struct TagLease {
    client: PrefectClient,
    lease_id: String,
    renewal: JoinHandle<()>,
}

/// Takes one slot on every `tag:<tag>` limit for `tags`, waiting as long as the server says
/// while they are full. `on_wait` hears about each wait.
pub async fn acquire(
    client: &PrefectClient,
    tags: &[String],
    task_run_id: &str,
    on_wait: impl Fn(&str),
) -> Result<Option<TagLease>, FlowError> {
    if tags.is_empty() {
        return Ok(None);
    }
    let names: Vec<String> = tags.iter().map(|t| format!("tag:{t}")).collect();
    let body = serde_json::json!({
        "names": names,
        "slots": 1,
        "mode": "concurrency",
        "lease_duration": LEASE_SECONDS,
        "holder": { "type": "task_run", "id": task_run_id },
    });
    let path = "/v2/concurrency_limits/increment-with-lease";
    loop {
        let answer = client.send(Method::POST, path, Some(&body)).await?;
        if answer.status() == StatusCode::LOCKED {
            let wait = retry_after(&answer).unwrap_or(DEFAULT_WAIT).min(MAX_WAIT);
            on_wait(&format!(
                "concurrency limit for tags {} is full; waiting {:.1} s for a slot",
                tags.join(", "),
                wait.as_secs_f64()
            ));
            tokio::time::sleep(wait).await;
            continue;
        }
        if answer.status() == StatusCode::UNPROCESSABLE_ENTITY {
            // Prefect refuses a request for more slots than a limit has at all (limit 0).
            return Err(FlowError::TagLimitZero {
                tags: tags.join(", "),
            });
        }
        let granted: Granted = answer.error_for_status()?.json()?;
        if granted.limits.is_empty() {
            debug!(?tags, "no concurrency limit exists for these tags");
        } else {
            info!(?tags, "took a concurrency slot");
        }
        return Ok(Some(TagLease {
            renewal: tokio::spawn(renew(client.clone(), granted.lease_id.clone())),
            client: client.clone(),
            lease_id: granted.lease_id,
        }));
    }
}

impl TagLease {
    /// Gives the slot back. Failures are logged: the lease then expires on its own.
    pub async fn release(self) {
        self.renewal.abort();
        let body = serde_json::json!({ "lease_id": self.lease_id });
        let path = "/v2/concurrency_limits/decrement-with-lease";
        if let Err(error) = self
            .client
            .post_json::<serde_json::Value>(path, &body)
            .await
        {
            warn!(error = %error, "cannot release the concurrency lease; it expires within a minute");
        }
    }
}

async fn renew(client: PrefectClient, lease_id: String) {
    let path = format!("/v2/concurrency_limits/leases/{lease_id}/renew");
    let body = serde_json::json!({ "lease_duration": LEASE_SECONDS });
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        match client.send(Method::POST, &path, Some(&body)).await {
            Ok(answer) if answer.status().is_success() => debug!("renewed the concurrency lease"),
            Ok(answer) => warn!(
                status = answer.status().as_u16(),
                "cannot renew the concurrency lease (it may have expired)"
            ),
            Err(error) => warn!(error = %error, "cannot renew the concurrency lease"),
        }
    }
}

fn retry_after(answer: &ApiResponse) -> Option<Duration> {
    let text = answer.headers().get("retry-after")?.to_str().ok()?;
    let seconds: f64 = text.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}
