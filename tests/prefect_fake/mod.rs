//! A scripted stand-in for a Prefect API on a loopback socket, plain or over TLS with a fresh
//! rcgen CA. It records each request (method, path with query, headers, arrival time) and
//! answers through a closure, so tests can check exact request paths, retry delays and
//! certificate handling without a real server.
//!
//! Use from a test file with `mod prefect_fake;`.
#![allow(dead_code)] // each test binary uses part of it

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query, e.g. `/api/flows/filter`.
    pub path: String,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
    /// When it arrived.
    pub at: Instant,
}

impl Seen {
    /// `METHOD /path` without the query.
    pub fn line(&self) -> String {
        format!(
            "{} {}",
            self.method,
            self.path.split('?').next().unwrap_or_default()
        )
    }

    /// A header's value, `""` when absent.
    pub fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

/// An answer: status, extra headers, JSON body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Answer {
    /// An answer with a JSON body.
    pub fn json(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    /// The same answer with one more header.
    pub fn with(mut self, name: &'static str, value: &str) -> Answer {
        self.headers.push((name, value.to_string()));
        self
    }
}

type Script = dyn Fn(&Seen, usize) -> Answer + Send + Sync;

/// The running fake; stops when dropped.
pub struct FakePrefect {
    addr: SocketAddr,
    host: &'static str,
    scheme: &'static str,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
    /// The CA certificate (PEM) when serving TLS.
    pub ca_pem: Option<String>,
}

impl Drop for FakePrefect {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakePrefect {
    /// Plain HTTP; `script` gets each request and its 0-based number.
    pub async fn start(
        script: impl Fn(&Seen, usize) -> Answer + Send + Sync + 'static,
    ) -> FakePrefect {
        Self::serve(Arc::new(script), None).await
    }

    /// HTTPS with a certificate for `localhost` and `127.0.0.1` from a fresh CA.
    pub async fn start_tls(
        script: impl Fn(&Seen, usize) -> Answer + Send + Sync + 'static,
    ) -> FakePrefect {
        let (ca_pem, config) = tls_material();
        let mut fake = Self::serve(Arc::new(script), Some(config)).await;
        fake.ca_pem = Some(ca_pem);
        fake
    }

    async fn serve(script: Arc<Script>, tls: Option<rustls::ServerConfig>) -> FakePrefect {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
        let (scheme, host) = if acceptor.is_some() {
            ("https", "localhost")
        } else {
            ("http", "127.0.0.1")
        };
        let task = tokio::spawn(accept_loop(listener, acceptor, script, seen.clone()));
        FakePrefect {
            addr,
            host,
            scheme,
            seen,
            task,
            ca_pem: None,
        }
    }

    /// The API base URL, `http://127.0.0.1:PORT/api` (`https://localhost:PORT/api` over TLS).
    pub fn url(&self) -> String {
        format!("{}://{}:{}/api", self.scheme, self.host, self.addr.port())
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// `METHOD /path` of every request so far.
    pub fn lines(&self) -> Vec<String> {
        self.seen().iter().map(Seen::line).collect()
    }
}

/// Answers like a Prefect server with CSRF off and one flow.
pub fn prefect_like(seen: &Seen) -> Answer {
    match (
        seen.method.as_str(),
        seen.path.split('?').next().unwrap_or_default(),
    ) {
        ("GET", "/api/health") => Answer::json(200, "true"),
        ("GET", "/api/csrf-token") => {
            Answer::json(422, r#"{"detail":"CSRF protection is disabled."}"#)
        }
        ("GET", "/api/admin/version") => Answer::json(200, r#""3.9.1""#),
        ("POST", "/api/flows/filter") => Answer::json(200, r#"[{"id":"f1","name":"main-etl"}]"#),
        ("POST", "/api/flows/count") => Answer::json(200, "1"),
        ("POST", "/api/flows/") => Answer::json(200, r#"{"id":"f1","name":"main-etl"}"#),
        _ => Answer::json(404, r#"{"detail":"Not Found"}"#),
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    script: Arc<Script>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (tls, script, seen) = (tls.clone(), script.clone(), seen.clone());
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req| answer(req, script.clone(), seen.clone()));
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                None => drop(http.serve_connection(TokioIo::new(stream), service).await),
                Some(acceptor) => {
                    // A client that refuses the certificate ends the handshake here.
                    if let Ok(stream) = acceptor.accept(stream).await {
                        drop(http.serve_connection(TokioIo::new(stream), service).await);
                    }
                }
            }
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    script: Arc<Script>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let request = Seen {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    };
    let number = {
        let mut all = seen.lock().unwrap();
        all.push(request.clone());
        all.len() - 1
    };
    let reply = script(&request, number);
    let mut response = Response::builder()
        .status(reply.status)
        .header("content-type", "application/json");
    for (name, value) in reply.headers {
        response = response.header(name, value);
    }
    Ok(response.body(Full::new(Bytes::from(reply.body))).unwrap())
}

/// A fresh CA (its PEM) and a rustls server config with a certificate it signed.
fn tls_material() -> (String, rustls::ServerConfig) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "credchain test Prefect CA");
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let der_key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], der_key)
        .unwrap();
    (ca_pem, config)
}
