//! The `credchain` command: parses the command line, sets up logging, runs one command, and
//! turns its result into an exit code. Errors reach the user here, once.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use credchain::cli::{self, Cli};
use credchain::exit::Exit;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(&cli.global);
    // One thread drives the async work of every command but `serve`, which may run several
    // flows at once: the heavy work (parsing, loading) runs on blocking threads anyway, and a
    // short command such as `check` starts faster and smaller without a pool of workers.
    let mut builder = match cli.command {
        cli::Command::Serve(_) => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(Exit::WorkFailed.code());
        }
    };
    let exit = match runtime.block_on(cli::run(cli)) {
        Ok(exit) => exit,
        Err(failure) => {
            let color = std::io::stderr().is_terminal();
            let (red, bold, reset) = if color {
                ("\x1b[31m", "\x1b[1m", "\x1b[0m")
            } else {
                ("", "", "")
            };
            eprintln!("{red}{bold}error{reset}: {}", failure.chain_text());
            if let Some(hint) = &failure.hint {
                eprintln!("{bold}hint{reset}: {hint}");
            }
            failure.exit
        }
    };
    // Background tasks (refreshes, lease renewals) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    ExitCode::from(exit.code())
}
