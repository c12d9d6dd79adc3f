//! Proposing states for flow and task runs, and following the server's verdict: WAIT sleeps and
//! proposes again, REJECT and ABORT end the proposal with what the server decided.

use std::time::Duration;

use tracing::debug;

use super::models::{OrchestrationResult, StateCreate, StateType, Verdict};
use super::FlowError;
use crate::prefect::{PrefectClient, RequestError};

/// The longest a single WAIT is honoured, whatever the server asks.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// How many WAIT verdicts in a row before giving up.
const MAX_WAITS: u32 = 120;

/// Which kind of run a state is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// `/flow_runs/{id}/set_state`.
    Flow,
    /// `/task_runs/{id}/set_state`.
    Task,
}

impl RunKind {
    fn path(self, id: &str) -> String {
        match self {
            RunKind::Flow => format!("/flow_runs/{id}/set_state"),
            RunKind::Task => format!("/task_runs/{id}/set_state"),
        }
    }
}

/// Proposes `state` for a run, waiting out WAIT verdicts. Returns the final result (ACCEPT,
/// REJECT or ABORT) for the caller to judge.
pub async fn propose(
    client: &PrefectClient,
    kind: RunKind,
    id: &str,
    state: StateCreate,
    force: bool,
) -> Result<OrchestrationResult, FlowError> {
    let path = kind.path(id);
    for _ in 0..MAX_WAITS {
        let body = serde_json::json!({ "state": &state, "force": force });
        let result: OrchestrationResult = client.post_json(&path, &body).await?;
        if result.status != Verdict::Wait {
            debug!(run = id, proposed = ?state.kind, verdict = ?result.status, "state proposed");
            return Ok(result);
        }
        let delay = Duration::from_secs_f64(result.delay_seconds().clamp(0.1, 60.0)).min(MAX_WAIT);
        debug!(run = id, proposed = ?state.kind, ?delay, reason = %result.reason(), "server asks to wait");
        tokio::time::sleep(delay).await;
    }
    Err(FlowError::Orchestration {
        run: id.to_string(),
        message: format!("the server kept answering WAIT to {:?}", state.kind),
    })
}

/// Proposes `state` and requires the server to accept it.
pub async fn require(
    client: &PrefectClient,
    kind: RunKind,
    id: &str,
    state: StateCreate,
) -> Result<(), FlowError> {
    let proposed = state.kind;
    let result = propose(client, kind, id, state, false).await?;
    match (result.status, result.state.as_ref().map(|s| s.kind)) {
        (Verdict::Accept, _) => Ok(()),
        (_, Some(now)) if now == proposed => Ok(()),
        (verdict, now) => Err(FlowError::Orchestration {
            run: id.to_string(),
            message: format!(
                "the server answered {verdict:?} to {proposed:?} (run is {}){}",
                now.map_or("in an unknown state".to_string(), |s| format!("{s:?}")),
                with_reason(&result.reason())
            ),
        }),
    }
}

/// How long to wait between attempts to record a final state while the server is away.
const SETTLE_PAUSE: Duration = Duration::from_secs(5);

/// Proposes a final state and, when the server cannot be reached (or answers 5xx), keeps trying
/// for up to `patience`, so a run is not left RUNNING by an outage that ends in time.
pub async fn settle(
    client: &PrefectClient,
    id: &str,
    state: StateCreate,
    force: bool,
    patience: Duration,
) -> Result<(), FlowError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match propose(client, RunKind::Flow, id, state.clone(), force).await {
            Ok(_) => return Ok(()),
            Err(error) if is_transient(&error) && tokio::time::Instant::now() < deadline => {
                tracing::warn!(flow_run = id, error = %error, "cannot record the final state yet; trying again");
                tokio::time::sleep(SETTLE_PAUSE).await;
            }
            Err(error) => return Err(error),
        }
    }
}

fn is_transient(error: &FlowError) -> bool {
    match error {
        FlowError::Request(RequestError::Unreachable { .. }) => true,
        FlowError::Request(request) => request.status().is_some_and(|s| s >= 500),
        _ => false,
    }
}

/// Forces a terminal state, for cleaning up after a shutdown or a crash.
pub async fn force(
    client: &PrefectClient,
    kind: RunKind,
    id: &str,
    state_type: StateType,
    message: &str,
) -> Result<(), FlowError> {
    let state = StateCreate::new(state_type).message(message);
    propose(client, kind, id, state, true).await.map(|_| ())
}

fn with_reason(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}
