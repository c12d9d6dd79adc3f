//! Ships log lines to Prefect's log API in batches, off the path of the work that logs them.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::prefect::PrefectClient;

/// How often a partial batch is sent.
const FLUSH_INTERVAL: Duration = Duration::from_secs(2);
/// Most records in one request.
const MAX_BATCH: usize = 200;
/// The logger name Prefect shows for these lines.
const LOGGER: &str = "credchain.etl";

/// One log line as Prefect's `POST /logs/` takes it.
#[derive(Debug, Clone, Serialize)]
pub struct LogRecord {
    name: &'static str,
    level: u8,
    message: String,
    timestamp: String,
    flow_run_id: String,
    task_run_id: Option<String>,
}

/// Where log lines are handed over; cheap to clone.
#[derive(Debug, Clone)]
pub struct LogSink {
    tx: mpsc::UnboundedSender<LogRecord>,
}

impl LogSink {
    /// Queues a line for the flow run and, when given, the task run.
    pub fn send(&self, level: u8, message: &str, flow_run_id: &str, task_run_id: Option<&str>) {
        let record = LogRecord {
            name: LOGGER,
            level,
            message: message.to_string(),
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            flow_run_id: flow_run_id.to_string(),
            task_run_id: task_run_id.map(str::to_string),
        };
        // The shipper is gone only after `finish`; a line sent later has nowhere to go.
        let _ = self.tx.send(record);
    }
}

/// The background task that sends queued lines.
#[derive(Debug)]
pub struct LogShipper {
    sink: LogSink,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl LogShipper {
    /// Starts shipping through `client`.
    pub fn start(client: PrefectClient) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(ship(client, rx, stopped));
        LogShipper {
            sink: LogSink { tx },
            stop,
            task,
        }
    }

    /// A handle to queue lines with.
    pub fn sink(&self) -> LogSink {
        self.sink.clone()
    }

    /// Sends what is queued and stops, whether or not clones of the sink are still alive;
    /// lines queued after this are dropped, so call it when the run's work is done.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn ship(
    client: PrefectClient,
    mut rx: mpsc::UnboundedReceiver<LogRecord>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut warned = false;
    let mut stopping = false;
    loop {
        let open = if stopping {
            drain(&mut rx, &mut batch)
        } else {
            collect(&mut rx, &mut batch, &mut stopped, &mut stopping).await
        };
        if !batch.is_empty() {
            if let Err(error) = client
                .post_json::<serde_json::Value>("/logs/", &batch)
                .await
            {
                if !warned {
                    warn!(error = %error, "cannot send log lines to Prefect; they stay in the local log");
                    warned = true;
                }
            }
            batch.clear();
        }
        if !open {
            return;
        }
    }
}

/// Fills `batch` until it is full or the flush interval passes (returns true), until every
/// sink is gone (returns false), or until the shipper is told to stop (then drains).
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<LogRecord>,
    batch: &mut Vec<LogRecord>,
    stopped: &mut oneshot::Receiver<()>,
    stopping: &mut bool,
) -> bool {
    let deadline = tokio::time::sleep(FLUSH_INTERVAL);
    tokio::pin!(deadline);
    while batch.len() < MAX_BATCH {
        tokio::select! {
            record = rx.recv() => match record {
                Some(record) => batch.push(record),
                None => return false,
            },
            _ = &mut *stopped => {
                *stopping = true;
                return drain(rx, batch);
            }
            _ = &mut deadline => return true,
        }
    }
    true
}

/// Takes what is queued now, up to a full batch. True while more may be queued.
fn drain(rx: &mut mpsc::UnboundedReceiver<LogRecord>, batch: &mut Vec<LogRecord>) -> bool {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(record) => batch.push(record),
            Err(_) => return false,
        }
    }
    true
}
