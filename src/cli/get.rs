//! `credchain get`: one value on stdout, for scripts.

use clap::Args;

use super::{CmdResult, Context};
use crate::exit::Exit;

/// Flags of `credchain get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The key to print.
    #[arg(value_name = "KEY")]
    pub key: String,
}

/// Runs the command: the value alone, then a newline. Exit 3 when no source has it.
pub async fn run(ctx: &Context, args: GetArgs) -> CmdResult {
    let found = ctx.config.chain.resolve(&args.key).await?;
    tracing::info!(key = %args.key, from = %found.resolved.provenance, "resolved");
    println!("{}", found.resolved.value.expose());
    Ok(Exit::Success)
}
