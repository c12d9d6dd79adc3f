//! A private Prefect server per test (its own database copied from the template), for tests that
//! need a deployment namespace or server settings of their own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{free_port, http_get, wait_until, Spawned};

/// Prefect needs ~5 s with a migrated database; a loaded 2-core machine can take much longer.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts to start on a free port (another process may take the port first).
const START_ATTEMPTS: usize = 2;

/// Settings that keep the server local, quiet and offline.
const QUIET_ENV: &[(&str, &str)] = &[
    ("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
    ("DO_NOT_TRACK", "1"),
    ("PREFECT_SERVER_UI_ENABLED", "false"),
    ("PREFECT_SERVER_LOGGING_LEVEL", "WARNING"),
    // log the SQLite lock conflicts that Prefect answers with 503 (clients must retry those)
    ("PREFECT_SERVER_LOG_RETRYABLE_ERRORS", "true"),
];

/// A Prefect API server on a free loopback port, killed on drop.
pub struct PrefectServer {
    home: tempfile::TempDir,
    port: u16,
    server: Spawned,
}

impl PrefectServer {
    /// Starts a server from the template database with `extra_env` on top of the defaults (e.g.
    /// `("PREFECT_SERVER_API_AUTH_STRING", "admin:FAKEpass")`) and waits until it answers.
    /// Services (scheduler, …) are on; turn one off with its setting, e.g.
    /// `("PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED", "false")`.
    pub fn start(extra_env: &[(&str, &str)]) -> PrefectServer {
        // inside the run dir: removed with it, or kept with its logs when the run fails
        let home = tempfile::Builder::new()
            .prefix("private-prefect.")
            .tempdir_in(super::run_dir())
            .expect("prefect home");
        fs::copy(super::prefect_template_db(), home.path().join("prefect.db"))
            .expect("copy the template database");
        let log = home.path().join("server.log");
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let mut server = Spawned::start("prefect", command(home.path(), port, extra_env), &log);
            if wait_until(&mut server, READY_TIMEOUT, || {
                matches!(http_get(port, "/api/health"), Some((200, _)))
            }) {
                return PrefectServer { home, port, server };
            }
            last = Some(server);
        }
        last.expect("started once").fail("start", &log)
    }

    /// The API base URL, `http://127.0.0.1:PORT/api`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/api", self.port)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its `PREFECT_HOME` (database and `server.log`).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The server's output so far (for a failure message).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.home.path().join("server.log")
    }
}

impl Drop for PrefectServer {
    fn drop(&mut self) {
        self.server.stop();
        if std::thread::panicking() {
            self.home.disable_cleanup(true);
            eprintln!(
                "private Prefect server's home kept for debugging: {}",
                self.home.path().display()
            );
        }
    }
}

/// `prefect server start` with a clean Prefect environment plus `extra_env`.
fn command(home: &Path, port: u16, extra_env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(super::prefect_bin());
    for (name, _) in std::env::vars() {
        if name.starts_with("PREFECT_") {
            cmd.env_remove(name);
        }
    }
    let db_url = format!("sqlite+aiosqlite:///{}/prefect.db", home.display());
    cmd.env("PREFECT_HOME", home)
        .env("PREFECT_SERVER_DATABASE_CONNECTION_URL", db_url);
    cmd.envs(QUIET_ENV.iter().copied())
        .envs(extra_env.iter().copied());
    cmd.args([
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
    ]);
    cmd.current_dir(home);
    cmd
}
