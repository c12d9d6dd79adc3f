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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
