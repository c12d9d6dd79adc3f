//! `credchain serve`: the ETL flow as the Prefect deployment `main-etl/etl-job`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use futures::FutureExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use super::run::{build_pipeline, flow_failure, pipeline_config};
use super::{prefect_client, CmdResult, Context};
use crate::credentials::Credentials;
use crate::exit::{Exit, Failure};
use crate::flow::{self, FlowError, ServeOptions};
use crate::prefect::RequestError;

/// Flags of `credchain serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// How many flow runs execute at once in this process [default: [serve] limit, else 5].
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// A pipeline file with a [pipeline] table [default: the config's, else the embedded sample].
    #[arg(long, value_name = "FILE")]
    pub pipeline: Option<PathBuf>,
}

/// Runs the command until SIGINT or SIGTERM.
pub async fn run(ctx: &Context, args: ServeArgs) -> CmdResult {
    let creds = Credentials::from_config(&ctx.config);
    let config = pipeline_config(ctx, args.pipeline.as_deref())?;
    // Build once up front so a bad pipeline fails now, not at the first run.
    build_pipeline(&creds, config.clone()).await?;
    let client = prefect_client(ctx, creds.clone()).await?;
    let factory_creds = creds.clone();
    let factory: flow::PipelineFactory = Arc::new(move || {
        let (creds, config) = (factory_creds.clone(), config.clone());
        async move {
            build_pipeline(&creds, config)
                .await
                .map_err(|failure| FlowError::Orchestration {
                    run: "-".into(),
                    message: failure.chain_text(),
                })
        }
        .boxed()
    });
    let options = ServeOptions {
        limit: args.limit.unwrap_or(ctx.config.serve.limit),
        config: ctx.config.serve.clone(),
    };
    check_serve_config(ctx, options.limit)?;
    let stop = stop_on_signal(options.config.grace_period)?;
    let served = flow::serve(client, options, factory, stop)
        .await
        .map_err(registration_failure)?;
    eprintln!(
        "stopped: {} flow run(s) completed, {} failed, {} cancelled",
        served.completed, served.failed, served.cancelled
    );
    Ok(Exit::Success)
}

/// Checks the `[serve]` settings that the server would otherwise refuse with a bare 422.
fn check_serve_config(ctx: &Context, limit: usize) -> Result<(), Failure> {
    let serve = &ctx.config.serve;
    if serve.cron.is_some() && serve.interval.is_some() {
        return Err(
            Failure::msg(Exit::Usage, "[serve] sets both `cron` and `interval`")
                .hint("keep one schedule: `cron = \"0 * * * *\"` or `interval = \"1h\"`"),
        );
    }
    if limit == 0 {
        return Err(Failure::msg(
            Exit::Usage,
            "the run limit is 0, so no run could ever execute",
        )
        .hint("use --limit 1 or more, or [serve] limit"));
    }
    if serve.interval.is_some_and(|i| i.is_zero()) || serve.poll_interval.is_zero() {
        return Err(Failure::msg(
            Exit::Usage,
            "[serve] intervals must be longer than 0 s",
        ));
    }
    Ok(())
}

/// A failure to register the deployment: a 422 means the server refused the `[serve]` schedule.
fn registration_failure(error: FlowError) -> Failure {
    let refused = matches!(
        &error,
        FlowError::Request(RequestError::Status { status: 422, .. })
    );
    let failure = flow_failure(error);
    if refused {
        Failure {
            exit: Exit::Usage,
            ..failure
        }
        .hint("the server refused the deployment: check [serve] cron, interval and timezone")
    } else {
        failure
    }
}

/// A flag that turns true on the first SIGINT or SIGTERM. Later signals only say what serve
/// is waiting for: a run is never cut off before its grace period.
fn stop_on_signal(grace: std::time::Duration) -> Result<watch::Receiver<bool>, Failure> {
    let io = |e: std::io::Error| Failure::new(Exit::WorkFailed, e);
    let mut interrupt = signal(SignalKind::interrupt()).map_err(io)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(io)?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut first = true;
        loop {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            if first {
                eprintln!("received a stop signal: no new runs are taken");
                let _ = tx.send(true);
                first = false;
            } else {
                eprintln!(
                    "already stopping: running flows get up to {} (grace_period) to finish, \
                     then they are cancelled",
                    humantime::format_duration(grace)
                );
            }
        }
    });
    Ok(rx)
}
