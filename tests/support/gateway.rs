//! A private nginx bearer-key gateway per test (same config template as the shared one), whose
//! keys a test may rotate without disturbing other tests.

use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;

use super::process::{free_port, http_get, wait_until, Spawned};

/// The nginx template shared with scripts/test-servers.
const TEMPLATE: &str = include_str!("../../scripts/lib/gateway.nginx.conf.in");
/// How long nginx may take to answer after a start or a reload.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts to start on a free port (another process may take the port first).
const START_ATTEMPTS: usize = 3;
/// Where the gateway tells which configuration is in force.
const GENERATION_PATH: &str = "/__gateway/generation";

/// What a key may do through the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Rw,
    /// GET/HEAD/OPTIONS and Prefect's read-only POSTs (`…/filter`, `/count`, `/paginate`, `/history`).
    Ro,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Rw => "rw",
            Role::Ro => "ro",
        })
    }
}

/// An nginx gateway on a free loopback port: `Authorization: Bearer <key>` → 401 for an unknown
/// key (with `WWW-Authenticate`), 403 for a read-only key on a write, else proxied upstream
/// without the key. `GET /api/health` needs no key. Stopped on drop.
pub struct Gateway {
    dir: tempfile::TempDir,
    port: u16,
    upstream: String,
    upstream_authorization: String,
    generation: u64,
    server: Option<Spawned>,
}

impl Gateway {
    /// Starts a gateway in front of `upstream_base_url` (e.g. `http://127.0.0.1:4200/api`; only
    /// its host and port count, paths pass unchanged) that knows `keys`.
    pub fn start(upstream_base_url: &str, keys: &[(&str, Role)]) -> Gateway {
        Gateway::start_inner(upstream_base_url, String::new(), keys)
    }

    /// Like [`Gateway::start`], for an upstream that wants HTTP Basic `user:password`
    /// (e.g. Prefect B); the gateway sends it instead of the client's key.
    pub fn start_with_basic_auth(
        upstream_base_url: &str,
        user_password: &str,
        keys: &[(&str, Role)],
    ) -> Gateway {
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_password);
        Gateway::start_inner(upstream_base_url, format!("Basic {encoded}"), keys)
    }

    fn start_inner(
        upstream_base_url: &str,
        upstream_authorization: String,
        keys: &[(&str, Role)],
    ) -> Gateway {
        // inside the run dir: removed with it, or kept with its logs when the run fails
        let dir = tempfile::Builder::new()
            .prefix("private-gateway.")
            .tempdir_in(super::run_dir())
            .expect("gateway tempdir");
        fs::create_dir_all(dir.path().join("tmp")).expect("gateway temp paths");
        let upstream = host_port(upstream_base_url);
        let mut gateway = Gateway {
            dir,
            port: 0,
            upstream,
            upstream_authorization,
            generation: 1,
            server: None,
        };
        gateway.write_keys(keys);
        for _ in 0..START_ATTEMPTS {
            gateway.port = free_port();
            gateway.write_conf();
            if gateway.try_start() {
                return gateway;
            }
        }
        let log = gateway.dir.path().join("error.log");
        gateway
            .server
            .as_mut()
            .expect("started once")
            .fail("start", &log)
    }

    /// The gateway's API base URL, `http://127.0.0.1:PORT/api`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/api", self.port)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Replaces the key set: rewrites the key file atomically, reloads nginx, and returns once
    /// new connections are served by the new configuration only.
    pub fn set_keys(&mut self, keys: &[(&str, Role)]) {
        self.write_keys(keys);
        self.generation += 1;
        self.write_conf();
        let status = Command::new(super::nginx_bin())
            .args(self.nginx_args())
            .args(["-s", "reload"])
            .output()
            .expect("run nginx -s reload");
        assert!(
            status.status.success(),
            "nginx -s reload failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        let (port, want) = (self.port, self.generation.to_string());
        let server = self.server.as_mut().expect("gateway running");
        let master = server.pid();
        let reloaded = wait_until(server, READY_TIMEOUT, || {
            http_get(port, GENERATION_PATH).is_some_and(|(_, body)| body == want)
                && child_count(master) == 1
        });
        if !reloaded {
            let log = self.dir.path().join("error.log");
            self.server
                .as_mut()
                .expect("gateway running")
                .fail("reload", &log);
        }
    }

    fn try_start(&mut self) -> bool {
        let mut cmd = Command::new(super::nginx_bin());
        cmd.args(self.nginx_args());
        let log = self.dir.path().join("nginx.out");
        let mut server = Spawned::start("gateway", cmd, &log);
        let (port, want) = (self.port, self.generation.to_string());
        let up = wait_until(&mut server, READY_TIMEOUT, || {
            http_get(port, GENERATION_PATH).is_some_and(|(_, body)| body == want)
        });
        self.server = Some(server);
        up
    }

    fn nginx_args(&self) -> Vec<String> {
        let dir = self.dir.path().display().to_string();
        vec![
            "-p".into(),
            dir.clone(),
            "-e".into(),
            format!("{dir}/error.log"),
            "-c".into(),
            format!("{dir}/nginx.conf"),
        ]
    }

    fn write_keys(&self, keys: &[(&str, Role)]) {
        let mut text = String::from("# <api key> <role>;\n");
        for (key, role) in keys {
            check_key(key);
            text.push_str(&format!("{key} {role};\n"));
        }
        replace_file(&self.dir.path().join("keys.map"), &text);
    }

    fn write_conf(&self) {
        let dir = self.dir.path();
        let is_root = fs::metadata(dir).map(|m| m.uid() == 0).unwrap_or(false);
        let conf = TEMPLATE
            .replace("@DIR@", &dir.display().to_string())
            .replace("@PORT@", &self.port.to_string())
            .replace("@UPSTREAM@", &self.upstream)
            .replace("@UPSTREAM_AUTHORIZATION@", &self.upstream_authorization)
            .replace("@USER_DIRECTIVE@", if is_root { "user root;" } else { "" })
            .replace("@GENERATION@", &self.generation.to_string());
        replace_file(&dir.join("nginx.conf"), &conf);
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(server) = self.server.as_mut() {
            server.stop();
        }
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "private gateway's config and logs kept for debugging: {}",
                self.dir.path().display()
            );
        }
    }
}

/// `host:port` of an `http://host:port/...` URL.
fn host_port(url: &str) -> String {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("upstream must be http://…, got {url}"));
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// Keys must be plain tokens: nginx would read `default`, `include`, `~…` or spaces as syntax.
fn check_key(key: &str) {
    let plain = key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    let keyword = ["default", "include", "hostnames", "volatile"].contains(&key);
    assert!(
        !key.is_empty() && plain && !keyword,
        "gateway key must be a plain token ([A-Za-z0-9_.-], not an nginx keyword)"
    );
}

/// Writes a file atomically (write a sibling, then rename over).
fn replace_file(path: &Path, text: &str) {
    let tmp: PathBuf = path.with_extension("new");
    fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename {}: {e}", tmp.display()));
}

/// How many live child processes `pid` has (the nginx master: 1 once old workers have left).
fn child_count(pid: u32) -> usize {
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(|entry| fs::read_to_string(entry.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or("", |(_, rest)| rest)
                .split_whitespace()
                .collect();
            fields.first() != Some(&"Z") && fields.get(1) == Some(&pid.to_string().as_str())
        })
        .count()
}
