//! Runs the credchain binary the way a user would, with a clean environment and a temporary
//! working directory, and captures its exit code and output.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::{self, sleep, JoinHandle};
use std::time::{Duration, Instant};

/// A run that takes longer than this is killed and the test fails.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// How often a running binary is checked for exit.
const POLL: Duration = Duration::from_millis(10);

/// What a finished run of the binary left.
#[derive(Debug)]
pub struct CliOutput {
    /// Exit code; `None` if a signal ended it.
    pub code: Option<i32>,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
}

impl CliOutput {
    /// Standard output and standard error together, for leak checks.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// A run of the credchain binary: environment cleared except `PATH`, `HOME` set to the working
/// directory, which is a fresh temporary directory unless [`Cli::cwd`] names one.
pub struct Cli {
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

/// Runs `credchain args…` with the variables `vars` (on top of `PATH` and `HOME`) in a fresh
/// temporary directory.
pub fn run_credchain(args: &[&str], vars: &[(&str, &str)]) -> CliOutput {
    let mut cli = Cli::new().args(args);
    for (name, value) in vars {
        cli = cli.env(name, value);
    }
    cli.run()
}

impl Cli {
    /// A run with no arguments.
    pub fn new() -> Cli {
        Cli {
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Adds arguments.
    pub fn args<S: AsRef<std::ffi::OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Cli {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable (may override `PATH` or `HOME`).
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Cli {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Runs in `dir` (e.g. one holding a `credchain.toml` or `.env`) instead of a fresh tempdir.
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Cli {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Feeds `input` on standard input (default: empty).
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Cli {
        self.stdin = Some(input.into());
        self
    }

    /// Kills the run and fails the test after `timeout` (default 120 s).
    pub fn timeout(mut self, timeout: Duration) -> Cli {
        self.timeout = timeout;
        self
    }

    /// Runs the binary to completion.
    pub fn run(self) -> CliOutput {
        let scratch = tempfile::Builder::new()
            .prefix("credchain-cli.")
            .tempdir()
            .expect("cli tempdir");
        let cwd = self
            .cwd
            .clone()
            .unwrap_or_else(|| scratch.path().to_owned());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_credchain"));
        cmd.args(&self.args)
            .env_clear()
            .current_dir(&cwd)
            .env("HOME", &cwd);
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start the credchain binary");
        let mut stdin = child.stdin.take().expect("stdin pipe");
        let input = self.stdin.unwrap_or_default();
        let feeder = thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let stdout = reader(child.stdout.take().expect("stdout pipe"));
        let stderr = reader(child.stderr.take().expect("stderr pipe"));
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for credchain") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                // no arguments in the message: they may hold a secret
                panic!("credchain did not finish within {:?}", self.timeout);
            }
            sleep(POLL);
        };
        let _ = feeder.join();
        let stdout = stdout.join().expect("stdout reader");
        let stderr = stderr.join().expect("stderr reader");
        CliOutput {
            code: status.code(),
            stdout,
            stderr,
        }
    }
}

impl Default for Cli {
    fn default() -> Cli {
        Cli::new()
    }
}

fn reader(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
