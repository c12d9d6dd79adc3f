//! `credchain concurrency`: placeholder until concurrency setup lands.

use clap::{Args, Subcommand};

use super::{CmdResult, Context};
use crate::exit::{Exit, Failure};

/// `credchain concurrency` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConcurrencyCommand {
    /// Make the server's limits match the config: created, updated or unchanged.
    Setup(SetupArgs),
    /// List the server's concurrency limits.
    List(ListArgs),
}

/// Flags of `concurrency setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Print what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `concurrency list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(_ctx: &Context, _command: ConcurrencyCommand) -> CmdResult {
    Err(Failure::msg(Exit::Usage, "`concurrency` is not built yet"))
}
