//! Command-line parsing in two stages: raw flags with their help text here, then a validated
//! [`Context`] (the loaded config and the environment) that every command receives.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use credchain_core::{Environment, ProcessEnv};

use crate::config::{Config, ConfigRequest};
use crate::exit::{Exit, Failure};

mod check;
mod concurrency;
mod doctor;
mod exec;
mod get;
mod resolve;
mod run;
mod serve;

/// What every command returns: how to exit, or a failure to print.
pub type CmdResult = Result<Exit, Failure>;

/// Resolve credentials through a chain of secret stores and run Prefect ETL flows with them.
#[derive(Debug, Parser)]
#[command(
    name = "credchain",
    version,
    about,
    long_about = "credchain resolves credentials (the Prefect API URL and key, database URLs, \
anything you declare) through a priority chain of sources: the environment, a .env file, a \
directory of files, HashiCorp Vault, AWS Secrets Manager, Azure Key Vault and Kubernetes \
Secrets. It reports where each value came from and never prints a secret, keeps values fresh \
while they rotate, and uses them to run the ETL flow against a Prefect server.\n\n\
Without a config file the chain is the environment, then ./.env.",
    after_help = "Exit codes: 0 ok, 1 work failed, 2 usage or config error, 3 key not found, \
4 authentication rejected (401), 5 permission denied (403), 6 unreachable.\n\n\
Examples:\n  credchain resolve\n  credchain check\n  credchain run\n  credchain exec -- env"
)]
pub struct Cli {
    /// Flags every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Config file [default: $CREDCHAIN_CONFIG, else ./credchain.toml if it exists].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The .env file of the chain [default: ./.env].
    #[arg(long, global = true, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// More log output on stderr: -v info, -vv debug, -vvv trace. RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show where each key comes from (source, location, version); never the value.
    #[command(
        after_help = "Examples:\n  credchain resolve\n  credchain resolve PREFECT_API_KEY --json"
    )]
    Resolve(resolve::ResolveArgs),
    /// Print one value on stdout, for scripts.
    #[command(after_help = "Example:\n  export DATABASE_URL=\"$(credchain get DATABASE_URL)\"")]
    Get(get::GetArgs),
    /// Run a command with the resolved keys added to its environment.
    #[command(
        after_help = "Examples:\n  credchain exec -- env\n  credchain exec -- python flow.py\n\n\
The child's exit code is passed through; SIGINT and SIGTERM are forwarded to it. A command \
that does not exist exits 127, one that cannot be executed 126.\n\n\
Only the keys the config declares are passed (PREFECT_API_URL, PREFECT_API_KEY and \
PREFECT_API_AUTH_STRING by default, plus the config's [keys]), not the whole .env."
    )]
    Exec(exec::ExecArgs),
    /// Connect and authenticate to Prefect, and say precisely what is wrong if anything is.
    #[command(after_help = "Examples:\n  credchain check\n  credchain check --write --json")]
    Check(check::CheckArgs),
    /// Set up or list Prefect concurrency limits.
    #[command(subcommand)]
    Concurrency(concurrency::ConcurrencyCommand),
    /// Run the ETL flow once (the embedded sample into ./etl.db when nothing is configured).
    #[command(
        after_help = "Examples:\n  credchain run\n  credchain run --pipeline examples/pipeline.toml --json"
    )]
    Run(run::RunArgs),
    /// Serve the ETL flow as the Prefect deployment main-etl/etl-job.
    #[command(after_help = "Example:\n  credchain serve --limit 4\n\n\
SIGINT or SIGTERM stops polling, lets running flows finish within the grace period, marks the \
rest cancelled, and exits 0.")]
    Serve(serve::ServeArgs),
    /// Check every source in the chain and the config, and report problems.
    #[command(after_help = "Examples:\n  credchain doctor\n  credchain doctor --json")]
    Doctor(doctor::DoctorArgs),
}

/// What every command receives: the loaded config and the environment it was read from.
#[derive(Debug, Clone)]
pub struct Context {
    /// The configuration, with the chain of sources.
    pub config: Config,
    /// The process environment.
    pub env: Arc<dyn Environment>,
    /// How many `-v` were given.
    pub verbosity: u8,
}

/// Loads the configuration and runs the command. With `--json`, a failure is also printed as
/// one JSON document on stdout (`main` still prints it for humans on stderr).
pub async fn run(cli: Cli) -> CmdResult {
    let json = wants_json(&cli.command);
    let result = run_command(cli).await;
    if let Err(failure) = &result {
        if json {
            print_failure_json(failure);
        }
    }
    result
}

/// Whether the command was asked for JSON output.
fn wants_json(command: &Command) -> bool {
    match command {
        Command::Resolve(args) => args.json,
        Command::Check(args) => args.json,
        Command::Concurrency(concurrency::ConcurrencyCommand::Setup(args)) => args.json,
        Command::Concurrency(concurrency::ConcurrencyCommand::List(args)) => args.json,
        Command::Run(args) => args.json,
        Command::Doctor(args) => args.json,
        Command::Get(_) | Command::Exec(_) | Command::Serve(_) => false,
    }
}

/// The stable name of an exit code in JSON output.
fn exit_kind(exit: Exit) -> &'static str {
    match exit {
        Exit::Success => "ok",
        Exit::WorkFailed => "work_failed",
        Exit::Usage => "usage",
        Exit::KeyNotFound => "key_not_found",
        Exit::Unauthorized => "unauthorized",
        Exit::Forbidden => "forbidden",
        Exit::Unreachable => "unreachable",
        Exit::Passthrough(_) => "command_failed",
    }
}

/// The `--json` document of a failed command.
fn failure_json(failure: &Failure) -> serde_json::Value {
    serde_json::json!({
        "ok": false,
        "error": {
            "kind": exit_kind(failure.exit),
            "exit": failure.exit.code(),
            "message": failure.chain_text(),
            "hint": failure.hint,
        }
    })
}

fn print_failure_json(failure: &Failure) {
    if let Ok(text) = serde_json::to_string_pretty(&failure_json(failure)) {
        println!("{text}");
    }
}

async fn run_command(cli: Cli) -> CmdResult {
    let env: Arc<dyn Environment> = Arc::new(ProcessEnv);
    let request = ConfigRequest {
        config: cli.global.config.clone(),
        env_file: cli.global.env_file.clone(),
    };
    let config = Config::load(&request, env.clone())?;
    let ctx = Context {
        config,
        env,
        verbosity: cli.global.verbose,
    };
    match cli.command {
        Command::Resolve(args) => resolve::run(&ctx, args).await,
        Command::Get(args) => get::run(&ctx, args).await,
        Command::Exec(args) => exec::run(&ctx, args).await,
        Command::Check(args) => check::run(&ctx, args).await,
        Command::Concurrency(command) => concurrency::run(&ctx, command).await,
        Command::Run(args) => run::run(&ctx, args).await,
        Command::Serve(args) => serve::run(&ctx, args).await,
        Command::Doctor(args) => doctor::run(&ctx, args).await,
    }
}

/// Sends log lines to stderr: warnings by default, more with `-v`; `RUST_LOG` overrides.
pub fn init_logging(global: &GlobalArgs) {
    use tracing_subscriber::EnvFilter;
    let default = match global.verbose {
        0 => "warn",
        1 => "warn,credchain=info,credchain_core=info,credchain_vault=info,credchain_aws=info,credchain_azure=info,credchain_kubernetes=info",
        2 => "info,credchain=debug,credchain_core=debug,credchain_vault=debug,credchain_aws=debug,credchain_azure=debug,credchain_kubernetes=debug",
        _ => "debug,credchain=trace,credchain_core=trace",
    };
    // The AWS SDK warns loudly (with whole HTTP responses) while probing for a region or
    // credentials, and logs the access key id at debug: keep its internals quiet.
    let sdk = if global.verbose >= 2 { "info" } else { "error" };
    let default = format!(
        "{default},aws_config={sdk},aws_smithy_runtime={sdk},aws_sigv4={sdk},aws_smithy_runtime_api={sdk},rustls_platform_verifier=off"
    );
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(global.verbose >= 2);
    let _ = match global.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// A Prefect client over the config's chain. Fails before any request when `PREFECT_API_URL`
/// is missing or the credentials are inconsistent.
pub async fn prefect_client(
    ctx: &Context,
    creds: crate::credentials::Credentials,
) -> Result<crate::prefect::PrefectClient, crate::prefect::SetupError> {
    crate::prefect::PrefectClient::builder(creds)
        .settings(&ctx.config.prefect)
        .env(ctx.env.clone())
        .build()
        .await
}

/// Prints `value` as one JSON document on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| Failure::new(Exit::WorkFailed, e))?;
    println!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_json_names_the_exit_and_keeps_the_hint() {
        let failure = Failure::msg(Exit::KeyNotFound, "key X not found").hint("set X");
        let value = failure_json(&failure);
        assert_eq!(value["ok"], false);
        assert_eq!(value["error"]["kind"], "key_not_found");
        assert_eq!(value["error"]["exit"], 3);
        assert_eq!(value["error"]["message"], "key X not found");
        assert_eq!(value["error"]["hint"], "set X");
    }

    #[test]
    fn only_json_invocations_want_json() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).unwrap().command;
        assert!(wants_json(&parse(&["credchain", "resolve", "--json"])));
        assert!(wants_json(&parse(&[
            "credchain",
            "concurrency",
            "list",
            "--json"
        ])));
        assert!(!wants_json(&parse(&["credchain", "resolve"])));
    }
}
