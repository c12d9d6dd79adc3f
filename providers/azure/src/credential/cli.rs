//! Runs the Azure CLI for the SDK's CLI credential: with the `PATH` of the injected environment,
//! no standard input, and a timeout, so a hung `az` cannot stall a lookup.

use std::ffi::OsStr;
use std::io;
use std::process::{Output, Stdio};
use std::time::Duration;

use azure_identity::Executor;

/// Runs `az` through `/bin/sh`, as the SDK asks.
#[derive(Debug)]
pub struct CliExecutor {
    path: Option<String>,
    timeout: Duration,
}

impl CliExecutor {
    /// An executor that gives the child `path` as its `PATH` and waits at most `timeout`.
    pub fn new(path: Option<String>, timeout: Duration) -> Self {
        CliExecutor { path, timeout }
    }
}

#[async_trait::async_trait]
impl Executor for CliExecutor {
    async fn run(&self, program: &OsStr, args: &[&OsStr]) -> io::Result<Output> {
        let mut command = tokio::process::Command::new(program);
        command.args(args).stdin(Stdio::null()).kill_on_drop(true);
        if let Some(path) = &self.path {
            command.env("PATH", path);
        }
        match tokio::time::timeout(self.timeout, command.output()).await {
            Ok(output) => output,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the Azure CLI did not answer within {} s",
                    self.timeout.as_secs()
                ),
            )),
        }
    }
}
