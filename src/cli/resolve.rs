//! `credchain resolve`: where each key comes from; never the value.

use clap::Args;
use serde::Serialize;

use super::{print_json, CmdResult, Context};
use crate::chain::ResolveError;
use crate::exit::{error_chain, Exit};

/// Flags of `credchain resolve`.
#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// Keys to look up [default: every key the config declares].
    #[arg(value_name = "KEY")]
    pub keys: Vec<String>,
    /// Print one JSON document on stdout: [{"key", "source", "location", "version", "error"}].
    #[arg(long)]
    pub json: bool,
}

/// One key's row.
#[derive(Debug, Serialize)]
pub struct Row {
    /// The key.
    pub key: String,
    /// The source that holds it, or `null`.
    pub source: Option<String>,
    /// Where inside the source.
    pub location: Option<String>,
    /// The store's version.
    pub version: Option<String>,
    /// Why it did not resolve.
    pub error: Option<RowError>,
}

/// Why a key did not resolve.
#[derive(Debug, Serialize)]
pub struct RowError {
    /// `not_found`, `denied`, `unavailable`, `invalid`, `not_configured`.
    pub kind: String,
    /// The whole message, without any value.
    pub message: String,
}

/// Runs the command.
pub async fn run(ctx: &Context, args: ResolveArgs) -> CmdResult {
    let explicit = !args.keys.is_empty();
    let keys: Vec<String> = if explicit {
        args.keys
    } else {
        ctx.config.keys.iter().map(|k| k.name.clone()).collect()
    };
    let mut rows = Vec::with_capacity(keys.len());
    let mut exit = Exit::Success;
    for key in keys {
        let outcome = ctx.config.chain.resolve(&key).await;
        let must_resolve = explicit || ctx.config.is_required(&key);
        exit = exit.max(row_exit(&outcome, must_resolve));
        rows.push(row(key, outcome));
    }
    if args.json {
        print_json(&rows)?;
    } else {
        print_table(&rows);
    }
    Ok(exit)
}

fn row_exit(outcome: &Result<crate::chain::Found, ResolveError>, must_resolve: bool) -> Exit {
    match outcome {
        Ok(_) => Exit::Success,
        Err(ResolveError::NotFound { .. }) if must_resolve => Exit::KeyNotFound,
        Err(ResolveError::NotFound { .. }) => Exit::Success,
        Err(error) => error
            .kind()
            .map_or(Exit::WorkFailed, Exit::for_source_error),
    }
}

fn row(key: String, outcome: Result<crate::chain::Found, ResolveError>) -> Row {
    match outcome {
        Ok(found) => {
            let p = found.resolved.provenance;
            Row {
                key,
                source: Some(p.source),
                location: Some(p.location),
                version: p.version,
                error: None,
            }
        }
        Err(error) => Row {
            key,
            source: None,
            location: None,
            version: None,
            error: Some(RowError {
                kind: error
                    .kind()
                    .map_or("not_found".to_string(), |k| format!("{k:?}").to_lowercase()),
                message: error_chain(&error),
            }),
        },
    }
}

fn print_table(rows: &[Row]) {
    let width = rows.iter().map(|r| r.key.len()).max().unwrap_or(3).max(3);
    for r in rows {
        match (&r.source, &r.error) {
            (Some(source), _) => {
                let version = r
                    .version
                    .as_ref()
                    .map(|v| format!("  version {v}"))
                    .unwrap_or_default();
                println!(
                    "{:width$}  {source}  {}{version}",
                    r.key,
                    r.location.as_deref().unwrap_or("")
                );
            }
            (None, Some(error)) => println!("{:width$}  -  {}", r.key, error.message),
            (None, None) => println!("{:width$}  -", r.key),
        }
    }
}
