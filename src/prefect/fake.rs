//! A scripted Prefect server behind the [`Transport`] seam, for unit tests on paused time: it
//! records every request (with the paused clock's time) and answers through a closure.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use tokio::time::Instant;

use super::transport::{Incoming, Outgoing, Transport, TransportError};

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: Method,
    /// Path and query, `/api/flows/filter`.
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
    pub(crate) at: Instant,
}

impl Seen {
    /// A header's value as text, `""` when absent.
    pub(crate) fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }
}

type Handler = dyn Fn(&Seen) -> Result<Incoming, TransportError> + Send + Sync;

/// The fake server.
pub(crate) struct FakeServer {
    handler: Box<Handler>,
    seen: Mutex<Vec<Seen>>,
}

impl std::fmt::Debug for FakeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeServer")
    }
}

impl FakeServer {
    /// A server answering every request with `handler`.
    pub(crate) fn new(
        handler: impl Fn(&Seen) -> Result<Incoming, TransportError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(FakeServer {
            handler: Box::new(handler),
            seen: Mutex::new(Vec::new()),
        })
    }

    /// Every request so far.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// `METHOD /path` of every request so far, with the CSRF client id cut off.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.seen()
            .iter()
            .map(|s| {
                format!(
                    "{} {}",
                    s.method,
                    s.path.split('?').next().unwrap_or_default()
                )
            })
            .collect()
    }
}

#[async_trait]
impl Transport for FakeServer {
    async fn send(&self, request: Outgoing) -> Result<Incoming, TransportError> {
        let url = url::Url::parse(&request.url).expect("the client sends absolute URLs");
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        };
        let seen = Seen {
            method: request.method,
            path,
            headers: request.headers,
            body: request.body,
            at: Instant::now(),
        };
        self.seen.lock().unwrap().push(seen.clone());
        tokio::task::yield_now().await;
        (self.handler)(&seen)
    }
}

/// An answer with a JSON (or any) body.
pub(crate) fn reply(status: u16, body: &str) -> Result<Incoming, TransportError> {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    Ok(Incoming {
        status: StatusCode::from_u16(status).unwrap(),
        headers,
        body: Bytes::from(body.to_string()),
    })
}

/// `answer` with one more header.
pub(crate) fn with_header(
    answer: Result<Incoming, TransportError>,
    name: &'static str,
    value: &'static str,
) -> Result<Incoming, TransportError> {
    answer.map(|mut a| {
        a.headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
        a
    })
}

/// The answer of a server with CSRF protection off.
pub(crate) fn csrf_disabled() -> Result<Incoming, TransportError> {
    reply(422, r#"{"detail":"CSRF protection is disabled."}"#)
}
