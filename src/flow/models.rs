//! The parts of Prefect's orchestration objects that the flow engine sends and reads. Requests
//! are strict (Prefect rejects unknown fields); responses are lenient (unknown fields ignored).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A state type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[allow(missing_docs)]
pub enum StateType {
    Scheduled,
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
    Crashed,
    Paused,
    Cancelling,
}

impl StateType {
    /// Whether a run in this state is over.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StateType::Completed | StateType::Failed | StateType::Cancelled | StateType::Crashed
        )
    }
}

/// A state to propose.
#[derive(Debug, Clone, Serialize)]
pub struct StateCreate {
    /// The type.
    #[serde(rename = "type")]
    pub kind: StateType,
    /// A name; the server derives one from the type when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A message, such as the error of a failed run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// State details (`transition_id` and the like).
    pub state_details: Value,
}

impl StateCreate {
    /// A state of this type with a fresh transition id, so that a retried request is not
    /// applied twice.
    pub fn new(kind: StateType) -> Self {
        StateCreate {
            kind,
            name: None,
            message: None,
            state_details: serde_json::json!({ "transition_id": uuid::Uuid::new_v4() }),
        }
    }

    /// With this name.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// With this message.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
}

/// A state as the server returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct State {
    /// The type.
    #[serde(rename = "type")]
    pub kind: StateType,
    /// The name.
    #[serde(default)]
    pub name: Option<String>,
    /// The message.
    #[serde(default)]
    pub message: Option<String>,
    /// When it was entered.
    #[serde(default)]
    pub timestamp: Option<String>,
}

/// The server's verdict on a proposed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[allow(missing_docs)]
pub enum Verdict {
    Accept,
    Reject,
    Abort,
    Wait,
}

/// The answer to `set_state`.
#[derive(Debug, Clone, Deserialize)]
pub struct OrchestrationResult {
    /// The state the run is in now (the proposed one on ACCEPT).
    #[serde(default)]
    pub state: Option<State>,
    /// The verdict.
    pub status: Verdict,
    /// `reason`, `delay_seconds`.
    #[serde(default)]
    pub details: Value,
}

impl OrchestrationResult {
    /// The reason the server gave, if any.
    pub fn reason(&self) -> String {
        self.details
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }

    /// How long a WAIT asks the client to wait, in seconds.
    pub fn delay_seconds(&self) -> f64 {
        self.details
            .get("delay_seconds")
            .and_then(Value::as_f64)
            .unwrap_or(1.0)
    }
}

/// A flow run as the server returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct FlowRun {
    /// The id.
    pub id: String,
    /// The generated name.
    #[serde(default)]
    pub name: String,
    /// The deployment, for runs of a deployment.
    #[serde(default)]
    pub deployment_id: Option<String>,
    /// The current state.
    #[serde(default)]
    pub state: Option<State>,
    /// When a scheduled run is due.
    #[serde(default)]
    pub next_scheduled_start_time: Option<String>,
}

/// An object with an id, for creates whose answer matters only for that.
#[derive(Debug, Clone, Deserialize)]
pub struct Created {
    /// The id.
    pub id: String,
}
