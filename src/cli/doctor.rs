//! `credchain doctor`: every source in the chain, in order: configured or not, reachable or not,
//! which keys it holds (names only), and what to fix.

use clap::Args;
use credchain_core::ErrorKind;
use serde::Serialize;

use super::{print_json, CmdResult, Context};
use crate::chain::Link;
use crate::exit::{error_chain, Exit};

/// Flags of `credchain doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The whole report.
#[derive(Debug, Serialize)]
struct Report {
    config: Option<String>,
    sources: Vec<SourceReport>,
    pipeline: Option<PipelineReport>,
    warnings: Vec<String>,
    ok: bool,
}

/// Whether the config's `[pipeline]` table is valid.
#[derive(Debug, Serialize)]
struct PipelineReport {
    ok: bool,
    error: Option<String>,
}

/// One source's state.
#[derive(Debug, Serialize)]
struct SourceReport {
    name: String,
    optional: bool,
    configured: bool,
    reachable: Option<bool>,
    details: Vec<String>,
    keys: Vec<String>,
    warnings: Vec<String>,
    error: Option<Problem>,
}

#[derive(Debug, Serialize)]
struct Problem {
    kind: ErrorKind,
    message: String,
}

/// Runs the command.
pub async fn run(ctx: &Context, args: DoctorArgs) -> CmdResult {
    let mut exit = Exit::Success;
    let mut sources = Vec::new();
    for link in ctx.config.chain.links() {
        let report = inspect(ctx, link).await;
        if let Some(problem) = &report.error {
            if !report.optional && problem.kind != ErrorKind::NotConfigured {
                exit = exit.max(Exit::for_source_error(problem.kind));
            }
        }
        sources.push(report);
    }
    let warnings = global_warnings(ctx, &sources);
    let pipeline = check_pipeline(ctx);
    if pipeline.as_ref().is_some_and(|p| !p.ok) {
        exit = exit.max(Exit::Usage);
    }
    let report = Report {
        config: ctx.config.path.as_ref().map(|p| p.display().to_string()),
        ok: exit == Exit::Success,
        sources,
        pipeline,
        warnings,
    };
    if args.json {
        print_json(&report)?;
    } else {
        print_human(&report);
    }
    Ok(exit)
}

/// Parses the config's `[pipeline]` table the way `credchain run` does, when there is one.
fn check_pipeline(ctx: &Context) -> Option<PipelineReport> {
    let section = ctx.config.pipeline.as_ref()?;
    let parsed = crate::etl::PipelineConfig::from_table(
        section.table.clone(),
        section.path.as_deref(),
        section.line,
    );
    Some(PipelineReport {
        ok: parsed.is_ok(),
        error: parsed.err().map(|e| error_chain(&e)),
    })
}

async fn inspect(ctx: &Context, link: &Link) -> SourceReport {
    let mut report = SourceReport {
        name: link.settings.name.clone(),
        optional: link.settings.optional,
        configured: true,
        reachable: None,
        details: Vec::new(),
        keys: Vec::new(),
        warnings: Vec::new(),
        error: None,
    };
    match link.source.diagnose().await {
        Ok(diagnosis) => {
            report.details = diagnosis.details;
            report.warnings = diagnosis.warnings;
        }
        Err(error) => {
            report.configured = error.kind() != ErrorKind::NotConfigured;
            report.reachable = (error.kind() == ErrorKind::Unavailable).then_some(false);
            report.error = Some(Problem {
                kind: error.kind(),
                message: error_chain(&error),
            });
            return report;
        }
    }
    // Which declared keys it holds: names only, the values are dropped at once.
    for spec in &ctx.config.keys {
        match link.source.fetch(&spec.name).await {
            Ok(Some(_)) => report.keys.push(spec.name.clone()),
            Ok(None) => {}
            Err(error) if error.kind() == ErrorKind::NotConfigured => {
                report.configured = false;
                report.error = Some(Problem {
                    kind: error.kind(),
                    message: error_chain(&error),
                });
                break;
            }
            Err(error) => {
                report.reachable = Some(error.kind() != ErrorKind::Unavailable);
                report.error = Some(Problem {
                    kind: error.kind(),
                    message: format!("{}: {}", spec.name, error_chain(&error)),
                });
                break;
            }
        }
    }
    if report.error.is_none() {
        report.reachable = Some(true);
    }
    report
}

fn global_warnings(ctx: &Context, sources: &[SourceReport]) -> Vec<String> {
    let mut warnings = Vec::new();
    let holds = |key: &str| sources.iter().any(|s| s.keys.iter().any(|k| k == key));
    // A `.env` holding both already warns about it, in the same words.
    let source_warned = sources.iter().any(|s| {
        s.warnings
            .iter()
            .any(|w| w.contains("PREFECT_API_KEY") && w.contains("PREFECT_API_AUTH_STRING"))
    });
    if holds("PREFECT_API_KEY") && holds("PREFECT_API_AUTH_STRING") && !source_warned {
        warnings.push(
            "both PREFECT_API_KEY and PREFECT_API_AUTH_STRING resolve; the Prefect client \
             refuses to run (exit 2) until one is removed (a bearer key is for Prefect Cloud or \
             a gateway, the auth string for a server started with PREFECT_SERVER_API_AUTH_STRING)"
                .to_string(),
        );
    }
    for spec in &ctx.config.keys {
        if ctx.config.is_required(&spec.name) && !holds(&spec.name) {
            warnings.push(format!("required key {} is held by no source", spec.name));
        }
    }
    warnings
}

fn print_human(report: &Report) {
    match &report.config {
        Some(path) => println!("config: {path}"),
        None => println!("config: none (development chain: environment, then .env)"),
    }
    for (i, s) in report.sources.iter().enumerate() {
        let state = match (&s.error, s.configured) {
            (None, _) => "ok".to_string(),
            (Some(_), false) => "not configured".to_string(),
            (Some(p), true) => p.kind.label().to_string(),
        };
        let optional = if s.optional { " (optional)" } else { "" };
        println!("{}. {}{optional}: {state}", i + 1, s.name);
        for d in &s.details {
            println!("   {d}");
        }
        if let Some(p) = &s.error {
            println!("   {}", p.message);
        }
        if s.error.is_none() {
            let keys = if s.keys.is_empty() {
                "none of the declared keys".to_string()
            } else {
                s.keys.join(", ")
            };
            println!("   holds: {keys}");
        }
        for w in &s.warnings {
            println!("   warning: {w}");
        }
    }
    match &report.pipeline {
        Some(PipelineReport { error: Some(e), .. }) => println!("pipeline: error: {e}"),
        Some(_) => println!("pipeline: ok"),
        None => {}
    }
    for w in &report.warnings {
        println!("warning: {w}");
    }
}
