//! The ETL flow as Prefect sees it: the flow `main-etl`, one flow run per execution, task runs
//! `extract`, `transform` and `load` with their own states, log lines in batches, a summary
//! artifact, client-side tag concurrency for the load step, and the runner behind
//! `credchain serve` (deployment `main-etl/etl-job`).

mod engine;
mod lease;
mod logs;
pub mod models;
mod serve;
mod states;

pub use engine::{cancel, create_flow_run, execute, run_once, RunOutcome, RUN_PATIENCE};
pub use serve::{serve, PipelineFactory, ServeOptions, Served};

use crate::etl::{EtlError, EtlErrorKind};
use crate::exit::Exit;
use crate::prefect::RequestError;

/// The flow's name in Prefect.
pub const FLOW_NAME: &str = "main-etl";
/// The served deployment's name.
pub const DEPLOYMENT_NAME: &str = "etl-job";

/// Why a flow run failed.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// A request to Prefect failed.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The server did not let the run move on.
    #[error("flow run {run}: {message}")]
    Orchestration {
        /// The run.
        run: String,
        /// What the server answered.
        message: String,
    },
    /// A tag's concurrency limit has no slot at all (limit 0), so the load could never run.
    #[error("the concurrency limit of tag(s) {tags} has no slot a load could take")]
    TagLimitZero {
        /// The pipeline's tags.
        tags: String,
    },
    /// The pipeline failed.
    #[error(transparent)]
    Etl(#[from] EtlError),
}

impl FlowError {
    /// How the process should exit because of it.
    pub fn exit(&self) -> Exit {
        match self {
            FlowError::Request(error) => error.exit(),
            FlowError::Orchestration { .. } => Exit::WorkFailed,
            FlowError::TagLimitZero { .. } => Exit::Usage,
            FlowError::Etl(error) => match error.kind() {
                EtlErrorKind::Config => Exit::Usage,
                EtlErrorKind::Unreachable => Exit::Unreachable,
                EtlErrorKind::Unauthorized => Exit::Unauthorized,
                EtlErrorKind::Failed => Exit::WorkFailed,
            },
        }
    }

    /// What the user should do about it.
    pub fn hint(&self) -> String {
        match self {
            FlowError::Request(error) => error.hint(),
            FlowError::TagLimitZero { .. } => "raise the limit (credchain concurrency setup) or \
                remove the tag from pipeline.tags"
                .to_string(),
            FlowError::Orchestration { .. } => {
                "the server's orchestration rules stopped the run: see the run in Prefect's UI"
                    .to_string()
            }
            FlowError::Etl(error) => error.hint().unwrap_or_else(|| match error.kind() {
                EtlErrorKind::Config => "fix the [pipeline] table or the target; see \
                    docs/pipeline.md"
                    .to_string(),
                EtlErrorKind::Unreachable => {
                    "check that the source URL or the database server is reachable".to_string()
                }
                EtlErrorKind::Unauthorized => {
                    "the database refused the login: check the user and password (target_key, \
                     password_key)"
                        .to_string()
                }
                EtlErrorKind::Failed => {
                    "run again with -v to see each step's log lines, and read the rejects file, \
                     if any"
                        .to_string()
                }
            }),
        }
    }
}
