//! The runner behind `credchain serve`: registers the deployment `main-etl/etl-job`, polls for
//! runs that are due, claims each by proposing PENDING (another runner may win it; then it is
//! skipped), executes up to `limit` at once, and on SIGINT or SIGTERM stops polling, lets
//! running flows finish within the grace period, and marks the rest CANCELLED.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::json;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::models::{Created, FlowRun, StateCreate, StateType, Verdict};
use super::states::{self, RunKind};
use super::{execute, FlowError, DEPLOYMENT_NAME, FLOW_NAME};
use crate::config::ServeConfig;
use crate::etl::observer::TerminalObserver;
use crate::etl::Pipeline;
use crate::exit::error_chain;
use crate::prefect::PrefectClient;

/// The runs this process executes, by flow run id, with their pipeline once it is built.
type Active = Arc<Mutex<HashMap<String, Option<Pipeline>>>>;

/// How far ahead of its start time a run is fetched.
const PREFETCH: Duration = Duration::from_secs(10);
/// Share of the poll interval added or removed at random.
const POLL_JITTER: f64 = 0.3;
/// How long a served run keeps trying to record its final state while the server is away.
const SERVE_PATIENCE: Duration = Duration::from_secs(600);
/// How often the runner checks that its deployment still exists.
const DEPLOYMENT_CHECK: Duration = Duration::from_secs(30);
/// The message on runs cancelled because the runner stopped.
const SHUTDOWN_MESSAGE: &str = "credchain serve stopped before this run finished";

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The `[serve]` settings.
    pub config: ServeConfig,
    /// Runs executing at once in this process.
    pub limit: usize,
}

/// Something that builds the pipeline for each run, so every run resolves its target anew
/// (rotated database credentials included).
pub type PipelineFactory =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<Pipeline, FlowError>> + Send + Sync>;

/// What a serve session did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    /// Runs that completed.
    pub completed: u64,
    /// Runs that failed.
    pub failed: u64,
    /// Runs cancelled because the grace period ran out.
    pub cancelled: u64,
}

/// Serves until `stop` turns true.
pub async fn serve(
    client: PrefectClient,
    options: ServeOptions,
    pipeline: PipelineFactory,
    mut stop: watch::Receiver<bool>,
) -> Result<Served, FlowError> {
    // A stop while the deployment is being registered (say, a rejected key being waited out)
    // ends serve at once: nothing has been taken yet.
    let mut deployment = tokio::select! {
        registered = register(&client, &options.config) => registered?,
        () = stopped(&mut stop) => return Ok(Served::default()),
    };
    let mut checked = tokio::time::Instant::now();
    info!(deployment = %deployment, "serving {FLOW_NAME}/{DEPLOYMENT_NAME}");
    eprintln!(
        "serving deployment {FLOW_NAME}/{DEPLOYMENT_NAME} ({deployment}); press Ctrl-C to stop"
    );
    let slots = Arc::new(Semaphore::new(options.limit.max(1)));
    let active: Active = Arc::default();
    let tally = Arc::new(Mutex::new((0u64, 0u64)));
    let mut running = JoinSet::new();
    loop {
        if checked.elapsed() >= DEPLOYMENT_CHECK {
            checked = tokio::time::Instant::now();
            let check = ensure_deployment(&client, &options.config, &mut deployment);
            let checked = tokio::select! {
                checked = check => checked,
                () = stopped(&mut stop) => break,
            };
            if let Err(error) = checked {
                warn!(error = %error_chain(&error), "cannot check the deployment; trying again");
            }
        }
        let polled = poll_once(
            &client,
            &deployment,
            &slots,
            &active,
            &mut running,
            &pipeline,
            &tally,
            &mut stop,
        )
        .await;
        if let Err(error) = polled {
            warn!(error = %error_chain(&error), "polling for scheduled runs failed; trying again");
        }
        while running.try_join_next().is_some() {}
        tokio::select! {
            _ = tokio::time::sleep(jittered(options.config.poll_interval)) => {}
            () = stopped(&mut stop) => break,
        }
    }
    let cancelled = shut_down(&client, options.config.grace_period, running, &active).await;
    let (completed, failed) = *tally.lock().expect("tally lock");
    Ok(Served {
        completed,
        failed,
        cancelled,
    })
}

/// Returns once serve is asked to stop (never, if the sender is gone without asking).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Creates or updates the deployment; returns its id.
async fn register(client: &PrefectClient, config: &ServeConfig) -> Result<String, FlowError> {
    let flow: Created = client
        .post_json("/flows/", &json!({ "name": FLOW_NAME }))
        .await?;
    let mut body = json!({
        "name": DEPLOYMENT_NAME,
        "flow_id": flow.id,
        "paused": false,
        "schedules": schedules(config),
        "work_pool_name": null,
        "work_queue_name": null,
        "entrypoint": "credchain serve",
        "description": "The ETL flow, served by credchain",
        "enforce_parameter_schema": false,
        "tags": ["credchain"],
    });
    if let Some(limit) = config.concurrency_limit {
        body["concurrency_limit"] = json!(limit);
    }
    let deployment: Created = client.post_json("/deployments/", &body).await?;
    Ok(deployment.id)
}

/// Registers the deployment again when it is gone (deleted, or a server started afresh), since
/// polling a deleted deployment just finds no runs, forever.
async fn ensure_deployment(
    client: &PrefectClient,
    config: &ServeConfig,
    deployment: &mut String,
) -> Result<(), FlowError> {
    let path = format!("/deployments/{deployment}");
    let answer = client.send(reqwest::Method::GET, &path, None).await?;
    if answer.status() != reqwest::StatusCode::NOT_FOUND {
        return Ok(());
    }
    warn!(deployment = %deployment, "the deployment is gone from the server; registering it again");
    *deployment = register(client, config).await?;
    eprintln!("registered deployment {FLOW_NAME}/{DEPLOYMENT_NAME} again ({deployment})");
    Ok(())
}

fn schedules(config: &ServeConfig) -> serde_json::Value {
    let mut schedule = match (&config.cron, config.interval) {
        (Some(cron), _) => json!({ "cron": cron }),
        (None, Some(every)) => json!({ "interval": every.as_secs_f64() }),
        (None, None) => return json!([]),
    };
    if let Some(tz) = &config.timezone {
        schedule["timezone"] = json!(tz);
    }
    json!([{ "schedule": schedule, "active": true }])
}

#[allow(clippy::too_many_arguments)]
async fn poll_once(
    client: &PrefectClient,
    deployment: &str,
    slots: &Arc<Semaphore>,
    active: &Active,
    running: &mut JoinSet<()>,
    pipeline: &PipelineFactory,
    tally: &Arc<Mutex<(u64, u64)>>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), FlowError> {
    let free = slots.available_permits();
    if free == 0 || *stop.borrow() {
        return Ok(());
    }
    let before = chrono::Utc::now() + chrono::Duration::from_std(PREFETCH).unwrap_or_default();
    let body = json!({
        "deployment_ids": [deployment],
        "scheduled_before": before.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "limit": free.min(200),
    });
    // The read is given up when serve stops: it may be waiting out a rejected key. A claim is
    // not: once proposed, the run's state must be known.
    let read = client.post_json("/deployments/get_scheduled_flow_runs", &body);
    let runs: Vec<FlowRun> = tokio::select! {
        runs = read => runs?,
        () = stopped(stop) => return Ok(()),
    };
    for run in runs {
        if *stop.borrow() {
            break;
        }
        if active.lock().expect("active lock").contains_key(&run.id) {
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            break;
        };
        if !claim(client, &run.id).await? {
            continue;
        }
        active
            .lock()
            .expect("active lock")
            .insert(run.id.clone(), None);
        let (client, active, pipeline, tally) = (
            client.clone(),
            active.clone(),
            pipeline.clone(),
            tally.clone(),
        );
        running.spawn(async move {
            let ok = execute_claimed(&client, &run.id, &pipeline, &active).await;
            let mut counts = tally.lock().expect("tally lock");
            if ok {
                counts.0 += 1
            } else {
                counts.1 += 1
            }
            drop(counts);
            active.lock().expect("active lock").remove(&run.id);
            drop(permit);
        });
    }
    Ok(())
}

/// Proposes PENDING. False when another runner claimed the run first (ABORT) or the run is no
/// longer waiting.
async fn claim(client: &PrefectClient, run: &str) -> Result<bool, FlowError> {
    let proposal = StateCreate::new(StateType::Pending);
    let result = states::propose(client, RunKind::Flow, run, proposal, false).await?;
    let pending = result
        .state
        .as_ref()
        .is_some_and(|s| s.kind == StateType::Pending);
    let won = result.status == Verdict::Accept && pending;
    if !won {
        info!(flow_run = run, verdict = ?result.status, "run claimed elsewhere; skipping");
    }
    Ok(won)
}

async fn execute_claimed(
    client: &PrefectClient,
    run: &str,
    pipeline: &PipelineFactory,
    active: &Active,
) -> bool {
    info!(flow_run = run, "executing");
    let outcome = match pipeline().await {
        Ok(pipeline) => {
            // Shut-down asks this pipeline's commit gate before it aborts the run.
            if let Some(entry) = active.lock().expect("active lock").get_mut(run) {
                *entry = Some(pipeline.clone());
            }
            let observer = TerminalObserver::without_bar();
            execute(client, run, &pipeline, &observer, SERVE_PATIENCE).await
        }
        Err(error) => {
            let message = error_chain(&error);
            let _ = states::force(client, RunKind::Flow, run, StateType::Failed, &message).await;
            Err(error)
        }
    };
    match outcome {
        Ok(summary) => {
            eprintln!("flow run {run} COMPLETED: {summary}");
            true
        }
        Err(error) => {
            eprintln!("flow run {run} FAILED: {}", error_chain(&error));
            false
        }
    }
}

async fn shut_down(
    client: &PrefectClient,
    grace: Duration,
    mut running: JoinSet<()>,
    active: &Active,
) -> u64 {
    if !running.is_empty() {
        eprintln!(
            "stopping: waiting up to {} s for {} running flow run(s)",
            grace.as_secs(),
            running.len()
        );
    }
    let drained = tokio::time::timeout(grace, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_ok() {
        return 0;
    }
    // Stop every run before its load commits; a run whose commit has begun is let finish, for
    // at most another grace period, so that it is not reported CANCELLED with its rows in.
    let committing: Vec<String> = active
        .lock()
        .expect("active lock")
        .iter()
        .filter(|(_, pipeline)| pipeline.as_ref().is_some_and(|p| !p.stop()))
        .map(|(run, _)| run.clone())
        .collect();
    if !committing.is_empty() {
        eprintln!(
            "stopping: {} flow run(s) are committing their load; letting them finish",
            committing.len()
        );
        let finishing = async {
            while committing.iter().any(|run| {
                active
                    .lock()
                    .expect("active lock")
                    .contains_key(run.as_str())
            }) {
                if running.join_next().await.is_none() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(grace, finishing).await;
    }
    running.abort_all();
    while running.join_next().await.is_some() {}
    let left: Vec<String> = active
        .lock()
        .expect("active lock")
        .drain()
        .map(|(run, _)| run)
        .collect();
    let cancelled = left.len() as u64;
    for run in left {
        warn!(flow_run = %run, "cancelling: the grace period ran out");
        if let Err(error) = super::cancel(client, &run, SHUTDOWN_MESSAGE).await {
            warn!(error = %error, flow_run = %run, "cannot mark the run CANCELLED");
        }
    }
    cancelled
}

fn jittered(base: Duration) -> Duration {
    let factor = rand::rng().random_range((1.0 - POLL_JITTER)..=(1.0 + POLL_JITTER));
    base.mul_f64(factor)
}
