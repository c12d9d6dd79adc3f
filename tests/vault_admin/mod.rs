//! Test helpers for the Vault source: setting up mounts, policies, AppRole and JWT auth on the
//! shared OpenBao dev server with its root token, unique names so tests run in parallel, a
//! TRACE-level capture of tracing output, and a JWT signer.
#![allow(dead_code)] // each test binary uses part of this module

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use credchain_core::{MapEnv, SourceSettings};
use credchain_vault::VaultSource;
use serde_json::{json, Value};

use crate::support;

/// A name no other test (or earlier run against the same server) uses: `prefix-<pid>-<n>-<t>`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
        % 1_000_000_000;
    format!("{prefix}-{}-{n}-{t}", std::process::id())
}

/// The OpenBao dev server, driven with its root token.
pub struct Admin {
    http: reqwest::Client,
    pub addr: String,
    pub root: String,
    /// Sent as `X-Vault-Namespace` when set.
    pub namespace: Option<String>,
}

impl Admin {
    /// The shared server from `CREDCHAIN_TEST_VAULT_ADDR` / `CREDCHAIN_TEST_VAULT_TOKEN`.
    pub fn new() -> Admin {
        Admin {
            http: reqwest::Client::new(),
            addr: support::vault_addr(),
            root: support::vault_token(),
            namespace: None,
        }
    }

    /// An admin of another server, reached through `http`.
    pub fn of(addr: &str, root: &str, http: reqwest::Client) -> Admin {
        Admin {
            http,
            addr: addr.to_string(),
            root: root.to_string(),
            namespace: None,
        }
    }

    /// Creates the namespace `name` and returns an admin working inside it.
    pub async fn namespace(&self, name: &str) -> Admin {
        self.call("POST", &format!("sys/namespaces/{name}"), None)
            .await;
        Admin {
            namespace: Some(name.to_string()),
            ..Admin::new()
        }
    }

    /// Calls the API with the root token; panics on an error status, with the path and Vault's
    /// errors (which hold no secret of the tests).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call_with(&self.root, method, path, body).await
    }

    /// Calls the API with `token`.
    pub async fn call_with(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let url = format!("{}/v1/{path}", self.addr);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .header("X-Vault-Token", token);
        if let Some(namespace) = &self.namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(
            status.is_success(),
            "{method} {path} answered {status}: {text}"
        );
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    /// Writes a KV v2 secret and returns its new version.
    pub async fn kv2_put(&self, mount: &str, path: &str, fields: Value) -> u64 {
        let reply = self
            .call(
                "POST",
                &format!("{mount}/data/{path}"),
                Some(json!({ "data": fields })),
            )
            .await;
        reply["data"]["version"].as_u64().unwrap()
    }

    /// Mounts a KV engine of `version` at `mount`.
    pub async fn mount_kv(&self, mount: &str, version: u8) {
        let body = json!({ "type": "kv", "options": { "version": version.to_string() } });
        self.call("POST", &format!("sys/mounts/{mount}"), Some(body))
            .await;
    }

    /// Writes an ACL policy.
    pub async fn policy(&self, name: &str, hcl: &str) {
        self.call(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            Some(json!({ "policy": hcl })),
        )
        .await;
    }

    /// A policy named `name` that may read `paths` (API paths, globs allowed).
    pub async fn read_policy(&self, name: &str, paths: &[&str]) {
        let hcl: String = paths
            .iter()
            .map(|p| format!("path \"{p}\" {{ capabilities = [\"read\"] }}\n"))
            .collect();
        self.policy(name, &hcl).await;
    }

    /// A child token with `policies` and `ttl` (renewable unless the options say otherwise).
    pub async fn token(&self, policies: &[&str], ttl: &str) -> String {
        let body = json!({ "policies": policies, "ttl": ttl, "no_parent": true });
        let reply = self.call("POST", "auth/token/create", Some(body)).await;
        reply["auth"]["client_token"].as_str().unwrap().to_string()
    }

    /// Enables an auth method of `kind` at `mount`.
    pub async fn enable_auth(&self, mount: &str, kind: &str) {
        self.call(
            "POST",
            &format!("sys/auth/{mount}"),
            Some(json!({ "type": kind })),
        )
        .await;
    }

    /// Enables AppRole at `mount` with role `role`; returns its role id and a fresh secret id.
    pub async fn approle(&self, mount: &str, role: &str, settings: Value) -> (String, String) {
        self.enable_auth(mount, "approle").await;
        self.call("POST", &format!("auth/{mount}/role/{role}"), Some(settings))
            .await;
        let id = self
            .call("GET", &format!("auth/{mount}/role/{role}/role-id"), None)
            .await;
        let secret = self
            .call("POST", &format!("auth/{mount}/role/{role}/secret-id"), None)
            .await;
        (
            id["data"]["role_id"].as_str().unwrap().to_string(),
            secret["data"]["secret_id"].as_str().unwrap().to_string(),
        )
    }
}

/// A private OpenBao dev server with TLS (`-dev-tls`), stopped when dropped.
pub struct TlsBao {
    child: std::process::Child,
    /// `https://127.0.0.1:PORT`.
    pub addr: String,
    /// The CA file that signs the server's certificate.
    pub ca_cert: std::path::PathBuf,
    /// The entry that lets scripts/test stop the server if this test process dies first.
    registered: Option<std::path::PathBuf>,
    /// Holds the CA, the server's home and its log.
    _dir: tempfile::TempDir,
}

impl TlsBao {
    /// The root token of private servers.
    pub const ROOT: &'static str = "root-FAKE-tls-token";

    /// Starts the server and waits until it accepts connections.
    pub fn start() -> TlsBao {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port_pair();
        let log = std::fs::File::create(dir.path().join("bao.log")).unwrap();
        let child = std::process::Command::new(support::bao_bin())
            .args(["server", "-dev", "-dev-tls", "-dev-no-store-token"])
            .arg(format!("-dev-tls-cert-dir={}", dir.path().display()))
            .arg(format!("-dev-root-token-id={}", Self::ROOT))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .env("HOME", dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start bao");
        let registered = register(child.id());
        let server = TlsBao {
            child,
            registered,
            addr: format!("https://127.0.0.1:{port}"),
            ca_cert: dir.path().join("vault-ca.pem"),
            _dir: dir,
        };
        server.wait_ready(port);
        server
    }

    fn wait_ready(&self, port: u16) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if listening && self.ca_cert.is_file() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self._dir.path().join("bao.log")).unwrap_or_default();
        panic!("the TLS OpenBao server did not start within 30 s; its log:\n{log}");
    }

    /// An admin that trusts the server's CA.
    pub fn admin(&self) -> Admin {
        let pem = std::fs::read(&self.ca_cert).unwrap();
        let certs = reqwest::Certificate::from_pem_bundle(&pem).unwrap();
        let http = reqwest::Client::builder()
            .tls_certs_only(certs)
            .build()
            .unwrap();
        Admin::of(&self.addr, Self::ROOT, http)
    }
}

impl Drop for TlsBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(entry) = &self.registered {
            let _ = std::fs::remove_file(entry);
        }
    }
}

/// Registers a spawned server with scripts/test (when it runs the tests) for cleanup.
fn register(pid: u32) -> Option<std::path::PathBuf> {
    let run_dir = std::env::var_os("CREDCHAIN_TEST_RUN_DIR")?;
    let entry = std::path::Path::new(&run_dir)
        .join("spawned")
        .join(pid.to_string());
    std::fs::write(&entry, format!("bao-tls:{pid}:TERM:group\n")).ok()?;
    Some(entry)
}

/// A loopback port whose successor is free too (a dev server's cluster listener takes port + 1).
fn free_port_pair() -> u16 {
    loop {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// Signs JWTs (ES256) with a P-256 key that Vault's JWT auth is told to trust.
pub struct JwtSigner {
    key: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl JwtSigner {
    /// A fresh key pair.
    pub fn new() -> JwtSigner {
        let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        JwtSigner { key, rng }
    }

    /// The public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) block.
    pub fn public_pem(&self) -> String {
        use ring::signature::KeyPair;
        // The DER prefix of a P-256 SubjectPublicKeyInfo, followed by the 65-byte point.
        let mut der = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        der.extend_from_slice(self.key.public_key().as_ref());
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(der)
        )
    }

    /// A JWT for `subject` and `audience`, valid for `ttl_secs`.
    pub fn sign(&self, subject: &str, audience: &str, ttl_secs: u64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        self.sign_claims(json!({
            "sub": subject, "aud": audience, "iss": "credchain-test",
            "iat": now, "nbf": now - 5, "exp": now + ttl_secs,
        }))
    }

    /// A JWT carrying `claims` as they are.
    pub fn sign_claims(&self, claims: Value) -> String {
        let header = json!({ "alg": "ES256", "typ": "JWT" });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.key.sign(&self.rng, signing_input.as_bytes()).unwrap();
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}

/// Tracing output of one test at TRACE level, kept in memory.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Installs a TRACE subscriber for this thread; keep the guard alive for the test.
    pub fn start() -> (Capture, tracing::subscriber::DefaultGuard) {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (capture, tracing::subscriber::set_default(subscriber))
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// How many log lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.text().lines().filter(|l| l.contains(needle)).count()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A Vault source named `vault` built from `options` (TOML) and `env`.
pub fn source(options: &str, env: &[(&str, &str)]) -> VaultSource {
    let table: toml::Table = toml::from_str(options).unwrap();
    VaultSource::from_options(
        SourceSettings::new("vault"),
        table,
        &MapEnv::new(env.iter().copied()),
    )
    .unwrap_or_else(|e| panic!("building the vault source: {e}"))
}

/// Every message of an error and its causes, and its `Debug`.
pub fn error_text(err: &credchain_core::SourceError) -> String {
    let mut text = format!("{err:?}\n{err}");
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        text.push_str(&format!("\n{c}\n{c:?}"));
        cause = c.source();
    }
    if let Some(hint) = err.hint() {
        text.push_str(hint);
    }
    text
}
