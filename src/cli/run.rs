//! `credchain run`: the ETL flow once. Reported to Prefect as a flow run when
//! `PREFECT_API_URL` resolves; run locally, with a note saying so, when it does not.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::{prefect_client, print_json, CmdResult, Context};
use crate::credentials::Credentials;
use crate::etl::observer::TerminalObserver;
use crate::etl::target::TargetError;
use crate::etl::{sample, Pipeline, PipelineConfig, ResolvedTarget};
use crate::exit::{Exit, Failure};
use crate::flow::{self, FlowError};
use crate::prefect::SetupError;

/// Flags of `credchain run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A pipeline file with a [pipeline] table [default: the config's, else the embedded sample].
    #[arg(long, value_name = "FILE")]
    pub pipeline: Option<PathBuf>,
    /// Print the summary as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(ctx: &Context, args: RunArgs) -> CmdResult {
    let creds = Credentials::from_config(&ctx.config);
    let config = pipeline_config(ctx, args.pipeline.as_deref())?;
    let pipeline = build_pipeline(&creds, config).await?;
    let observer = if args.json {
        TerminalObserver::without_bar()
    } else {
        TerminalObserver::new()
    };
    let interrupted = interrupt()?;
    tokio::pin!(interrupted);
    // A signal before the run starts (a slow or silent server) ends the command at once.
    let client = tokio::select! {
        client = prefect_client(ctx, creds) => client,
        code = &mut interrupted => return Err(interruption(code)),
    };
    let (flow_run_id, result) = match client {
        Ok(client) => {
            eprintln!("reporting to Prefect at {}", client.api_url());
            let id = tokio::select! {
                id = flow::create_flow_run(&client) => id.map_err(flow_failure)?,
                code = &mut interrupted => return Err(interruption(code)),
            };
            let result = {
                let mut work = Box::pin(flow::execute(
                    &client,
                    &id,
                    &pipeline,
                    &observer,
                    flow::RUN_PATIENCE,
                ));
                tokio::select! {
                    result = &mut work => result,
                    code = &mut interrupted => {
                        if pipeline.stop() {
                            drop(work);
                            let _ = flow::cancel(&client, &id, INTERRUPTED).await;
                            return Err(interruption(code));
                        }
                        eprintln!("{TOO_LATE}");
                        work.await
                    }
                }
            };
            (Some(id), result)
        }
        Err(SetupError::FindApiUrl) => {
            eprintln!(
                "note: PREFECT_API_URL is not set in any source, so nothing is reported to Prefect; \
                 the pipeline runs locally"
            );
            let mut work = Box::pin(pipeline.run_all(&observer));
            let result = tokio::select! {
                result = &mut work => result,
                code = &mut interrupted => {
                    if pipeline.stop() {
                        drop(work);
                        return Err(interruption(code));
                    }
                    eprintln!("{TOO_LATE}");
                    work.await
                }
            };
            (None, result.map_err(FlowError::from))
        }
        Err(error) => return Err(error.into()),
    };
    let summary = result.map_err(flow_failure)?;
    if args.json {
        // A summary means the run succeeded; with Prefect, its flow run is COMPLETED.
        let state = flow_run_id.as_ref().map(|_| "COMPLETED");
        print_json(&json!({
            "flow_run_id": flow_run_id,
            "flow_run_state": state,
            "summary": summary,
        }))?;
    } else {
        println!("{summary}");
        if let Some(id) = flow_run_id {
            println!("flow run {id} COMPLETED");
        }
    }
    Ok(Exit::Success)
}

/// Said when a signal comes while the load commits: the run can only finish.
const TOO_LATE: &str =
    "interrupted while the load was committing: the rows are in; finishing the run";

/// The message on a flow run the user interrupted.
const INTERRUPTED: &str = "interrupted by SIGINT or SIGTERM; the load was rolled back";

/// Resolves on the first SIGINT or SIGTERM with the exit code the shell convention gives it
/// (128 + the signal: 130 or 143). Dropping the pipeline's future then stops its workers
/// before they commit, and removes their temporary files.
fn interrupt() -> Result<impl std::future::Future<Output = u8>, Failure> {
    use tokio::signal::unix::{signal, SignalKind};
    let io = |e: std::io::Error| Failure::new(Exit::WorkFailed, e);
    let mut int = signal(SignalKind::interrupt()).map_err(io)?;
    let mut term = signal(SignalKind::terminate()).map_err(io)?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => 130,
            _ = term.recv() => 143,
        }
    })
}

fn interruption(code: u8) -> Failure {
    Failure::msg(
        Exit::Passthrough(code),
        "interrupted: nothing was loaded (the load was rolled back)",
    )
}

/// The pipeline to run: `--pipeline FILE`, else the config's `[pipeline]`, else the sample.
pub fn pipeline_config(ctx: &Context, file: Option<&Path>) -> Result<PipelineConfig, Failure> {
    let config = match (file, &ctx.config.pipeline) {
        (Some(path), _) => PipelineConfig::from_file(path),
        (None, Some(section)) => {
            PipelineConfig::from_table(section.table.clone(), section.path.as_deref(), section.line)
        }
        (None, None) => return Ok(sample::default_pipeline()),
    };
    config.map_err(|e| {
        Failure::new(Exit::Usage, e).hint("fix the [pipeline] table; see docs/pipeline.md")
    })
}

/// Resolves the keys the pipeline's target needs and binds the pipeline to it.
pub async fn build_pipeline(
    creds: &Credentials,
    config: PipelineConfig,
) -> Result<Pipeline, Failure> {
    let mut values = Vec::new();
    for key in config.required_keys() {
        let current = creds.get(key).await?;
        values.push((key.to_string(), current.map(|c| c.value().clone())));
    }
    let target = ResolvedTarget::resolve(&config, |key| {
        values
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.clone())
    })
    .map_err(target_failure)?;
    Pipeline::new(config, target).map_err(|e| flow_failure(FlowError::from(e)))
}

/// Why the target could not be resolved: a key found in no source (exit 3, like any command
/// that needs a key), else a configuration error.
fn target_failure(error: TargetError) -> Failure {
    match &error {
        TargetError::MissingKey { key, field } => {
            let hint = format!(
                "set {key} in the environment or .env, or add a source that holds it to the \
                 config (pipeline.{field} names it)"
            );
            Failure::new(Exit::KeyNotFound, error).hint(hint)
        }
        _ => {
            Failure::new(Exit::Usage, error).hint("fix the [pipeline] table; see docs/pipeline.md")
        }
    }
}

/// A failed run's exit code and message; the hint names what to fix when the pipeline's error
/// knows it (a missing database or schema), else the kind of failure's.
pub fn flow_failure(error: FlowError) -> Failure {
    let hint = error.hint();
    Failure::new(error.exit(), error).hint(hint)
}
