//! Key rotation while a client is busy: through the real nginx gateway in front of Prefect with
//! the key in a `.env` file, and against a recording stand-in that shows which key each request
//! carried. Also a store that lags behind the server, and one that never catches up.

mod prefect_fake;
mod support;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use credchain::chain::{Chain, Link};
use credchain::config::PrefectSettings;
use credchain::credentials::Credentials;
use credchain::exit::{error_chain, Exit};
use credchain::prefect::PrefectClient;
use credchain::sources::{DotenvSource, EnvSource};
use credchain_core::{
    async_trait, CredentialSource, Lifetime, MapEnv, Provenance, Resolved, Secret, SourceError,
    SourceSettings,
};
use prefect_fake::{prefect_like, Answer, FakePrefect};
use support::{assert_no_secret, Gateway, Role};

const OLD: &str = "pnu_FAKE_ROTATE_OLD_0001";
const NEW: &str = "pnu_FAKE_ROTATE_NEW_0002";
const WORKERS: usize = 50;
/// A worker stops after this many requests even if the test never tells it to.
const MAX_REQUESTS_PER_WORKER: usize = 400;

/// Counts the reads of `PREFECT_API_KEY` from the source it wraps.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn CredentialSource>,
    reads: AtomicUsize,
}

#[async_trait]
impl CredentialSource for Counting {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn fetch(&self, key: &str) -> Result<Option<Resolved>, SourceError> {
        if key == "PREFECT_API_KEY" {
            self.reads.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.fetch(key).await
    }
}

/// Returns the key values in order (the last repeats), as a remote store would.
#[derive(Debug)]
struct Scripted {
    values: Mutex<VecDeque<&'static str>>,
    reads: AtomicUsize,
}

#[async_trait]
impl CredentialSource for Scripted {
    fn name(&self) -> &str {
        "scripted-store"
    }

    async fn fetch(&self, key: &str) -> Result<Option<Resolved>, SourceError> {
        if key != "PREFECT_API_KEY" {
            return Ok(None);
        }
        self.reads.fetch_add(1, Ordering::SeqCst);
        let mut values = self.values.lock().unwrap();
        let value = if values.len() > 1 {
            values.pop_front().unwrap()
        } else {
            values[0]
        };
        Ok(Some(Resolved {
            value: Secret::new(value),
            provenance: Provenance {
                source: "scripted-store".into(),
                location: "secret/prefect#key".into(),
                version: None,
            },
            lifetime: Lifetime::Remote { expires_in: None },
        }))
    }
}

/// A `.env` source reading `path`, wrapped to count its reads of the key.
fn counted_dotenv(path: &std::path::Path) -> Arc<Counting> {
    let env = Arc::new(MapEnv::default());
    let dotenv = DotenvSource::new(
        SourceSettings::new("dotenv"),
        path.display().to_string(),
        env,
    );
    Arc::new(Counting {
        inner: Arc::new(dotenv),
        reads: AtomicUsize::new(0),
    })
}

fn link(source: Arc<dyn CredentialSource>, name: &str) -> Link {
    Link {
        source,
        settings: SourceSettings::new(name),
    }
}

fn env_link(url: &str) -> Link {
    let env = Arc::new(MapEnv::new([("PREFECT_API_URL", url)]));
    link(
        Arc::new(EnvSource::new(SourceSettings::new("env"), env)),
        "env",
    )
}

async fn client(chain: Chain, bound: Duration) -> PrefectClient {
    PrefectClient::builder(Credentials::with_rejection_backoff(chain, bound))
        .settings(&PrefectSettings::default())
        .build()
        .await
        .unwrap()
}

/// `WORKERS` tasks sending `GET /admin/version` until `stop`; returns each one's count.
fn start_load(
    client: &PrefectClient,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<usize>> {
    (0..WORKERS)
        .map(|_| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut sent = 0;
                while !stop.load(Ordering::SeqCst) && sent < MAX_REQUESTS_PER_WORKER {
                    if let Err(error) = client.server_version().await {
                        panic!("a request failed during rotation: {}", error_chain(&error));
                    }
                    sent += 1;
                }
                sent
            })
        })
        .collect()
}

async fn finish_load(workers: Vec<tokio::task::JoinHandle<usize>>) {
    for worker in workers {
        assert!(worker.await.expect("worker") > 0);
    }
}

fn write_atomically(path: &std::path::Path, text: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// Rotation as docs/gateway.md describes it: the gateway accepts both keys, the store gets the
/// new key, then the gateway drops the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_through_the_gateway_reads_the_store_once() {
    let gateway = Gateway::start(&support::prefect_url(), &[(OLD, Role::Rw)]);
    let url = gateway.url();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join(".env");
    write_atomically(
        &env_file,
        &format!("PREFECT_API_URL={url}\nPREFECT_API_KEY={OLD}\n"),
    );
    let counting = counted_dotenv(&env_file);
    let client = client(
        Chain::new(vec![link(counting.clone(), "dotenv")]),
        Duration::from_secs(30),
    )
    .await;
    client.server_version().await.unwrap();
    assert_eq!(counting.reads.load(Ordering::SeqCst), 1);

    let stop = Arc::new(AtomicBool::new(false));
    let workers = start_load(&client, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gateway = set_keys(gateway, &[(OLD, Role::Rw), (NEW, Role::Rw)]).await;
    write_atomically(
        &env_file,
        &format!("PREFECT_API_URL={url}\nPREFECT_API_KEY={NEW}\n"),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gateway = set_keys(gateway, &[(NEW, Role::Rw)]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    finish_load(workers).await;

    assert_eq!(
        counting.reads.load(Ordering::SeqCst),
        2,
        "one read of the store for the whole rotation"
    );
    let old = reqwest::Client::new()
        .get(format!("{url}/admin/version"))
        .bearer_auth(OLD)
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401, "the old key is gone at the gateway");
    client.server_version().await.unwrap();
    drop(gateway);
}

async fn set_keys(mut gateway: Gateway, keys: &[(&'static str, Role)]) -> Gateway {
    let keys = keys.to_vec();
    tokio::task::spawn_blocking(move || {
        gateway.set_keys(&keys);
        gateway
    })
    .await
    .unwrap()
}

/// Which keys the stand-in accepts: 0 the old, 1 both, 2 the new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_carries_the_old_key_before_rotation_or_the_new_key_after() {
    let phase = Arc::new(AtomicUsize::new(0));
    let accepts = phase.clone();
    let fake = FakePrefect::start(move |seen, _| {
        let sent = seen.header("authorization");
        let ok = match accepts.load(Ordering::SeqCst) {
            0 => sent == format!("Bearer {OLD}"),
            1 => sent == format!("Bearer {OLD}") || sent == format!("Bearer {NEW}"),
            _ => sent == format!("Bearer {NEW}"),
        };
        if ok {
            prefect_like(seen)
        } else {
            Answer::json(401, r#"{"detail":"missing or unknown API key"}"#)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join(".env");
    write_atomically(&env_file, &format!("PREFECT_API_KEY={OLD}\n"));
    let counting = counted_dotenv(&env_file);
    let chain = Chain::new(vec![
        env_link(&fake.url()),
        link(counting.clone(), "dotenv"),
    ]);
    let client = client(chain, Duration::from_secs(30)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let workers = start_load(&client, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    phase.store(1, Ordering::SeqCst);
    let rotated = Instant::now();
    write_atomically(&env_file, &format!("PREFECT_API_KEY={NEW}\n"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    phase.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    finish_load(workers).await;

    let seen = fake.seen();
    assert!(seen.len() > WORKERS, "load was sent: {}", seen.len());
    let (mut old, mut new) = (0, 0);
    for request in &seen {
        match request.header("authorization") {
            k if k == format!("Bearer {OLD}") => old += 1,
            k if k == format!("Bearer {NEW}") && request.at >= rotated => new += 1,
            _ => panic!(
                "unexpected credential on {} (the new key before rotation?)",
                request.line()
            ),
        }
    }
    assert!(
        old > 0 && new > 0,
        "both keys were used: {old} old, {new} new"
    );
    assert_eq!(
        counting.reads.load(Ordering::SeqCst),
        2,
        "one read of the store for the whole rotation"
    );
}

fn scripted(values: &[&'static str]) -> Arc<Scripted> {
    Arc::new(Scripted {
        values: Mutex::new(values.iter().copied().collect()),
        reads: AtomicUsize::new(0),
    })
}

#[tokio::test]
async fn lagging_store_sends_the_old_key_once_then_the_new_one() {
    let fake = FakePrefect::start(|seen, _| {
        if seen.header("authorization") == format!("Bearer {NEW}") {
            prefect_like(seen)
        } else {
            Answer::json(401, r#"{"detail":"missing or unknown API key"}"#)
        }
    })
    .await;
    let store = scripted(&[OLD, OLD, OLD, NEW]);
    let chain = Chain::new(vec![
        env_link(&fake.url()),
        link(store.clone(), "scripted-store"),
    ]);
    let started = Instant::now();
    let version = client(chain, Duration::from_secs(30))
        .await
        .server_version()
        .await
        .unwrap();
    assert_eq!(version, "3.9.1");
    let sent: Vec<String> = fake
        .seen()
        .iter()
        .map(|s| s.header("authorization"))
        .collect();
    assert_eq!(
        sent,
        [format!("Bearer {OLD}"), format!("Bearer {NEW}")],
        "the old key once, then the new"
    );
    assert_eq!(
        store.reads.load(Ordering::SeqCst),
        4,
        "the first read, A twice more, then B"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "backed off 1 s and 2 s between reads"
    );
}

#[tokio::test]
async fn store_that_never_changes_fails_with_exit_4_naming_the_source() {
    let gateway = Gateway::start(&support::prefect_url(), &[(NEW, Role::Rw)]);
    let store = scripted(&[OLD]);
    let chain = Chain::new(vec![
        env_link(&gateway.url()),
        link(store.clone(), "scripted-store"),
    ]);
    let error = client(chain, Duration::from_secs(2))
        .await
        .read_flows(1)
        .await
        .unwrap_err();
    assert_eq!(error.exit(), Exit::Unauthorized);
    let text = format!("{} {}", error_chain(&error), error.hint());
    assert!(
        text.contains("scripted-store") && text.contains("PREFECT_API_KEY"),
        "{text}"
    );
    assert!(text.contains("same value"), "{text}");
    assert!(
        store.reads.load(Ordering::SeqCst) >= 3,
        "re-read while backing off"
    );
    assert_no_secret(&text, &[OLD, NEW]);
}
