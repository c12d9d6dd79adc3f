//! Shared pieces of the end-to-end rotation tests (tests/e2e_*.rs): a working directory with a
//! config and a small pipeline, `credchain check` and `credchain serve` run as a user would, and
//! creating deployment runs and checking they completed without a secret in any output.
#![allow(dead_code)] // each test binary uses part of this module

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::prefect_api;
use crate::support::{assert_no_secret, Cli, CliOutput};

/// The sample data; each run loads its first [`ROWS_PER_RUN`] records.
const SAMPLE: &str = include_str!("../../examples/data/birdstrikes.csv");
/// Rows per flow run: enough to be a real load, small enough to finish in a second.
const ROWS_PER_RUN: usize = 20;
/// Upper bound for a batch of runs to finish (a hang guard, not a timing assertion).
const RUNS_DONE: Duration = Duration::from_secs(90);
/// Upper bound for a runner to create its deployment.
const DEPLOYMENT_APPEARS: Duration = Duration::from_secs(60);
/// Upper bound for `serve` to exit after SIGTERM.
const SERVE_STOPS: Duration = Duration::from_secs(30);
/// How often the state of a run is read.
const POLL: Duration = Duration::from_millis(300);
/// Attempts of a test's own Prefect call that the server answers 503 (busy).
const BUSY_ATTEMPTS: u32 = 20;
/// Wait between those attempts.
const BUSY_WAIT: Duration = Duration::from_millis(500);
/// Lines of a long log shown in a failure message.
const TAIL_LINES: usize = 30;

/// A temporary working directory holding `credchain.toml`: the environment source first, then
/// `sources` (TOML `[[sources]]` tables), a pipeline appending [`ROWS_PER_RUN`] rows per run to
/// `out.db`, and `[serve] poll_interval = "1s"`.
pub fn work_dir(sources: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("credchain-e2e.")
        .tempdir()
        .expect("e2e working directory");
    let csv: String = SAMPLE
        .lines()
        .take(ROWS_PER_RUN + 1)
        .map(|line| format!("{line}\n"))
        .collect();
    fs::write(dir.path().join("data.csv"), csv).expect("write data.csv");
    let config = format!(
        "[[sources]]\ntype = \"env\"\n\n{sources}\n\n\
         [pipeline]\nsource = \"data.csv\"\ntarget = \"sqlite://out.db\"\ntable = \"birds\"\n\
         rejects = \"rejects.csv\"\n\n[serve]\npoll_interval = \"1s\"\n"
    );
    fs::write(dir.path().join("credchain.toml"), config).expect("write credchain.toml");
    dir
}

/// Runs `credchain ARGS` in `dir` with only `vars` (plus `PATH` and `HOME`) in its environment.
pub fn credchain(dir: &Path, args: &[&str], vars: &[(String, String)]) -> CliOutput {
    let mut cli = Cli::new().cwd(dir).args(args);
    for (name, value) in vars {
        cli = cli.env(name, value);
    }
    cli.run()
}

/// Asserts the exit code; the failure message shows the output, which is first checked for
/// `secrets` so that a failing test never prints one.
pub fn assert_exit(out: &CliOutput, code: i32, secrets: &[&str]) {
    assert_no_secret(&out.all_output(), secrets);
    assert_eq!(
        out.code,
        Some(code),
        "stdout:\n{}\nstderr (end):\n{}",
        out.stdout,
        tail(&out.stderr)
    );
}

/// The last lines of a long log.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// A `credchain -v serve --limit 2` process writing to a log file; killed on drop.
pub struct Serve {
    child: Child,
    log: PathBuf,
}

impl Serve {
    /// Starts serving in `dir` with only `vars` (plus `PATH` and `HOME`) in its environment.
    pub fn start(dir: &Path, vars: &[(String, String)]) -> Serve {
        let log = dir.join("serve.log");
        let file = fs::File::create(&log).expect("serve log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_credchain"));
        cmd.args(["-v", "serve", "--limit", "2"])
            .env_clear()
            .current_dir(dir)
            .env("HOME", dir)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(vars.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("serve log handle"))
            .stderr(file);
        Serve {
            child: cmd.spawn().expect("start credchain serve"),
            log,
        }
    }

    /// Everything the process wrote so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The end of the output for a failure message, after checking it holds none of `secrets`.
    pub fn shown(&self, secrets: &[&str]) -> String {
        let output = self.output();
        assert_no_secret(&output, secrets);
        tail(&output)
    }

    /// Panics unless the process is still running (it was never restarted or stopped).
    pub fn assert_running(&mut self, secrets: &[&str]) {
        let status = self.child.try_wait().expect("poll credchain serve");
        assert!(
            status.is_none(),
            "credchain serve exited ({status:?}):\n{}",
            self.shown(secrets)
        );
    }

    /// Sends SIGTERM and asserts that the process exits with 0.
    pub fn stop_cleanly(&mut self, secrets: &[&str]) {
        let pid = i32::try_from(self.child.id()).expect("pid fits i32");
        kill(Pid::from_raw(pid), Signal::SIGTERM).expect("send SIGTERM");
        let deadline = Instant::now() + SERVE_STOPS;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for serve") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit after SIGTERM:\n{}",
                self.shown(secrets)
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(status.code(), Some(0), "{}", self.shown(secrets));
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The id of deployment `main-etl/etl-job` once `serve` has created it on `api`.
pub fn deployment(api: &str, serve: &Serve, secrets: &[&str]) -> String {
    let deadline = Instant::now() + DEPLOYMENT_APPEARS;
    loop {
        let (status, value) =
            prefect_api::call("GET", api, "/deployments/name/main-etl/etl-job", None);
        if status == 200 {
            return value["id"].as_str().expect("deployment id").to_string();
        }
        assert!(
            Instant::now() < deadline,
            "serve did not create deployment main-etl/etl-job:\n{}",
            serve.shown(secrets)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Creates `n` runs of `deployment` on `api` (the server itself, not the gateway), as the UI's
/// "Run" button does, and asserts that each one completes. Their Prefect logs must hold none of
/// `secrets` either.
pub fn runs_complete(api: &str, deployment: &str, n: usize, serve: &Serve, secrets: &[&str]) {
    let create = format!("/deployments/{deployment}/create_flow_run");
    let ids: Vec<String> = (0..n)
        .map(|_| {
            let run = api_call("POST", api, &create, Some(json!({})));
            run["id"].as_str().expect("flow run id").to_string()
        })
        .collect();
    for id in &ids {
        let run = wait_terminal(api, id, serve, secrets);
        assert_eq!(
            prefect_api::state_type(&run),
            "COMPLETED",
            "run {id} ended {}; serve output:\n{}",
            run["state"],
            serve.shown(secrets)
        );
        let filter = json!({ "logs": { "flow_run_id": { "any_": [id] } }, "limit": 200 });
        let logs = api_call("POST", api, "/logs/filter", Some(filter));
        assert_no_secret(&logs.to_string(), secrets);
    }
}

/// Run `id` once it is in a terminal state.
fn wait_terminal(api: &str, id: &str, serve: &Serve, secrets: &[&str]) -> Value {
    let deadline = Instant::now() + RUNS_DONE;
    loop {
        let run = api_call("GET", api, &format!("/flow_runs/{id}"), None);
        let state = prefect_api::state_type(&run);
        if ["COMPLETED", "FAILED", "CANCELLED", "CRASHED"].contains(&state.as_str()) {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} still {state}; serve output:\n{}",
            serve.shown(secrets)
        );
        std::thread::sleep(POLL);
    }
}

/// A call to the Prefect API that must succeed. A busy server (SQLite locked) answers 503:
/// that is retried, as Prefect's own clients do, so that only credchain's behaviour is tested.
fn api_call(method: &str, api: &str, path: &str, body: Option<Value>) -> Value {
    let mut attempt = 1;
    loop {
        let (status, value) = prefect_api::call(method, api, path, body.clone());
        if (200..300).contains(&status) {
            return value;
        }
        assert!(
            status == 503 && attempt < BUSY_ATTEMPTS,
            "{method} {path} answered {status} (attempt {attempt}): {value}"
        );
        attempt += 1;
        std::thread::sleep(BUSY_WAIT);
    }
}

/// A runtime for the async admin clients of the stores (the tests themselves are blocking).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("tokio runtime")
}

/// A fake Prefect key, `pnu_FAKE_E2E_<label>_<random>`, unique to this test run.
pub fn fake_key(label: &str) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("pnu_FAKE_E2E_{label}_{}", &random[..10])
}
