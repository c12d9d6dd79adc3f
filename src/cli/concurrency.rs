//! `credchain concurrency setup` and `credchain concurrency list`.

use clap::{Args, Subcommand};

use super::{prefect_client, print_json, CmdResult, Context};
use crate::concurrency::{self, Change};
use crate::credentials::Credentials;
use crate::exit::{Exit, Failure};

/// `credchain concurrency` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConcurrencyCommand {
    /// Make the server's limits match the config: each is created, updated or unchanged.
    #[command(
        after_help = "Examples:\n  credchain concurrency setup --dry-run\n  credchain concurrency setup --json\n\n\
Limits the config does not list are left alone and reported."
    )]
    Setup(SetupArgs),
    /// List the server's concurrency limits.
    #[command(after_help = "Example:\n  credchain concurrency list --json")]
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
pub async fn run(ctx: &Context, command: ConcurrencyCommand) -> CmdResult {
    if matches!(command, ConcurrencyCommand::Setup(_)) {
        concurrency::check(&ctx.config.concurrency).map_err(|e| {
            Failure::new(Exit::Usage, e)
                .hint("fix [[concurrency.tags]] / [[concurrency.global]]; nothing was changed")
        })?;
    }
    let client = prefect_client(ctx, Credentials::from_config(&ctx.config)).await?;
    match command {
        ConcurrencyCommand::Setup(args) => {
            let report = concurrency::setup(&client, &ctx.config.concurrency, args.dry_run).await?;
            if args.json {
                print_json(&report)?;
                return Ok(Exit::Success);
            }
            if report.limits.is_empty() {
                println!("the config declares no concurrency limits ([[concurrency.tags]], [[concurrency.global]])");
            }
            let verb = |change: Change| match (change, report.dry_run) {
                (Change::Created, false) => "created",
                (Change::Created, true) => "would create",
                (Change::Updated, false) => "updated",
                (Change::Updated, true) => "would update",
                (Change::Unchanged, _) => "unchanged",
            };
            for limit in &report.limits {
                let previous = limit
                    .previous
                    .map(|p| format!(" (was {p})"))
                    .unwrap_or_default();
                println!(
                    "{} {} {}: limit {}{previous}",
                    verb(limit.change),
                    limit.kind,
                    limit.name,
                    limit.limit
                );
            }
            for name in &report.not_in_config {
                println!("not in config (left alone): {name}");
            }
        }
        ConcurrencyCommand::List(args) => {
            let limits = concurrency::list(&client).await?;
            if args.json {
                print_json(&limits)?;
                return Ok(Exit::Success);
            }
            if limits.is_empty() {
                println!("no concurrency limits on {}", client.api_url());
            }
            for l in &limits {
                let decay = if l.slot_decay_per_second > 0.0 {
                    format!(", decay {}/s", l.slot_decay_per_second)
                } else {
                    String::new()
                };
                let active = if l.active { "" } else { " (inactive)" };
                println!(
                    "{}: {} of {} slots in use{decay}{active}",
                    l.name, l.active_slots, l.limit
                );
            }
        }
    }
    Ok(Exit::Success)
}
