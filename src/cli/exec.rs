//! `credchain exec`: run a command with the resolved keys in its environment.

use std::ffi::OsString;

use clap::Args;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

use super::{CmdResult, Context};
use crate::chain::ResolveError;
use crate::exit::{Exit, Failure};

/// The shell's exit code for a command that does not exist.
const NOT_FOUND_EXIT: u8 = 127;
/// The shell's exit code for a command that exists but cannot be executed.
const NOT_EXECUTABLE_EXIT: u8 = 126;

/// Flags of `credchain exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The command and its arguments, after `--`.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

/// Runs the command and passes its exit code through.
pub async fn run(ctx: &Context, args: ExecArgs) -> CmdResult {
    let mut vars = Vec::new();
    for spec in &ctx.config.keys {
        match ctx.config.chain.resolve(&spec.name).await {
            Ok(found) => {
                tracing::info!(key = %spec.name, from = %found.resolved.provenance, "passing to the command");
                vars.push((spec.name.clone(), found.resolved.value));
            }
            Err(ResolveError::NotFound { .. }) if !ctx.config.is_required(&spec.name) => {
                tracing::debug!(key = %spec.name, "not found; not passed");
            }
            Err(error) => return Err(error.into()),
        }
    }
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| Failure::msg(Exit::Usage, "no command given after `--`"))?;
    let mut command = tokio::process::Command::new(program);
    command.args(rest);
    for (name, value) in &vars {
        command.env(name, value.expose());
    }
    let mut child = command.spawn().map_err(|e| {
        Failure::new(spawn_exit(&e), e).hint(format!(
            "check that `{}` exists and is executable",
            program.to_string_lossy()
        ))
    })?;
    drop(vars);
    let status = wait_forwarding_signals(&mut child).await?;
    Ok(Exit::Passthrough(status_code(status)))
}

/// The exit code of a command that could not start, as a shell gives it: 127 when it does not
/// exist, 126 when it cannot be executed, 2 for anything else.
fn spawn_exit(error: &std::io::Error) -> Exit {
    match error.kind() {
        std::io::ErrorKind::NotFound => Exit::Passthrough(NOT_FOUND_EXIT),
        std::io::ErrorKind::PermissionDenied => Exit::Passthrough(NOT_EXECUTABLE_EXIT),
        _ => Exit::Usage,
    }
}

async fn wait_forwarding_signals(
    child: &mut tokio::process::Child,
) -> Result<std::process::ExitStatus, Failure> {
    let io = |e: std::io::Error| Failure::new(Exit::WorkFailed, e);
    let mut interrupt = signal(SignalKind::interrupt()).map_err(io)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(io)?;
    let pid = child.id().map(|id| Pid::from_raw(id as i32));
    loop {
        let forward = tokio::select! {
            status = child.wait() => return status.map_err(io),
            _ = interrupt.recv() => Signal::SIGINT,
            _ = terminate.recv() => Signal::SIGTERM,
        };
        if let Some(pid) = pid {
            tracing::debug!(signal = ?forward, "forwarding to the command");
            let _ = kill(pid, forward);
        }
    }
}

fn status_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.saturating_add(signal as u8),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_errors_exit_like_a_shell() {
        let code = |kind| spawn_exit(&std::io::Error::from(kind)).code();
        assert_eq!(code(std::io::ErrorKind::NotFound), 127);
        assert_eq!(code(std::io::ErrorKind::PermissionDenied), 126);
        assert_eq!(code(std::io::ErrorKind::InvalidInput), 2);
    }
}
