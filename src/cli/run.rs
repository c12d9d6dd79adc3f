//! `credchain run`: placeholder until the ETL flow lands.

use std::path::PathBuf;

use clap::Args;

use super::{CmdResult, Context};
use crate::exit::{Exit, Failure};

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
pub async fn run(_ctx: &Context, _args: RunArgs) -> CmdResult {
    Err(Failure::msg(Exit::Usage, "`run` is not built yet"))
}
