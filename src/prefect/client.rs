//! [`PrefectClient`]: sends requests with the current credential, retries what is worth
//! retrying, replaces a rejected credential through [`Credentials::rejected`], and turns every
//! other outcome into a typed answer or a [`RequestError`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use credchain_core::{Environment, ProcessEnv};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{debug, info};

use crate::config::PrefectSettings;
use crate::credentials::{CredError, Credentials, Current};

use super::auth::AuthMode;
use super::csrf::{self, Csrf};
use super::error::{RejectedCredential, RequestError, SetupError, Unreachable};
use super::retry::{is_retryable, RetryPolicy};
use super::transport::{
    Incoming, Outgoing, ReqwestTransport, Transport, TransportError, TransportSettings,
};
use super::url::ApiUrl;
use super::Flow;

/// The key holding the API URL.
pub const API_URL: &str = "PREFECT_API_URL";
/// The API version sent in `X-PREFECT-API-VERSION`.
pub const API_VERSION: &str = "0.8.4";
/// The header carrying [`API_VERSION`].
pub const API_VERSION_HEADER: &str = "x-prefect-api-version";
/// Sent as `User-Agent`. Deliberately not `prefect/...`: Prefect gives clients it recognises
/// lease duties (deployment concurrency) that this client does not take on.
pub const CLIENT_USER_AGENT: &str = concat!("credchain/", env!("CARGO_PKG_VERSION"));
/// How many different values a request may try after 401s before it gives up.
const MAX_ROTATIONS: u32 = 3;

/// A client of one Prefect server. Cheap to clone; clones share connections, the CSRF token
/// and the credential cache.
#[derive(Debug, Clone)]
pub struct PrefectClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    api: ApiUrl,
    auth: AuthMode,
    creds: Credentials,
    transport: Arc<dyn Transport>,
    retry: RetryPolicy,
    csrf: Csrf,
    request_timeout: Duration,
    connect_timeout: Duration,
    /// Whether the server has answered this client once; until then a refused connection is
    /// reported at once instead of retried.
    answered: AtomicBool,
}

/// Sets up a [`PrefectClient`]. Nothing is sent until the first request.
#[derive(Debug)]
pub struct ClientBuilder {
    creds: Credentials,
    settings: PrefectSettings,
    env: Arc<dyn Environment>,
    transport: Option<Arc<dyn Transport>>,
    first_backoff: Option<Duration>,
}

impl ClientBuilder {
    /// Client settings (retries, timeouts); the defaults otherwise.
    pub fn settings(mut self, settings: &PrefectSettings) -> Self {
        self.settings = settings.clone();
        self
    }

    /// Where `PREFECT_API_SSL_CERT_FILE`, `SSL_CERT_FILE` and
    /// `PREFECT_API_TLS_INSECURE_SKIP_VERIFY` are read; the process environment otherwise.
    pub fn env(mut self, env: Arc<dyn Environment>) -> Self {
        self.env = env;
        self
    }

    /// Replaces the HTTP layer, for tests.
    #[cfg(test)]
    pub(crate) fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Starts the backoff at `first` instead of 1 s, for tests against real servers.
    #[doc(hidden)]
    pub fn first_backoff(mut self, first: Duration) -> Self {
        self.first_backoff = Some(first);
        self
    }

    /// Resolves the URL and decides how to authenticate. Fails before any request when
    /// `PREFECT_API_URL` is missing or breaks a rule, when both a key and an auth string are
    /// set, when a Prefect Cloud URL has no key, or when the CA file cannot be loaded.
    pub async fn build(self) -> Result<PrefectClient, SetupError> {
        let url = self
            .creds
            .get(API_URL)
            .await
            .map_err(|source| SetupError::ResolveKey {
                key: API_URL,
                source,
            })?
            .ok_or(SetupError::FindApiUrl)?;
        let api = ApiUrl::parse(url.value().expose()).map_err(SetupError::ParseApiUrl)?;
        let auth = AuthMode::choose(&self.creds, &api).await?;
        let transport = match self.transport {
            Some(transport) => transport,
            None => Arc::new(ReqwestTransport::new(
                &TransportSettings {
                    connect_timeout: self.settings.connect_timeout,
                    request_timeout: self.settings.request_timeout,
                    user_agent: CLIENT_USER_AGENT.to_string(),
                    https: api.as_str().starts_with("https://"),
                },
                self.env.as_ref(),
            )?),
        };
        let mut retry = RetryPolicy::new(self.settings.max_retries);
        if let Some(first) = self.first_backoff {
            retry.first_backoff = first;
        }
        debug!(api = %api, auth = auth.label(), "prefect client ready");
        Ok(PrefectClient {
            inner: Arc::new(Inner {
                csrf: Csrf::new(!api.is_cloud()),
                api,
                auth,
                creds: self.creds,
                transport,
                retry,
                request_timeout: self.settings.request_timeout,
                connect_timeout: self.settings.connect_timeout,
                answered: AtomicBool::new(false),
            }),
        })
    }
}

/// An answer other than 401 and 403, which are errors.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    method: Method,
    path: String,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    attempts: u32,
    server: String,
}

impl ApiResponse {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The raw body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// How many times the request was sent.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The server's error text (`detail` or `exception_message`), empty when there is none.
    pub fn detail(&self) -> String {
        super::detail::error_detail(&self.body)
    }

    /// Itself when the status is 2xx, else a [`RequestError::Status`].
    pub fn error_for_status(self) -> Result<Self, RequestError> {
        if self.status.is_success() {
            return Ok(self);
        }
        Err(RequestError::Status {
            detail: self.detail(),
            server: self.server,
            method: self.method.to_string(),
            path: self.path,
            status: self.status.as_u16(),
            attempts: self.attempts,
        })
    }

    /// The body as `T`; an empty body reads as JSON `null` (so `()` and `Option` accept it).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, RequestError> {
        let body: &[u8] = if self.body.is_empty() {
            b"null"
        } else {
            &self.body
        };
        serde_json::from_slice(body).map_err(|source| RequestError::DecodeBody {
            server: self.server.clone(),
            method: self.method.to_string(),
            path: self.path.clone(),
            source,
        })
    }
}

impl PrefectClient {
    /// A builder over the shared credential cache.
    pub fn builder(creds: Credentials) -> ClientBuilder {
        ClientBuilder {
            creds,
            settings: PrefectSettings::default(),
            env: Arc::new(ProcessEnv),
            transport: None,
            first_backoff: None,
        }
    }

    /// The API URL (no credentials in it).
    pub fn api_url(&self) -> &ApiUrl {
        &self.inner.api
    }

    /// How requests authenticate.
    pub fn auth_mode(&self) -> AuthMode {
        self.inner.auth
    }

    /// The credential cache the client draws from.
    pub fn credentials(&self) -> &Credentials {
        &self.inner.creds
    }

    /// Sends `method path` with an optional JSON body, and returns any answer but 401 and 403
    /// (404, 409, 423 and the like are answers for the caller to judge).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<ApiResponse, RequestError> {
        let body = body.map(|value| Bytes::from(value.to_string()));
        let csrf = is_mutating(&method);
        let (reply, attempts) = self.exchange(&method, path, body, csrf).await?;
        if reply.status == StatusCode::FORBIDDEN {
            return Err(RequestError::Forbidden {
                server: self.server(),
                method: method.to_string(),
                path: path.to_string(),
                detail: super::detail::error_detail(&reply.body),
            });
        }
        Ok(ApiResponse {
            method,
            path: path.to_string(),
            status: reply.status,
            headers: reply.headers,
            body: reply.body,
            attempts,
            server: self.server(),
        })
    }

    /// `GET path`, expecting 2xx and JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, RequestError> {
        self.send(Method::GET, path, None)
            .await?
            .error_for_status()?
            .json()
    }

    /// `POST path` with a JSON body, expecting 2xx and JSON.
    pub async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, RequestError> {
        let body = self.to_json(&Method::POST, path, body)?;
        self.send(Method::POST, path, Some(&body))
            .await?
            .error_for_status()?
            .json()
    }

    /// `PATCH path` with a JSON body, expecting 2xx; an empty answer reads as `null`.
    pub async fn patch_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, RequestError> {
        let body = self.to_json(&Method::PATCH, path, body)?;
        self.send(Method::PATCH, path, Some(&body))
            .await?
            .error_for_status()?
            .json()
    }

    /// `DELETE path`, expecting 2xx.
    pub async fn delete(&self, path: &str) -> Result<(), RequestError> {
        self.send(Method::DELETE, path, None)
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// `GET /health`: the server is up and `PREFECT_API_URL` points at its API. A 404 or an
    /// HTML page means the URL probably lacks `/api`.
    pub async fn health(&self) -> Result<(), RequestError> {
        let answer = self.send(Method::GET, "/health", None).await?;
        let html = super::detail::is_html(&answer.headers, &answer.body);
        if answer.status == StatusCode::NOT_FOUND || (answer.status.is_success() && html) {
            let what = if html {
                "an HTML page".to_string()
            } else {
                "404 Not Found".to_string()
            };
            return Err(RequestError::CheckApi {
                server: self.server(),
                answer: what,
            });
        }
        let answer = answer.error_for_status()?;
        match answer.json::<serde_json::Value>() {
            Ok(serde_json::Value::Bool(true)) => Ok(()),
            _ => Err(RequestError::CheckApi {
                server: self.server(),
                answer: "something other than `true`".to_string(),
            }),
        }
    }

    /// `GET /admin/version`: the Prefect package version of the server.
    pub async fn server_version(&self) -> Result<String, RequestError> {
        self.get("/admin/version").await
    }

    /// `POST /flows/filter`: up to `limit` flows (Prefect allows at most 200).
    pub async fn read_flows(&self, limit: u32) -> Result<Vec<Flow>, RequestError> {
        self.post_json("/flows/filter", &serde_json::json!({ "limit": limit }))
            .await
    }

    /// `POST /flows/count`: how many flows the credential can see.
    pub async fn count_flows(&self) -> Result<u64, RequestError> {
        self.post_json("/flows/count", &serde_json::json!({})).await
    }

    /// `POST /flows/`: creates the flow, or returns the existing one of that name.
    pub async fn create_flow(&self, name: &str) -> Result<Flow, RequestError> {
        self.post_json("/flows/", &serde_json::json!({ "name": name }))
            .await
    }

    fn server(&self) -> String {
        self.inner.api.to_string()
    }

    fn to_json(
        &self,
        method: &Method,
        path: &str,
        body: &impl Serialize,
    ) -> Result<serde_json::Value, RequestError> {
        serde_json::to_value(body).map_err(|source| RequestError::DecodeBody {
            server: self.server(),
            method: method.to_string(),
            path: path.to_string(),
            source,
        })
    }

    /// Sends until there is an answer to hand back: retries, CSRF refreshes and credential
    /// rotations happen here. Returns the answer and how many times the request was sent.
    async fn exchange(
        &self,
        method: &Method,
        path: &str,
        body: Option<Bytes>,
        csrf: bool,
    ) -> Result<(Incoming, u32), RequestError> {
        let mut tally = Tally::default();
        loop {
            let credential = self.credential().await?;
            let csrf_headers = if csrf {
                self.csrf_headers().await?
            } else {
                Vec::new()
            };
            let request = self.outgoing(
                method,
                path,
                body.clone(),
                credential.as_ref(),
                csrf_headers,
            );
            tally.sends += 1;
            let next = match self.inner.transport.send(request).await {
                Ok(reply) => {
                    let sent = Sent {
                        method,
                        path,
                        credential,
                        csrf,
                    };
                    self.after_answer(sent, reply, &mut tally).await?
                }
                Err(error) => self.after_failure(method, path, error, &mut tally)?,
            };
            match next {
                Next::Again => {}
                Next::Wait(wait) => tokio::time::sleep(wait).await,
                Next::Done(reply) => return Ok((reply, tally.sends)),
            }
        }
    }

    /// Decides what follows an answer: a rotated credential after 401, a new CSRF token after
    /// a token refusal, a retry after a retryable status, or the answer itself.
    async fn after_answer(
        &self,
        sent: Sent<'_>,
        reply: Incoming,
        tally: &mut Tally,
    ) -> Result<Next, RequestError> {
        let (method, path) = (sent.method, sent.path);
        let status = reply.status.as_u16();
        debug!(%method, path, status, attempt = tally.sends, "prefect request");
        self.inner.answered.store(true, Ordering::Relaxed);
        if reply.status == StatusCode::UNAUTHORIZED {
            self.rotate(method, path, sent.credential, &reply, &mut tally.rotations)
                .await?;
            return Ok(Next::Again);
        }
        if sent.csrf
            && !tally.csrf_resent
            && csrf::is_token_refusal(&reply)
            && self.inner.csrf.invalidate().await
        {
            debug!(%method, path, "CSRF token refused; fetching a new one");
            tally.csrf_resent = true;
            return Ok(Next::Again);
        }
        if is_retryable(reply.status) && tally.retries < self.inner.retry.max_retries {
            tally.retries += 1;
            let wait = self.inner.retry.delay(tally.retries, Some(&reply.headers));
            debug!(%method, path, status, ?wait, "retrying");
            return Ok(Next::Wait(wait));
        }
        Ok(Next::Done(reply))
    }

    /// Decides what follows a request that got no answer: a retry, or the error.
    fn after_failure(
        &self,
        method: &Method,
        path: &str,
        error: TransportError,
        tally: &mut Tally,
    ) -> Result<Next, RequestError> {
        debug!(%method, path, attempt = tally.sends, error = ?error, "prefect request failed");
        if self.may_retry_transport(&error) && tally.retries < self.inner.retry.max_retries {
            tally.retries += 1;
            return Ok(Next::Wait(self.inner.retry.delay(tally.retries, None)));
        }
        Err(self.unreachable(error, tally.sends))
    }

    async fn credential(&self) -> Result<Option<Current>, RequestError> {
        let Some(key) = self.inner.auth.key() else {
            return Ok(None);
        };
        match self.inner.creds.get(key).await {
            Ok(Some(current)) => Ok(Some(current)),
            // The key was there when the client was built; gone now means its source lost it.
            Ok(None) => Err(RequestError::ResolveKey {
                server: self.server(),
                key,
                source: Box::new(CredError::ResolveKey {
                    key: key.to_string(),
                    source: Arc::new(crate::chain::ResolveError::NotFound {
                        key: key.to_string(),
                        tried: Vec::new(),
                    }),
                }),
            }),
            Err(source) => Err(RequestError::ResolveKey {
                server: self.server(),
                key,
                source: Box::new(source),
            }),
        }
    }

    /// After a 401: asks the cache for a replacement of the value sent. `Ok` means send again.
    async fn rotate(
        &self,
        method: &Method,
        path: &str,
        sent: Option<Current>,
        reply: &Incoming,
        rotations: &mut u32,
    ) -> Result<(), RequestError> {
        let unauthorized = |credential: Option<RejectedCredential>| RequestError::Unauthorized {
            server: self.server(),
            method: method.to_string(),
            path: strip_query(path).to_string(),
            credential: credential.map(Box::new),
            detail: super::detail::error_detail(&reply.body),
        };
        let (Some(sent), Some(key)) = (sent, self.inner.auth.key()) else {
            return Err(unauthorized(None));
        };
        let rejected = |changed| RejectedCredential {
            key,
            from: sent.provenance().to_string(),
            changed,
        };
        if *rotations >= MAX_ROTATIONS {
            return Err(unauthorized(Some(rejected(true))));
        }
        match self.inner.creds.rejected(key, &sent).await {
            Ok(new) if new.generation() != sent.generation() => {
                *rotations += 1;
                info!(key, from = %new.provenance(), "credential rejected (401); sending the new value");
                Ok(())
            }
            Ok(_) | Err(CredError::ReplaceRejected { .. }) => {
                Err(unauthorized(Some(rejected(*rotations > 0))))
            }
            Err(source) => Err(RequestError::ResolveKey {
                server: self.server(),
                key,
                source: Box::new(source),
            }),
        }
    }

    async fn csrf_headers(
        &self,
    ) -> Result<Vec<(reqwest::header::HeaderName, HeaderValue)>, RequestError> {
        self.inner
            .csrf
            .headers(|| async {
                let path = self.inner.csrf.token_path();
                let (reply, attempts) =
                    Box::pin(self.exchange(&Method::GET, &path, None, false)).await?;
                csrf::read_answer(reply).map_err(|reply| {
                    self.status_error(&Method::GET, "/csrf-token", *reply, attempts)
                })
            })
            .await
    }

    fn status_error(
        &self,
        method: &Method,
        path: &str,
        reply: Incoming,
        attempts: u32,
    ) -> RequestError {
        let detail = super::detail::error_detail(&reply.body);
        let (server, method, path) = (self.server(), method.to_string(), path.to_string());
        match reply.status.as_u16() {
            403 => RequestError::Forbidden {
                server,
                method,
                path,
                detail,
            },
            status => RequestError::Status {
                server,
                method,
                path,
                status,
                detail,
                attempts,
            },
        }
    }

    fn outgoing(
        &self,
        method: &Method,
        path: &str,
        body: Option<Bytes>,
        credential: Option<&Current>,
        csrf_headers: Vec<(reqwest::header::HeaderName, HeaderValue)>,
    ) -> Outgoing {
        let mut headers = HeaderMap::new();
        headers.insert(USER_AGENT, HeaderValue::from_static(CLIENT_USER_AGENT));
        headers.insert(API_VERSION_HEADER, HeaderValue::from_static(API_VERSION));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if body.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(value) = credential.and_then(|c| self.inner.auth.header(c)) {
            headers.insert(AUTHORIZATION, value);
        }
        for (name, value) in csrf_headers {
            headers.insert(name, value);
        }
        Outgoing {
            method: method.clone(),
            url: self.inner.api.join(path),
            headers,
            body,
        }
    }

    /// Connection failures are retried only once the server has answered this client: before
    /// that, a refused or silent port means a wrong URL or a server that is not running, and
    /// six attempts of a minute each would only hide it.
    fn may_retry_transport(&self, error: &TransportError) -> bool {
        error.is_transient() && self.inner.answered.load(Ordering::Relaxed)
    }

    fn unreachable(&self, error: TransportError, attempts: u32) -> RequestError {
        let api = &self.inner.api;
        let (host, port) = (api.host().to_string(), api.port());
        let problem = match error {
            TransportError::Refused => Unreachable::Refused { host, port },
            TransportError::Dns => Unreachable::Dns { host },
            TransportError::Tls(problem) => Unreachable::Tls { host, problem },
            TransportError::ConnectTimeout => Unreachable::Timeout {
                host,
                port,
                after: self.inner.connect_timeout,
                connecting: true,
            },
            TransportError::Timeout => Unreachable::Timeout {
                host,
                port,
                after: self.inner.request_timeout,
                connecting: false,
            },
            TransportError::Connection(detail) => Unreachable::Connection { host, port, detail },
        };
        RequestError::Unreachable {
            server: self.server(),
            problem,
            attempts,
        }
    }
}

/// What one request has used up so far.
#[derive(Debug, Default)]
struct Tally {
    sends: u32,
    retries: u32,
    rotations: u32,
    csrf_resent: bool,
}

/// What was sent, for deciding what follows its answer.
struct Sent<'a> {
    method: &'a Method,
    path: &'a str,
    credential: Option<Current>,
    csrf: bool,
}

/// What [`PrefectClient::exchange`] does next.
enum Next {
    /// Send again at once.
    Again,
    /// Send again after a wait.
    Wait(Duration),
    /// Hand this answer back.
    Done(Incoming),
}

fn is_mutating(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

fn strip_query(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}
