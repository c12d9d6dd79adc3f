//! `credchain serve`: placeholder until the runner lands.

use clap::Args;

use super::{CmdResult, Context};
use crate::exit::{Exit, Failure};

/// Flags of `credchain serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// How many flow runs execute at once in this process [default: the config's, else 5].
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// Runs the command.
pub async fn run(_ctx: &Context, _args: ServeArgs) -> CmdResult {
    Err(Failure::msg(Exit::Usage, "`serve` is not built yet"))
}
