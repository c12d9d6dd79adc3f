//! Executes one flow run: RUNNING, the three task runs, the summary artifact, and COMPLETED or
//! FAILED with the error as the state's message.

use std::time::{Duration, Instant};

use serde_json::json;
use tracing::{info, warn};

use super::lease;
use super::logs::{LogShipper, LogSink};
use super::models::{Created, FlowRun, StateCreate, StateType};
use super::states::{self, RunKind};
use super::{FlowError, FLOW_NAME};
use crate::etl::observer::{LogLevel, PipelineObserver, Step};
use crate::etl::{EtlError, Pipeline, Summary};
use crate::exit::error_chain;
use crate::prefect::PrefectClient;

/// How long `credchain run` keeps trying to record the final state while the server is away.
pub const RUN_PATIENCE: Duration = Duration::from_secs(30);

/// The key of the summary artifact on each flow run.
const ARTIFACT_KEY: &str = "etl-summary";

/// A finished flow run: its id, and how it ended.
#[derive(Debug)]
pub struct RunOutcome {
    /// The flow run's id.
    pub flow_run_id: String,
    /// The summary, or why the run failed.
    pub result: Result<Summary, FlowError>,
}

/// Creates a flow run of `main-etl` and executes it now.
pub async fn run_once(
    client: &PrefectClient,
    pipeline: &Pipeline,
    local: &dyn PipelineObserver,
) -> Result<RunOutcome, FlowError> {
    let id = create_flow_run(client).await?;
    let result = execute(client, &id, pipeline, local, RUN_PATIENCE).await;
    Ok(RunOutcome {
        flow_run_id: id,
        result,
    })
}

/// Marks a flow run CANCELLED, for a run the user interrupted.
pub async fn cancel(
    client: &PrefectClient,
    flow_run_id: &str,
    message: &str,
) -> Result<(), FlowError> {
    states::force(
        client,
        RunKind::Flow,
        flow_run_id,
        StateType::Cancelled,
        message,
    )
    .await?;
    // The stopped executor cannot end its task runs: the server's record of them can.
    let filter = json!({
        "flow_runs": { "id": { "any_": [flow_run_id] } },
        "task_runs": { "state": { "type": { "any_": ["PENDING", "RUNNING", "SCHEDULED"] } } },
    });
    let open: Vec<Created> = client.post_json("/task_runs/filter", &filter).await?;
    for task in open {
        let cancelled = states::force(
            client,
            RunKind::Task,
            &task.id,
            StateType::Cancelled,
            message,
        )
        .await;
        if let Err(error) = cancelled {
            warn!(error = %error, task_run = %task.id, "cannot mark the task run CANCELLED");
        }
    }
    Ok(())
}

/// Creates a PENDING flow run of `main-etl`; returns its id.
pub async fn create_flow_run(client: &PrefectClient) -> Result<String, FlowError> {
    let flow: Created = client
        .post_json("/flows/", &json!({ "name": FLOW_NAME }))
        .await?;
    let body = json!({
        "flow_id": flow.id,
        "state": StateCreate::new(StateType::Pending),
        "parameters": {},
        "tags": ["credchain"],
    });
    let run: FlowRun = client.post_json("/flow_runs/", &body).await?;
    info!(flow_run = %run.id, name = %run.name, "created flow run");
    Ok(run.id)
}

/// Executes an existing flow run (already PENDING) and reports every step to Prefect. When the
/// server is away at the end, the final state is retried for up to `patience`.
pub async fn execute(
    client: &PrefectClient,
    flow_run_id: &str,
    pipeline: &Pipeline,
    local: &dyn PipelineObserver,
    patience: Duration,
) -> Result<Summary, FlowError> {
    let shipper = LogShipper::start(client.clone());
    let run = Run {
        client,
        flow_run_id,
        logs: shipper.sink(),
        patience,
    };
    let started = Instant::now();
    let outcome = run.steps(pipeline, local).await;
    let outcome = match outcome {
        Ok(summary) => run.complete(summary, started).await,
        Err(error) => Err(error),
    };
    if let Err(error) = &outcome {
        run.log(
            None,
            LogLevel::Error,
            &format!("flow run failed: {}", error_chain(error)),
        );
    }
    shipper.finish().await;
    if let Err(error) = &outcome {
        let message = error_chain(error);
        if let Err(report) = states::force(
            client,
            RunKind::Flow,
            flow_run_id,
            StateType::Failed,
            &message,
        )
        .await
        {
            warn!(error = %report, "cannot mark the flow run FAILED");
        }
    }
    outcome
}

struct Run<'a> {
    client: &'a PrefectClient,
    flow_run_id: &'a str,
    logs: LogSink,
    patience: Duration,
}

impl Run<'_> {
    async fn steps(
        &self,
        pipeline: &Pipeline,
        local: &dyn PipelineObserver,
    ) -> Result<Summary, FlowError> {
        states::require(
            self.client,
            RunKind::Flow,
            self.flow_run_id,
            StateCreate::new(StateType::Running),
        )
        .await?;
        self.log(
            None,
            LogLevel::Info,
            &format!("flow run of {FLOW_NAME} started by credchain"),
        );

        let task = self.start_task(Step::Extract).await?;
        let result = pipeline.extract(&self.observer(local, &task)).await;
        let extracted = self.end_task(&task, result).await?;

        // Transform and load run at once: load reads the rows as transform writes them, and
        // commits only once transform accepts them. The load holds the pipeline's tags: a lease
        // taken before its task run is RUNNING and given back after it ends, so two loads on
        // one tag never overlap.
        let transform_task = self.start_task(Step::Transform).await?;
        let load_task = self.create_task(Step::Load).await?;
        let transform_obs = self.observer(local, &transform_task);
        let load_obs = self.observer(local, &load_task);
        let (transform, load) =
            match pipeline.transform_and_load(extracted, &transform_obs, &load_obs) {
                Ok(steps) => steps,
                Err(error) => {
                    self.cancel_task(&load_task, "transform failed").await;
                    return Err(self
                        .end_task::<()>(&transform_task, Err(error))
                        .await
                        .unwrap_err());
                }
            };
        let (failed_tx, failed_rx) = tokio::sync::watch::channel(false);
        let transform_side = async {
            let result = self.end_task(&transform_task, transform.await).await;
            if result.is_err() {
                // Also when only reporting transform's end failed (Prefect unreachable): the
                // run is failing, so its load must not commit.
                pipeline.stop();
                let _ = failed_tx.send(true);
            }
            result
        };
        let load_side = async {
            let tags = &pipeline.config().tags;
            // Waiting lines go to the terminal as well as to Prefect.
            let acquire = lease::acquire(self.client, tags, &load_task, |waiting| {
                load_obs.log(Step::Load, LogLevel::Info, waiting)
            });
            // A transform that fails while the load waits for its tags ends the wait.
            let held = tokio::select! {
                held = acquire => match held {
                    Ok(held) => held,
                    Err(error) => {
                        self.fail_task(&load_task, &error_chain(&error)).await;
                        return Err(error);
                    }
                },
                () = failed(failed_rx) => {
                    self.cancel_task(&load_task, "transform failed").await;
                    return Err(FlowError::Etl(EtlError::Cancelled { step: Step::Load }));
                }
            };
            let outcome = async {
                self.set_running(&load_task).await?;
                match load.await {
                    Err(EtlError::Cancelled { .. }) => {
                        self.cancel_task(&load_task, "transform failed").await;
                        Err(FlowError::Etl(EtlError::Cancelled { step: Step::Load }))
                    }
                    result => self.end_task(&load_task, result).await,
                }
            }
            .await;
            if let Some(held) = held {
                held.release().await;
            }
            outcome
        };
        let (transformed, loaded) = tokio::join!(transform_side, load_side);
        // Transform's failure is the cause of the load's.
        transformed?;
        Ok(loaded?.into_summary())
    }

    /// Ends a task run that could not start as FAILED, with why.
    async fn fail_task(&self, task: &str, why: &str) {
        self.log(Some(task), LogLevel::Error, why);
        let failed = StateCreate::new(StateType::Failed).message(why.to_string());
        if let Err(report) = states::propose(self.client, RunKind::Task, task, failed, true).await {
            warn!(error = %report, "cannot mark the task run FAILED");
        }
    }

    /// Ends a task run that did not run to its end as CANCELLED, with why.
    async fn cancel_task(&self, task: &str, why: &str) {
        self.log(Some(task), LogLevel::Info, &format!("cancelled: {why}"));
        let cancelled = StateCreate::new(StateType::Cancelled).message(why.to_string());
        if let Err(report) =
            states::propose(self.client, RunKind::Task, task, cancelled, false).await
        {
            warn!(error = %report, "cannot mark the task run CANCELLED");
        }
    }

    async fn complete(&self, summary: Summary, started: Instant) -> Result<Summary, FlowError> {
        let seconds = started.elapsed().as_secs_f64();
        let artifact = json!({
            "key": ARTIFACT_KEY,
            "type": "markdown",
            "description": "Rows read, loaded and rejected by the ETL flow",
            "data": artifact_markdown(&summary, seconds),
            "flow_run_id": self.flow_run_id,
        });
        if let Err(error) = self
            .client
            .post_json::<serde_json::Value>("/artifacts/", &artifact)
            .await
        {
            warn!(error = %error, "cannot create the summary artifact");
        }
        self.log(None, LogLevel::Info, &summary.to_string());
        let done = StateCreate::new(StateType::Completed).message(summary.to_string());
        states::settle(self.client, self.flow_run_id, done, false, self.patience).await?;
        Ok(summary)
    }

    async fn create_task(&self, step: Step) -> Result<String, FlowError> {
        let body = json!({
            "name": step.name(),
            "task_key": format!("{FLOW_NAME}.{}", step.name()),
            "dynamic_key": "0",
            "flow_run_id": self.flow_run_id,
            "state": StateCreate::new(StateType::Pending),
        });
        let created: Created = self.client.post_json("/task_runs/", &body).await?;
        Ok(created.id)
    }

    async fn set_running(&self, task: &str) -> Result<(), FlowError> {
        states::require(
            self.client,
            RunKind::Task,
            task,
            StateCreate::new(StateType::Running),
        )
        .await
    }

    async fn start_task(&self, step: Step) -> Result<String, FlowError> {
        let task = self.create_task(step).await?;
        self.set_running(&task).await?;
        Ok(task)
    }

    async fn end_task<T>(
        &self,
        task: &str,
        result: Result<T, crate::etl::EtlError>,
    ) -> Result<T, FlowError> {
        match result {
            Ok(value) => {
                states::require(
                    self.client,
                    RunKind::Task,
                    task,
                    StateCreate::new(StateType::Completed),
                )
                .await?;
                Ok(value)
            }
            Err(error) => {
                let message = error_chain(&error);
                self.log(Some(task), LogLevel::Error, &message);
                let failed = StateCreate::new(StateType::Failed).message(message);
                if let Err(report) =
                    states::propose(self.client, RunKind::Task, task, failed, false).await
                {
                    warn!(error = %report, "cannot mark the task run FAILED");
                }
                Err(error.into())
            }
        }
    }

    fn observer<'a>(&'a self, local: &'a dyn PipelineObserver, task: &'a str) -> Forward<'a> {
        Forward {
            run: self,
            local,
            task,
        }
    }

    fn log(&self, task: Option<&str>, level: LogLevel, message: &str) {
        self.logs
            .send(level.python_level(), message, self.flow_run_id, task);
    }
}

/// Passes the pipeline's events to the terminal observer and its log lines to Prefect.
struct Forward<'a> {
    run: &'a Run<'a>,
    local: &'a dyn PipelineObserver,
    task: &'a str,
}

impl PipelineObserver for Forward<'_> {
    fn log(&self, step: Step, level: LogLevel, message: &str) {
        self.local.log(step, level, message);
        self.run.log(Some(self.task), level, message);
    }

    fn progress(&self, step: Step, done: u64, total: Option<u64>) {
        self.local.progress(step, done, total);
    }

    fn finished(&self, step: Step) {
        self.local.finished(step);
    }
}

fn artifact_markdown(summary: &Summary, seconds: f64) -> String {
    format!(
        "## ETL summary\n\n| | |\n|---|---|\n| table | `{}` |\n| target | `{}` |\n\
         | rows read | {} |\n| rows loaded | {} |\n| rows rejected | {} |\n\
         | rows changed | {} |\n| duration | {seconds:.2} s |\n",
        summary.table,
        summary.target,
        summary.rows_read,
        summary.rows_loaded,
        summary.rows_rejected,
        summary.rows_changed,
    )
}

/// Resolves once the flag turns true; never if its sender is dropped first.
async fn failed(mut flag: tokio::sync::watch::Receiver<bool>) {
    if flag.wait_for(|failed| *failed).await.is_err() {
        std::future::pending::<()>().await;
    }
}
