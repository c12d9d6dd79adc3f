//! `credchain check`: connect and authenticate to Prefect, and say precisely what is wrong.
//!
//! Steps, each printed as it completes; the first failure stops the check:
//! 1. resolve `PREFECT_API_URL`, `PREFECT_API_KEY` and `PREFECT_API_AUTH_STRING` and show where
//!    each came from (never a value), then decide the auth mode;
//! 2. `GET /health`: the server is reachable and the URL points at its API;
//! 3. `POST /flows/filter {"limit":1}`: the credential is accepted for a read;
//! 4. `GET /admin/version` and `POST /flows/count`: the server version and the flows visible;
//! 5. with `--write`, `POST /flows/ {"name":"main-etl"}`, an idempotent upsert: write access.

use std::collections::BTreeMap;

use clap::Args;
use credchain_core::{redact_url, Provenance};
use serde::Serialize;

use super::{print_json, CmdResult, Context};
use crate::credentials::{CredError, Credentials};
use crate::exit::{error_chain, Exit, Failure};
use crate::prefect::{
    AuthMode, PrefectClient, RequestError, SetupError, API_KEY, API_URL, AUTH_STRING,
};

/// How long `check` waits for a rejected key to change in its source.
const CHECK_REJECTION_BACKOFF: std::time::Duration = std::time::Duration::from_secs(3);
/// The flow `--write` upserts; the ETL flow's own name, so the write leaves nothing new behind.
const WRITE_PROBE_FLOW: &str = "main-etl";
/// The keys whose provenance the check reports.
const CHECKED_KEYS: [&str; 3] = [API_URL, API_KEY, AUTH_STRING];

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

/// The `--json` document.
#[derive(Debug, Default, Serialize)]
struct Report {
    ok: bool,
    api_url: Option<String>,
    auth: Option<AuthMode>,
    sources: BTreeMap<&'static str, Option<Provenance>>,
    server_version: Option<String>,
    flows_visible: Option<u64>,
    write: Option<bool>,
    error: Option<Problem>,
}

/// What failed, for `--json` and for the exit.
#[derive(Debug, Serialize)]
struct Problem {
    kind: &'static str,
    message: String,
    hint: String,
    /// The exit code, under the name every command's `--json` error uses.
    #[serde(rename = "exit")]
    exit_code: u8,
    #[serde(skip)]
    exit: Exit,
}

impl Problem {
    fn new(
        kind: &'static str,
        exit: Exit,
        error: &(dyn std::error::Error + 'static),
        hint: String,
    ) -> Self {
        Problem {
            kind,
            message: error_chain(error),
            hint,
            exit_code: exit.code(),
            exit,
        }
    }
}

impl From<CredError> for Problem {
    fn from(error: CredError) -> Self {
        Problem::new("credentials", error.exit(), &error, error.hint())
    }
}

impl From<SetupError> for Problem {
    fn from(error: SetupError) -> Self {
        Problem::new(error.kind(), error.exit(), &error, error.hint())
    }
}

impl From<RequestError> for Problem {
    fn from(error: RequestError) -> Self {
        Problem::new(error.kind(), error.exit(), &error, error.hint())
    }
}

/// Prints human lines unless the output is JSON.
struct Out {
    json: bool,
}

impl Out {
    fn line(&self, label: &str, text: impl std::fmt::Display) {
        if !self.json {
            println!("{label:<24} {text}");
        }
    }
}

/// Runs the command.
pub async fn run(ctx: &Context, args: CheckArgs) -> CmdResult {
    let out = Out { json: args.json };
    let mut report = Report::default();
    let outcome = diagnose(ctx, &args, &out, &mut report).await;
    report.ok = outcome.is_ok();
    report.error = outcome.err();
    if args.json {
        print_json(&report)?;
        return Ok(report.error.map_or(Exit::Success, |p| p.exit));
    }
    match report.error {
        None => {
            let url = report.api_url.unwrap_or_default();
            println!("ok: credchain can use the Prefect API at {url}");
            Ok(Exit::Success)
        }
        Some(problem) => Err(Failure::msg(problem.exit, problem.message).hint(problem.hint)),
    }
}

async fn diagnose(
    ctx: &Context,
    args: &CheckArgs,
    out: &Out,
    report: &mut Report,
) -> Result<(), Problem> {
    // A diagnosis should not sit out the whole rotation backoff that a long-running process
    // uses: one or two re-reads tell whether the source has a different key.
    let backoff = ctx
        .config
        .prefect
        .rejection_backoff_total
        .min(CHECK_REJECTION_BACKOFF);
    let creds = Credentials::with_rejection_backoff(ctx.config.chain.clone(), backoff);
    resolve_keys(&creds, out, report).await?;
    let client = super::prefect_client(ctx, creds).await?;
    report.api_url = Some(client.api_url().to_string());
    report.auth = Some(client.auth_mode());
    out.line("auth", client.auth_mode().label());

    client.health().await?;
    out.line("reachable", "yes (GET /health)");
    client.read_flows(1).await?;
    out.line("authenticated", "yes (POST /flows/filter)");
    let version = client.server_version().await?;
    out.line("server version", &version);
    report.server_version = Some(version);
    let visible = client.count_flows().await?;
    out.line("flows visible", visible);
    report.flows_visible = Some(visible);
    if args.write {
        write_probe(&client, out, report).await?;
    }
    Ok(())
}

/// Resolves the three keys and reports where each came from, never its value.
async fn resolve_keys(creds: &Credentials, out: &Out, report: &mut Report) -> Result<(), Problem> {
    for key in CHECKED_KEYS {
        let current = creds.get(key).await?;
        let provenance = current.as_ref().map(|c| c.provenance().clone());
        match (&current, key) {
            (Some(url), API_URL) => {
                let shown = redact_url(url.value().expose());
                out.line(key, format!("{shown}  from {}", url.provenance()));
                report.api_url = Some(shown);
            }
            (Some(c), _) => out.line(key, format!("set, from {}", c.provenance())),
            (None, _) => out.line(key, "not set"),
        }
        report.sources.insert(key, provenance);
    }
    Ok(())
}

async fn write_probe(
    client: &PrefectClient,
    out: &Out,
    report: &mut Report,
) -> Result<(), Problem> {
    report.write = Some(false);
    let flow = client.create_flow(WRITE_PROBE_FLOW).await?;
    out.line(
        "write access",
        format!("yes (POST /flows/ upserted flow {})", flow.name),
    );
    report.write = Some(true);
    Ok(())
}
