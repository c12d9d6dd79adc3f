//! Process plumbing for the per-test servers: free ports, detached children registered for
//! cleanup, stopping a process group, and a tiny blocking HTTP probe.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How often readiness is polled.
pub const POLL: Duration = Duration::from_millis(50);
/// How long a stopped server may take before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Timeout of one probe request.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Lines of a log shown when a server fails.
const LOG_TAIL_LINES: usize = 40;

/// A loopback port that was free a moment ago (the caller retries if it is taken meanwhile).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// A server process in its own process group, registered in the run dir so that scripts/test
/// stops it even when the test process dies before [`Spawned::stop`].
pub struct Spawned {
    child: Child,
    name: String,
    registry_entry: PathBuf,
}

impl Spawned {
    /// Starts `cmd` detached from the test's stdin/stdout/stderr (output goes to `log`).
    pub fn start(name: &str, mut cmd: Command, log: &Path) -> Spawned {
        let out = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log handle");
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        let registry_entry = super::run_dir()
            .join("spawned")
            .join(child.id().to_string());
        let entry = format!("{name}:{}:TERM:group\n", child.id());
        fs::write(&registry_entry, entry).expect("register the spawned server");
        Spawned {
            child,
            name: name.to_owned(),
            registry_entry,
        }
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM to the process group, SIGKILL after a grace period; unregisters it.
    pub fn stop(&mut self) {
        if self.is_running() {
            signal_group(self.pid(), "TERM");
            let deadline = Instant::now() + STOP_GRACE;
            while self.is_running() && Instant::now() < deadline {
                sleep(POLL);
            }
            if self.is_running() {
                signal_group(self.pid(), "KILL");
                let _ = self.child.wait();
            }
        }
        let _ = fs::remove_file(&self.registry_entry);
    }

    /// Panics, showing the end of `log`, because this server failed to `what`.
    pub fn fail(&mut self, what: &str, log: &Path) -> ! {
        self.stop();
        panic!(
            "{} failed to {what}; last lines of {}:\n{}",
            self.name,
            log.display(),
            log_tail(log)
        );
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends a signal to a whole process group (through `sh`, since this crate forbids unsafe code).
pub fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("sh")
        .args([
            "-c",
            "kill -s \"$1\" -- \"-$2\" 2>/dev/null",
            "kill",
            signal,
            &pgid.to_string(),
        ])
        .status();
}

/// The last lines of a log file.
pub fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_else(|e| format!("(unreadable: {e})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Status code and body of a plain HTTP/1.0 GET to `127.0.0.1:port`, or None if nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    Some((status, body))
}

/// Polls `ready` until it is true (then returns true), the server exits, or `timeout` passes.
pub fn wait_until(
    server: &mut Spawned,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        if !server.is_running() {
            return false;
        }
        sleep(POLL);
    }
    false
}
