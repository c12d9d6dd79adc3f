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
    let stop = stop_on_signal()?;
    let (completed, failed) = flow::serve(client, options, factory, stop)
        .await
        .map_err(flow_failure)?;
    eprintln!("stopped: {completed} flow run(s) completed, {failed} failed");
    Ok(Exit::Success)
}

/// A flag that turns true on the first SIGINT or SIGTERM.
fn stop_on_signal() -> Result<watch::Receiver<bool>, Failure> {
    let io = |e: std::io::Error| Failure::new(Exit::WorkFailed, e);
    let mut interrupt = signal(SignalKind::interrupt()).map_err(io)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(io)?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("received a stop signal: no new runs are taken");
        let _ = tx.send(true);
    });
    Ok(rx)
}
