//! `credchain concurrency setup` and `list`: make the server's concurrency limits match the
//! config, idempotently, and show them.
//!
//! Tag limits go through `/concurrency_limits/` (an upsert on the server); global limits are
//! read by name, created when absent and patched when different, because a plain create of an
//! existing name answers 409. A limit on the server that the config does not list is left alone
//! and reported.

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::{ConcurrencyConfig, GlobalLimit, TagLimit};
use crate::prefect::{PrefectClient, RequestError};

/// The prefix Prefect gives the global limit behind a tag limit.
const TAG_PREFIX: &str = "tag:";
/// The prefix of limits Prefect manages for deployments.
const DEPLOYMENT_PREFIX: &str = "deployment:";
/// Page size for listing (the server's maximum).
const PAGE: usize = 200;

/// What setup did, or would do, to one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// It did not exist and was created.
    Created,
    /// It existed with other settings and was updated.
    Updated,
    /// It already matched.
    Unchanged,
}

/// One declared limit and what happened to it.
#[derive(Debug, Clone, Serialize)]
pub struct LimitChange {
    /// `tag` or `global`.
    pub kind: &'static str,
    /// The tag or the limit's name.
    pub name: String,
    /// The declared limit.
    pub limit: u32,
    /// The limit before, when it was updated.
    pub previous: Option<u32>,
    /// What setup did (with `--dry-run`: would do).
    pub change: Change,
}

/// A limit on the server.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServerLimit {
    /// Its name (`tag:<tag>` for tag limits).
    pub name: String,
    /// Its slots.
    pub limit: u32,
    /// Whether it is enforced.
    #[serde(default = "yes")]
    pub active: bool,
    /// Slots in use.
    #[serde(default)]
    pub active_slots: u64,
    /// Decay for rate limits.
    #[serde(default)]
    pub slot_decay_per_second: f64,
}

fn yes() -> bool {
    true
}

/// The result of setup.
#[derive(Debug, Clone, Serialize)]
pub struct SetupReport {
    /// Whether nothing was changed on purpose.
    pub dry_run: bool,
    /// Each declared limit.
    pub limits: Vec<LimitChange>,
    /// Limits on the server the config does not list (left alone).
    pub not_in_config: Vec<String>,
}

/// Characters Prefect refuses in a limit's name (its `Name` pattern is `^[^/%&><]+$`).
const FORBIDDEN_IN_NAMES: [char; 5] = ['/', '%', '&', '>', '<'];

/// Why the declared limits cannot be applied. Checked before any request, so a bad config
/// changes nothing on the server.
#[derive(Debug, thiserror::Error)]
pub enum CheckLimitsError {
    /// A name is empty or holds a character Prefect refuses.
    #[error("concurrency limit `{name}`: names cannot be empty or contain / % & > <")]
    CheckName {
        /// The name or tag.
        name: String,
    },
    /// The same limit is declared twice.
    #[error("concurrency limit `{name}` is declared twice")]
    CheckDuplicate {
        /// The server-side name (`tag:<tag>` for tags).
        name: String,
    },
    /// A decay that is negative or not a number.
    #[error("concurrency limit `{name}`: slot_decay_per_second must be 0 or more")]
    CheckDecay {
        /// The limit's name.
        name: String,
    },
}

/// Checks the declared limits the way the server would, before anything is sent: legal names,
/// no name twice (a tag `t` and a global `tag:t` are the same limit), a decay of 0 or more.
pub fn check(config: &ConcurrencyConfig) -> Result<(), CheckLimitsError> {
    let mut seen = std::collections::HashSet::new();
    let tags = config
        .tags
        .iter()
        .map(|t| (t.tag.as_str(), format!("{TAG_PREFIX}{}", t.tag)));
    let globals = config
        .global
        .iter()
        .map(|g| (g.name.as_str(), g.name.clone()));
    for (name, server_name) in tags.chain(globals) {
        if name.trim().is_empty() || name.contains(FORBIDDEN_IN_NAMES) {
            return Err(CheckLimitsError::CheckName {
                name: name.to_string(),
            });
        }
        if !seen.insert(server_name.clone()) {
            return Err(CheckLimitsError::CheckDuplicate { name: server_name });
        }
    }
    for global in &config.global {
        if !(global.slot_decay_per_second >= 0.0 && global.slot_decay_per_second.is_finite()) {
            return Err(CheckLimitsError::CheckDecay {
                name: global.name.clone(),
            });
        }
    }
    Ok(())
}

/// Makes the server's limits match `config`. With `dry_run`, only reads. Call [`check`] first.
pub async fn setup(
    client: &PrefectClient,
    config: &ConcurrencyConfig,
    dry_run: bool,
) -> Result<SetupReport, RequestError> {
    let mut limits = Vec::new();
    for tag in &config.tags {
        limits.push(setup_tag(client, tag, dry_run).await?);
    }
    for global in &config.global {
        limits.push(setup_global(client, global, dry_run).await?);
    }
    let declared: Vec<String> = config
        .tags
        .iter()
        .map(|t| format!("{TAG_PREFIX}{}", t.tag))
        .chain(config.global.iter().map(|g| g.name.clone()))
        .collect();
    let not_in_config = list(client)
        .await?
        .into_iter()
        .map(|l| l.name)
        .filter(|name| !declared.contains(name) && !name.starts_with(DEPLOYMENT_PREFIX))
        .collect();
    Ok(SetupReport {
        dry_run,
        limits,
        not_in_config,
    })
}

async fn setup_tag(
    client: &PrefectClient,
    tag: &TagLimit,
    dry_run: bool,
) -> Result<LimitChange, RequestError> {
    let existing = read(
        client,
        &format!("/concurrency_limits/tag/{}", segment(&tag.tag)),
    )
    .await?;
    let previous = existing
        .as_ref()
        .and_then(|v| v.get("concurrency_limit"))
        .and_then(serde_json::Value::as_u64)
        .map(|v| v as u32);
    let change = match previous {
        None => Change::Created,
        Some(limit) if limit == tag.limit => Change::Unchanged,
        Some(_) => Change::Updated,
    };
    if change != Change::Unchanged && !dry_run {
        let body = json!({ "tag": tag.tag, "concurrency_limit": tag.limit });
        client
            .post_json::<serde_json::Value>("/concurrency_limits/", &body)
            .await?;
    }
    Ok(LimitChange {
        kind: "tag",
        name: tag.tag.clone(),
        limit: tag.limit,
        previous: previous.filter(|_| change == Change::Updated),
        change,
    })
}

async fn setup_global(
    client: &PrefectClient,
    global: &GlobalLimit,
    dry_run: bool,
) -> Result<LimitChange, RequestError> {
    let path = format!("/v2/concurrency_limits/{}", segment(&global.name));
    let mut existing: Option<ServerLimit> = read_as(client, &path).await?;
    let body = json!({
        "limit": global.limit,
        "slot_decay_per_second": global.slot_decay_per_second,
    });
    if existing.is_none() && !dry_run {
        let mut create = body.clone();
        create["name"] = json!(global.name);
        let answer = client
            .send(Method::POST, "/v2/concurrency_limits/", Some(&create))
            .await?;
        if answer.status() != StatusCode::CONFLICT {
            answer.error_for_status()?;
            return Ok(global_change(global, None, Change::Created));
        }
        // Another process created it between our read and our create: treat it as existing.
        existing = read_as(client, &path).await?;
    }
    let Some(current) = existing else {
        return Ok(global_change(global, None, Change::Created));
    };
    let same = current.limit == global.limit
        && (current.slot_decay_per_second - global.slot_decay_per_second).abs() < 1e-9;
    if same {
        return Ok(global_change(global, None, Change::Unchanged));
    }
    if !dry_run {
        client
            .send(Method::PATCH, &path, Some(&body))
            .await?
            .error_for_status()?;
    }
    Ok(global_change(global, Some(current.limit), Change::Updated))
}

fn global_change(global: &GlobalLimit, previous: Option<u32>, change: Change) -> LimitChange {
    LimitChange {
        kind: "global",
        name: global.name.clone(),
        limit: global.limit,
        previous,
        change,
    }
}

/// Every concurrency limit on the server, sorted by name.
pub async fn list(client: &PrefectClient) -> Result<Vec<ServerLimit>, RequestError> {
    let mut all = Vec::new();
    loop {
        let body = json!({ "limit": PAGE, "offset": all.len() });
        let page: Vec<ServerLimit> = client
            .post_json("/v2/concurrency_limits/filter", &body)
            .await?;
        let done = page.len() < PAGE;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

async fn read(
    client: &PrefectClient,
    path: &str,
) -> Result<Option<serde_json::Value>, RequestError> {
    read_as(client, path).await
}

async fn read_as<T: serde::de::DeserializeOwned>(
    client: &PrefectClient,
    path: &str,
) -> Result<Option<T>, RequestError> {
    let answer = client.send(Method::GET, path, None).await?;
    if answer.status() == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    answer.error_for_status()?.json().map(Some)
}

/// Percent-encodes a path segment (tags and names may hold spaces or slashes).
fn segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(tags: &[&str], globals: &[(&str, f64)]) -> ConcurrencyConfig {
        ConcurrencyConfig {
            tags: tags
                .iter()
                .map(|t| TagLimit {
                    tag: t.to_string(),
                    limit: 1,
                })
                .collect(),
            global: globals
                .iter()
                .map(|(n, d)| GlobalLimit {
                    name: n.to_string(),
                    limit: 1,
                    slot_decay_per_second: *d,
                })
                .collect(),
        }
    }

    #[test]
    fn check_refuses_names_prefect_refuses() {
        assert!(check(&limits(&["etl"], &[("etl bad/x", 0.0)])).is_err());
        assert!(check(&limits(&[" "], &[])).is_err());
        assert!(check(&limits(&["etl"], &[("etl-db", 0.5)])).is_ok());
    }

    #[test]
    fn check_refuses_a_limit_declared_twice() {
        assert!(check(&limits(&["load", "load"], &[])).is_err());
        assert!(check(&limits(&["load"], &[("tag:load", 0.0)])).is_err());
    }

    #[test]
    fn check_refuses_a_negative_decay() {
        assert!(check(&limits(&[], &[("rate", -1.0)])).is_err());
        assert!(check(&limits(&[], &[("rate", f64::NAN)])).is_err());
    }

    #[test]
    fn segment_encodes_spaces_and_slashes() {
        assert_eq!(segment("etl load/db"), "etl%20load%2Fdb");
        assert_eq!(segment("tag:etl-load"), "tag:etl-load");
    }
}
