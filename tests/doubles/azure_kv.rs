//! An Azure Key Vault double, with the Entra ID token endpoint and the instance metadata service
//! beside it. Over TLS (an rcgen CA, since the Azure SDK sends tokens over https only):
//! the secrets data plane (`GET /secrets/{name}/` and `/secrets/{name}/{version}` with
//! `api-version`), answering an unauthenticated request with the bearer challenge
//! (`401`, `WWW-Authenticate: Bearer authorization="<authority>/<tenant>",
//! resource="https://vault.azure.net"`), and the token endpoint
//! (`POST /{tenant}/oauth2/v2.0/token`) for client-secret and client-assertion grants. Over
//! plain HTTP on a second port: the metadata service (`GET /metadata/identity/oauth2/token`
//! with `Metadata: true`).
//!
//! It can answer 403, 404 `SecretNotFound`, 429 with `Retry-After`, 500, slowly, or (the
//! metadata service) never; it counts requests per route and records the assertions it saw.
//!
//! Use from a test file with `#[path = "doubles/azure_kv.rs"] mod azure_kv;`.
#![allow(dead_code)] // each test binary uses part of this double

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_rustls::rustls;

/// The tenant the double's vault belongs to.
pub const TENANT: &str = "fake-tenant-0001";
/// A service principal the token endpoint knows.
pub const CLIENT_ID: &str = "0f3e2a1b-1111-4222-8333-444455556666";
/// That service principal's client secret.
pub const CLIENT_SECRET: &str = "FAKE_client_secret_kv_001";
/// The object id the double reports for every caller it refuses.
pub const OBJECT_ID: &str = "9a8b7c6d-aaaa-4bbb-8ccc-ddddeeeeffff";
/// The resource of Key Vault's login challenge.
pub const RESOURCE: &str = "https://vault.azure.net";
/// What every token the double issues starts with, for leak checks.
pub const TOKEN_PREFIX: &str = "FAKE_kv_access_token_";

/// How the vault routes answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// From the stored secrets.
    Normal,
    /// This status with a Key Vault error body (403 names the caller like Azure RBAC does).
    Fail(u16),
    /// 429 with `Retry-After` in seconds.
    Throttle(u64),
    /// Waits this long, then answers normally.
    Slow(Duration),
}

/// How the metadata service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metadata {
    /// A token for the machine's identity.
    Normal,
    /// 400 "Identity not found": a VM without a managed identity.
    NoIdentity,
    /// Never: accepts the connection and keeps it open without answering.
    Silent,
}

/// Requests the double saw, per route.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Data-plane reads that carried a valid token.
    pub reads: usize,
    /// Data-plane requests answered with the login challenge.
    pub challenges: usize,
    /// Token endpoint requests.
    pub tokens: usize,
    /// Metadata service requests.
    pub metadata: usize,
}

impl Counts {
    /// Every request, all routes.
    pub fn total(&self) -> usize {
        self.reads + self.challenges + self.tokens + self.metadata
    }
}

/// A running double. Stops when dropped.
pub struct AzureKv {
    vault: SocketAddr,
    metadata: SocketAddr,
    ca_pem: String,
    state: Arc<Mutex<State>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

#[derive(Default)]
struct State {
    vault_url: String,
    secrets: BTreeMap<String, Vec<Version>>,
    disabled: BTreeSet<String>,
    assertions: BTreeSet<String>,
    assertions_seen: Vec<String>,
    static_tokens: BTreeSet<String>,
    issued: BTreeSet<String>,
    token_lifetime: u64,
    behaviour: Option<Behaviour>,
    once: VecDeque<Behaviour>,
    metadata: Option<Metadata>,
    counts: Counts,
    serial: u64,
}

struct Version {
    id: String,
    value: String,
}

impl Drop for AzureKv {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

impl AzureKv {
    /// Starts the vault and login endpoint (TLS) and the metadata service (HTTP) on loopback.
    pub async fn start() -> AzureKv {
        let (ca_pem, config) = tls_material();
        let vault_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metadata_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let vault = vault_listener.local_addr().unwrap();
        let metadata = metadata_listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            vault_url: format!("https://{vault}"),
            token_lifetime: 3600,
            ..State::default()
        }));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let tasks = vec![
            tokio::spawn(accept_loop(vault_listener, Some(acceptor), state.clone())),
            tokio::spawn(accept_loop(metadata_listener, None, state.clone())),
        ];
        AzureKv {
            vault,
            metadata,
            ca_pem,
            state,
            tasks,
        }
    }

    /// `https://127.0.0.1:PORT`: the vault, and the authority host of its login endpoint.
    pub fn url(&self) -> String {
        format!("https://{}", self.vault)
    }

    /// `http://127.0.0.1:PORT` of the metadata service.
    pub fn metadata_url(&self) -> String {
        format!("http://{}", self.metadata)
    }

    /// Writes the CA certificate into `dir` and returns its path, for the `ca_cert` option.
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let path = dir.join("azure-kv-ca.pem");
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }

    /// The source options that point every endpoint at this double (TOML lines).
    pub fn options(&self, dir: &Path) -> String {
        format!(
            "vault_url = '{}'\nauthority_host = '{}'\nmanaged_identity_endpoint = '{}'\n\
             ca_cert = '{}'\nverify_challenge_resource = false\n",
            self.url(),
            self.url(),
            self.metadata_url(),
            self.write_ca(dir).display()
        )
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a new version of secret `name` holding `value`; returns its version id.
    pub fn put(&self, name: &str, value: &str) -> String {
        let mut state = self.state();
        state.serial += 1;
        let id = format!("{:032x}", 0xab00_0000_u64 + state.serial);
        let version = Version {
            id: id.clone(),
            value: value.to_string(),
        };
        state
            .secrets
            .entry(name.to_string())
            .or_default()
            .push(version);
        id
    }

    /// Deletes secret `name` with all its versions.
    pub fn remove(&self, name: &str) {
        self.state().secrets.remove(name);
    }

    /// Disables secret `name`: reads get 403 `SecretDisabled`, as from Key Vault.
    pub fn disable(&self, name: &str) {
        self.state().disabled.insert(name.to_string());
    }

    /// Accepts `assertion` in the client-assertion grant (a federated token).
    pub fn accept_assertion(&self, assertion: &str) {
        self.state().assertions.insert(assertion.to_string());
    }

    /// Accepts `token` at the vault without issuing it (one the Azure CLI hands out).
    pub fn accept_token(&self, token: &str) {
        self.state().static_tokens.insert(token.to_string());
    }

    /// Sets the `expires_in` of tokens issued from now on.
    pub fn token_lifetime(&self, seconds: u64) {
        self.state().token_lifetime = seconds;
    }

    /// How every vault request is answered from now on.
    pub fn set(&self, behaviour: Behaviour) {
        self.state().behaviour = Some(behaviour);
    }

    /// How the next authenticated vault read is answered; then back to [`AzureKv::set`]'s.
    pub fn next(&self, behaviour: Behaviour) {
        self.state().once.push_back(behaviour);
    }

    /// How the metadata service answers.
    pub fn metadata(&self, metadata: Metadata) {
        self.state().metadata = Some(metadata);
    }

    /// Requests seen so far, per route.
    pub fn counts(&self) -> Counts {
        self.state().counts
    }

    /// The client assertions the token endpoint received, in order.
    pub fn assertions_seen(&self) -> Vec<String> {
        self.state().assertions_seen.clone()
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<Mutex<State>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (tls, state) = (tls.clone(), state.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            }
        });
    }
}

type Reply = Response<Full<Bytes>>;

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    let bearer = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let metadata_header = req.headers().get("metadata").is_some_and(|v| v == "true");
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let reply = match (method, parts.as_slice()) {
        (Method::GET, ["metadata", "identity", "oauth2", "token"]) => {
            metadata_token(&state, metadata_header, &query).await
        }
        (Method::POST, [tenant, "oauth2", "v2.0", "token"]) => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            token(&state, tenant, &body)
        }
        (Method::GET, ["secrets", name]) => read(&state, bearer, &query, name, None).await,
        (Method::GET, ["secrets", name, version]) => {
            read(&state, bearer, &query, name, Some(version)).await
        }
        _ => kv_error(404, "NotFound", "The requested resource does not exist."),
    };
    Ok(reply)
}

/// `GET /secrets/{name}/[{version}]`: the challenge without a known token, then the behaviour,
/// then the stored secret.
async fn read(
    state: &Mutex<State>,
    bearer: Option<String>,
    query: &BTreeMap<String, String>,
    name: &str,
    version: Option<&str>,
) -> Reply {
    let behaviour = {
        let mut s = lock(state);
        let known = bearer
            .as_ref()
            .is_some_and(|t| s.issued.contains(t) || s.static_tokens.contains(t));
        if !known {
            s.counts.challenges += 1;
            return challenge(&s.vault_url);
        }
        s.counts.reads += 1;
        let scripted = s.once.pop_front();
        scripted.or(s.behaviour).unwrap_or(Behaviour::Normal)
    };
    if !query.contains_key("api-version") {
        return kv_error(
            400,
            "BadParameter",
            "The request URI must contain an api-version parameter.",
        );
    }
    match behaviour {
        Behaviour::Fail(401) => return challenge(&lock(state).vault_url),
        Behaviour::Fail(403) => return forbidden(),
        Behaviour::Fail(code) => {
            return kv_error(code, "InternalServerError", "The service failed.")
        }
        Behaviour::Throttle(secs) => return throttled(secs),
        Behaviour::Slow(delay) => tokio::time::sleep(delay).await,
        Behaviour::Normal => {}
    }
    stored(&lock(state), name, version)
}

/// The stored secret, 404 `SecretNotFound`, or 403 `SecretDisabled`.
fn stored(s: &State, name: &str, version: Option<&str>) -> Reply {
    if s.disabled.contains(name) {
        let body = json!({"error": {"code": "Forbidden",
            "message": "Operation get is not allowed on a disabled secret.",
            "innererror": {"code": "SecretDisabled"}}});
        return json_reply(403, &body);
    }
    let versions = s.secrets.get(name);
    let found = match version {
        None => versions.and_then(|v| v.last()),
        Some(id) => versions.and_then(|v| v.iter().find(|v| v.id == id)),
    };
    let Some(found) = found else {
        let what = version
            .map(|v| format!("{name}/{v}"))
            .unwrap_or_else(|| name.to_string());
        let message = format!("A secret with (name/id) {what} was not found in this key vault.");
        return kv_error(404, "SecretNotFound", &message);
    };
    let body = json!({
        "value": found.value,
        "id": format!("{}/secrets/{name}/{}", s.vault_url, found.id),
        "attributes": {"enabled": true, "created": 1_767_225_600, "updated": 1_767_225_600,
                       "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90},
        "tags": {}
    });
    json_reply(200, &body)
}

/// `POST /{tenant}/oauth2/v2.0/token` with a client secret or a client assertion.
fn token(state: &Mutex<State>, tenant: &str, body: &[u8]) -> Reply {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let mut s = lock(state);
    s.counts.tokens += 1;
    let field = |name: &str| form.get(name).map(String::as_str);
    if tenant != TENANT {
        return entra_error(
            400,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    if field("grant_type") != Some("client_credentials") {
        return entra_error(
            400,
            "unsupported_grant_type",
            70003,
            "The grant type is not supported.",
        );
    }
    if field("scope") != Some(&format!("{RESOURCE}/.default")) {
        return entra_error(
            400,
            "invalid_scope",
            70011,
            "The provided scope is not valid.",
        );
    }
    let accepted = match (field("client_secret"), field("client_assertion")) {
        (Some(secret), _) => field("client_id") == Some(CLIENT_ID) && secret == CLIENT_SECRET,
        (None, Some(assertion)) => {
            s.assertions_seen.push(assertion.to_string());
            field("client_assertion_type")
                == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                && s.assertions.contains(assertion)
        }
        (None, None) => false,
    };
    if !accepted {
        return entra_error(
            401,
            "invalid_client",
            7_000_215,
            "Invalid client secret provided.",
        );
    }
    let (token, lifetime) = issue(&mut s);
    json_reply(
        200,
        &json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                "access_token": token}),
    )
}

/// `GET /metadata/identity/oauth2/token?resource=...` with `Metadata: true`.
async fn metadata_token(
    state: &Mutex<State>,
    metadata_header: bool,
    query: &BTreeMap<String, String>,
) -> Reply {
    let mode = {
        let mut s = lock(state);
        s.counts.metadata += 1;
        s.metadata.unwrap_or(Metadata::Normal)
    };
    let bad = |text: &str| {
        json_reply(
            400,
            &json!({"error": "invalid_request", "error_description": text}),
        )
    };
    match mode {
        Metadata::Silent => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return bad("too late");
        }
        Metadata::NoIdentity => return bad("Identity not found"),
        Metadata::Normal => {}
    }
    if !metadata_header {
        return bad("Required metadata header not specified");
    }
    if query.get("resource").map(String::as_str) != Some(RESOURCE) {
        return bad("Invalid resource");
    }
    let (token, lifetime) = issue(&mut lock(state));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json_reply(
        200,
        &json!({"access_token": token, "expires_in": lifetime.to_string(),
                "expires_on": (now + lifetime).to_string(), "resource": RESOURCE,
                "token_type": "Bearer"}),
    )
}

/// A new token and its lifetime.
fn issue(s: &mut State) -> (String, u64) {
    s.serial += 1;
    let token = format!("{TOKEN_PREFIX}{:04}", s.serial);
    s.issued.insert(token.clone());
    (token, s.token_lifetime)
}

/// Key Vault's answer to a request without a (valid) bearer token.
fn challenge(vault_url: &str) -> Reply {
    let header = format!("Bearer authorization=\"{vault_url}/{TENANT}\", resource=\"{RESOURCE}\"");
    let body = json!({"error": {"code": "Unauthorized",
        "message": "AKV10000: Request is missing a Bearer or PoP token."}});
    let mut reply = json_reply(401, &body);
    reply
        .headers_mut()
        .insert(hyper::header::WWW_AUTHENTICATE, header.parse().unwrap());
    reply
}

/// An Azure RBAC refusal naming the caller, as Key Vault words it.
fn forbidden() -> Reply {
    let message = format!(
        "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny \
         assignments or role definitions were changed recently, please observe propagation \
         time.\r\nCaller: appid={CLIENT_ID};oid={OBJECT_ID};iss=https://sts.windows.net/{TENANT}/\
         \r\nAction: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'"
    );
    let body = json!({"error": {"code": "Forbidden", "message": message,
        "innererror": {"code": "ForbiddenByRbac"}}});
    json_reply(403, &body)
}

fn throttled(retry_after: u64) -> Reply {
    let body = json!({"error": {"code": "Throttled", "message": "Request was not processed \
        because too many requests were received. Reason: VaultRequestTypeLimitReached"}});
    let mut reply = json_reply(429, &body);
    reply
        .headers_mut()
        .insert(hyper::header::RETRY_AFTER, retry_after.into());
    reply
}

fn kv_error(status: u16, code: &str, message: &str) -> Reply {
    json_reply(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

fn entra_error(status: u16, error: &str, code: u32, description: &str) -> Reply {
    let description = format!("AADSTS{code}: {description}");
    json_reply(
        status,
        &json!({"error": error, "error_description": description, "error_codes": [code]}),
    )
}

fn json_reply(status: u16, body: &Value) -> Reply {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header(
            hyper::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// A fresh CA and a certificate for 127.0.0.1 and localhost signed by it; returns the CA's PEM
/// and the server's rustls config.
fn tls_material() -> (String, rustls::ServerConfig) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "credchain test Azure CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().unwrap();
    let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let mut leaf_params = CertificateParams::new(names).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "Key Vault double");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    (ca_cert.pem(), config)
}
