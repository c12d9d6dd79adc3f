//! A Kubernetes API server double: answers the Secret read
//! (`GET /api/v1/namespaces/{ns}/secrets/{name}`) with real `Secret` objects and errors with
//! real `Status` objects, and the TokenReview call
//! (`POST /apis/authentication.k8s.io/v1/tokenreviews`) that Vault's Kubernetes auth makes.
//! It checks bearer tokens, can answer 401, 403, 404, 500 or slowly, serves plain HTTP or TLS
//! with an rcgen CA, records the tokens it saw and counts requests.
//!
//! Use from a test file with `#[path = "doubles/kube_api.rs"] mod kube_api;`.
#![allow(dead_code)] // each test binary uses part of this double

#[path = "http_server.rs"]
mod http_server;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::{Method, Request};
use serde_json::{json, Value};

use http_server::{bearer, json_reply, Reply, Server};

/// How the double answers, whatever is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers from its state.
    Normal,
    /// Answers every request with this HTTP code and a matching `Status`.
    Fail(u16),
    /// Waits this long, then answers normally.
    Slow(Duration),
}

/// A service account the TokenReview call reports for a JWT.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid (JWT claims must carry the same).
    pub uid: String,
}

/// A running double. Stops when dropped.
pub struct KubeApi {
    server: Server,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    secrets: BTreeMap<(String, String), Stored>,
    tokens: BTreeSet<String>,
    reviews: BTreeMap<String, ServiceAccount>,
    behaviour: Option<Behaviour>,
    requests: usize,
    seen: Vec<Option<String>>,
    token_reviews: usize,
    version: u64,
}

struct Stored {
    data: BTreeMap<String, String>,
    resource_version: String,
}

impl KubeApi {
    /// A plain-HTTP double on 127.0.0.1 that accepts bearer token `token`.
    pub async fn start(token: &str) -> KubeApi {
        Self::serve(token, false).await
    }

    /// A TLS double; its certificate (for 127.0.0.1, localhost and kubernetes.default.svc) is
    /// signed by a fresh CA, see [`KubeApi::ca_pem`].
    pub async fn start_tls(token: &str) -> KubeApi {
        Self::serve(token, true).await
    }

    async fn serve(token: &str, tls: bool) -> KubeApi {
        let state = Arc::new(Mutex::new(State::default()));
        state.lock().unwrap().tokens.insert(token.to_string());
        let handler_state = state.clone();
        let server = http_server::start(tls, move |req| handle(handler_state.clone(), req)).await;
        KubeApi { server, state }
    }

    /// `http://127.0.0.1:PORT` or `https://…`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The CA certificate (PEM) of a TLS double.
    pub fn ca_pem(&self) -> &str {
        self.server.ca_pem.as_deref().expect("a TLS double")
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets `data[key]` of Secret `ns/name` to the base64 of `value` (creating the Secret).
    pub fn put(&self, ns: &str, name: &str, key: &str, value: &[u8]) {
        self.put_raw(ns, name, key, &STANDARD.encode(value));
    }

    /// Sets `data[key]` to `text` exactly as given (for invalid base64).
    pub fn put_raw(&self, ns: &str, name: &str, key: &str, text: &str) {
        self.change(ns, name, |data| {
            data.insert(key.to_string(), text.to_string());
        });
    }

    /// Removes `data[key]`; the Secret stays.
    pub fn remove_key(&self, ns: &str, name: &str, key: &str) {
        self.change(ns, name, |data| {
            data.remove(key);
        });
    }

    /// Deletes the Secret.
    pub fn delete(&self, ns: &str, name: &str) {
        self.state()
            .secrets
            .remove(&(ns.to_string(), name.to_string()));
    }

    fn change(&self, ns: &str, name: &str, edit: impl FnOnce(&mut BTreeMap<String, String>)) {
        let mut state = self.state();
        state.version += 1;
        let resource_version = state.version.to_string();
        let key = (ns.to_string(), name.to_string());
        let stored = state.secrets.entry(key).or_insert_with(|| Stored {
            data: BTreeMap::new(),
            resource_version: String::new(),
        });
        edit(&mut stored.data);
        stored.resource_version = resource_version;
    }

    /// Accepts bearer token `token` from now on.
    pub fn accept(&self, token: &str) {
        self.state().tokens.insert(token.to_string());
    }

    /// Refuses bearer token `token` (401) from now on.
    pub fn revoke(&self, token: &str) {
        self.state().tokens.remove(token);
    }

    /// Sets how the double answers.
    pub fn set(&self, behaviour: Behaviour) {
        self.state().behaviour = Some(behaviour);
    }

    /// Makes the TokenReview call authenticate `jwt` as `account`.
    pub fn review(&self, jwt: &str, account: ServiceAccount) {
        self.state().reviews.insert(jwt.to_string(), account);
    }

    /// How many requests arrived.
    pub fn requests(&self) -> usize {
        self.state().requests
    }

    /// How many TokenReviews authenticated a JWT.
    pub fn token_reviews(&self) -> usize {
        self.state().token_reviews
    }

    /// The bearer token of each request, in order (`None` without one).
    pub fn tokens_seen(&self) -> Vec<Option<String>> {
        self.state().seen.clone()
    }

    /// Writes a kubeconfig for this double into `dir` (user with a static `token`, context
    /// `double` with `namespace`) and returns its path.
    pub fn write_kubeconfig(&self, dir: &Path, token: &str, namespace: &str) -> PathBuf {
        let ca = match &self.server.ca_pem {
            Some(pem) => format!("    certificate-authority-data: {}\n", STANDARD.encode(pem)),
            None => String::new(),
        };
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster:\n    server: {}\n{ca}\
             contexts:\n- name: double\n  context:\n    cluster: double\n    user: etl\n    \
             namespace: {namespace}\ncurrent-context: double\nusers:\n- name: etl\n  user:\n    \
             token: {token}\n",
            self.url()
        );
        let path = dir.join("kubeconfig");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Lays out a service account directory in `dir` as the kubelet does: `token`, `ca.crt`
    /// (this double's CA) and `namespace`.
    pub fn write_service_account(&self, dir: &Path, token: &str, namespace: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("ca.crt"), self.ca_pem()).unwrap();
        std::fs::write(dir.join("namespace"), namespace).unwrap();
        rotate_token(dir, token);
    }
}

/// Replaces `dir/token` atomically (write aside, then rename), as a token rotation does.
pub fn rotate_token(dir: &Path, token: &str) {
    let aside = dir.join(".token.new");
    std::fs::write(&aside, token).unwrap();
    std::fs::rename(&aside, dir.join("token")).unwrap();
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Reply {
    let bearer = bearer(&req);
    let behaviour = {
        let mut s = state.lock().unwrap();
        s.requests += 1;
        s.seen.push(bearer.clone());
        s.behaviour.unwrap_or(Behaviour::Normal)
    };
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (behaviour, parts.as_slice()) {
        (Behaviour::Fail(code), ["api", "v1", "namespaces", ns, "secrets", name]) => {
            return failure(code, ns, name);
        }
        (Behaviour::Fail(code), _) => return failure(code, "", ""),
        (Behaviour::Slow(delay), _) => tokio::time::sleep(delay).await,
        (Behaviour::Normal, _) => {}
    }
    match (method, parts.as_slice()) {
        (Method::GET, ["api", "v1", "namespaces", ns, "secrets", name]) => {
            get_secret(&state, bearer.as_deref(), ns, name)
        }
        (Method::POST, ["apis", "authentication.k8s.io", "v1", "tokenreviews"]) => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            token_review(&state, bearer.as_deref(), &body)
        }
        _ => status(
            404,
            "NotFound",
            "the server could not find the requested resource",
            None,
        ),
    }
}

fn get_secret(state: &Mutex<State>, bearer: Option<&str>, ns: &str, name: &str) -> Reply {
    let state = state.lock().unwrap();
    if !bearer.is_some_and(|t| state.tokens.contains(t)) {
        return failure(401, ns, name);
    }
    let Some(stored) = state.secrets.get(&(ns.to_string(), name.to_string())) else {
        return failure(404, ns, name);
    };
    let secret = json!({
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": "0f6e1c52-7d3a-4d9b-9a51-5c2f7e3b8a10",
            "resourceVersion": stored.resource_version,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "data": stored.data,
        "type": "Opaque",
    });
    json_reply(200, &secret)
}

fn token_review(state: &Mutex<State>, bearer: Option<&str>, body: &[u8]) -> Reply {
    let mut state = state.lock().unwrap();
    let known = |t: &str| state.tokens.contains(t) || state.reviews.contains_key(t);
    if !bearer.is_some_and(known) {
        return failure(401, "", "");
    }
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let token = request["spec"]["token"].as_str().unwrap_or_default();
    let audiences = request["spec"]["audiences"].clone();
    let status = match state.reviews.get(token).cloned() {
        Some(account) => {
            state.token_reviews += 1;
            json!({
                "authenticated": true,
                "user": {
                    "username": format!("system:serviceaccount:{}:{}", account.namespace, account.name),
                    "uid": account.uid,
                    "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{}", account.namespace), "system:authenticated"],
                },
                "audiences": audiences,
            })
        }
        None => json!({ "authenticated": false, "error": "invalid bearer token" }),
    };
    let review = json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": { "creationTimestamp": null },
        "spec": { "audiences": audiences },
        "status": status,
    });
    json_reply(201, &review)
}

/// The `Status` a real API server sends for `code` on a Secret read.
fn failure(code: u16, ns: &str, name: &str) -> Reply {
    let details = Some(json!({ "name": name, "kind": "secrets" }));
    match code {
        401 => status(401, "Unauthorized", "Unauthorized", None),
        403 => status(
            403,
            "Forbidden",
            &format!(
                "secrets \"{name}\" is forbidden: User \"system:serviceaccount:{ns}:credchain\" \
                 cannot get resource \"secrets\" in API group \"\" in the namespace \"{ns}\""
            ),
            details,
        ),
        404 => status(
            404,
            "NotFound",
            &format!("secrets \"{name}\" not found"),
            details,
        ),
        500 => status(
            500,
            "InternalError",
            "Internal error occurred: etcdserver: request timed out",
            None,
        ),
        other => status(other, "", "the double was told to fail", None),
    }
}

fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Reply {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(details) = details {
        body["details"] = details;
    }
    json_reply(code, &body)
}
