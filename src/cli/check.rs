//! `credchain check`: placeholder until the Prefect client lands.

use clap::Args;

use super::{CmdResult, Context};
use crate::exit::{Exit, Failure};

/// Flags of `credchain check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also prove write access with a harmless idempotent write (upsert of flow main-etl).
    #[arg(long)]
    pub write: bool,
}

/// Runs the command.
pub async fn run(_ctx: &Context, _args: CheckArgs) -> CmdResult {
    Err(Failure::msg(Exit::Usage, "`check` is not built yet"))
}
