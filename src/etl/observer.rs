//! What the pipeline tells the outside while it runs: log lines and progress, per step.
//!
//! The Prefect layer implements [`PipelineObserver`] to forward logs to Prefect's log API;
//! [`TerminalObserver`] writes them through `tracing` and draws a progress bar when stderr is
//! a terminal. Blocking workers report through a [`Reporter`], whose events the async side
//! hands to the observer, so an observer never runs on a worker thread.

use std::fmt;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc;

use super::error::EtlError;

/// How many rows a worker handles between two progress reports.
pub const PROGRESS_EVERY: u64 = 16 * 1024;
/// Events a worker may queue before it waits for the observer.
const EVENT_QUEUE: usize = 64;

/// One step of the pipeline; each becomes a Prefect task run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// Open or download the source, read the header, count and profile the records.
    Extract,
    /// Decide the column types, find the rejects, write the clean rows to a staging file.
    Transform,
    /// Write the clean rows into the database in one transaction.
    Load,
}

impl Step {
    /// The step's lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Step::Extract => "extract",
            Step::Transform => "transform",
            Step::Load => "load",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The level of a log line; the same four levels Prefect's log API knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Detail for debugging.
    Debug,
    /// Normal progress.
    Info,
    /// Something the user should look at; the run goes on.
    Warning,
    /// The step failed.
    Error,
}

impl LogLevel {
    /// The numeric level Python's logging and Prefect's log API use (10, 20, 30, 40).
    pub fn python_level(self) -> u8 {
        match self {
            LogLevel::Debug => 10,
            LogLevel::Info => 20,
            LogLevel::Warning => 30,
            LogLevel::Error => 40,
        }
    }
}

/// Receives the pipeline's log lines and progress. Called from async code, never from a
/// blocking worker; implementations should return quickly (buffer, do not send inline).
pub trait PipelineObserver: Send + Sync {
    /// One log line of `step`. Messages never hold a secret.
    fn log(&self, step: Step, level: LogLevel, message: &str);

    /// `done` rows of `step` are handled, out of `total` when known.
    fn progress(&self, step: Step, done: u64, total: Option<u64>);

    /// `step` ended, successfully or not.
    fn finished(&self, _step: Step) {}
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl PipelineObserver for NoopObserver {
    fn log(&self, _step: Step, _level: LogLevel, _message: &str) {}
    fn progress(&self, _step: Step, _done: u64, _total: Option<u64>) {}
}

/// Logs through `tracing` (target `credchain::etl`) and draws a progress bar per running step
/// on stderr when stderr is a terminal (transform and load run at the same time).
pub struct TerminalObserver {
    bars: Option<MultiProgress>,
    running: Mutex<Vec<(Step, ProgressBar)>>,
}

impl TerminalObserver {
    /// Progress bars only if stderr is a terminal.
    pub fn new() -> Self {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        TerminalObserver {
            bars,
            running: Mutex::new(Vec::new()),
        }
    }

    /// Never draws a bar; logs only.
    pub fn without_bar() -> Self {
        TerminalObserver {
            bars: None,
            running: Mutex::new(Vec::new()),
        }
    }
}

impl Default for TerminalObserver {
    fn default() -> Self {
        Self::new()
    }
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg:>9} [{bar:30}] {human_pos}/{human_len} rows {per_sec}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl PipelineObserver for TerminalObserver {
    fn log(&self, step: Step, level: LogLevel, message: &str) {
        let emit = || match level {
            LogLevel::Debug => tracing::debug!(target: "credchain::etl", step = %step, "{message}"),
            LogLevel::Info => tracing::info!(target: "credchain::etl", step = %step, "{message}"),
            LogLevel::Warning => {
                tracing::warn!(target: "credchain::etl", step = %step, "{message}")
            }
            LogLevel::Error => tracing::error!(target: "credchain::etl", step = %step, "{message}"),
        };
        match &self.bars {
            Some(bars) => bars.suspend(emit),
            None => emit(),
        }
    }

    fn progress(&self, step: Step, done: u64, total: Option<u64>) {
        let Some(bars) = &self.bars else { return };
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let bar = match running.iter().find(|(s, _)| *s == step) {
            Some((_, bar)) => bar.clone(),
            None => {
                let bar = bars.add(ProgressBar::no_length());
                bar.set_style(bar_style());
                bar.set_message(step.name());
                running.push((step, bar.clone()));
                bar
            }
        };
        bar.set_length(total.unwrap_or(done).max(done));
        bar.set_position(done);
    }

    fn finished(&self, step: Step) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = running.iter().position(|(s, _)| *s == step) {
            let (_, bar) = running.remove(i);
            bar.finish_and_clear();
            if let Some(bars) = &self.bars {
                bars.remove(&bar);
            }
        }
    }
}

/// An event a blocking worker sends to the async side.
#[derive(Debug)]
pub(crate) enum Event {
    Log(LogLevel, String),
    Progress(u64, Option<u64>),
}

/// The worker's end: sends log lines and (throttled) progress, and tells the worker when the
/// async side is gone (the step's future was dropped), so it stops before committing.
#[derive(Debug, Clone)]
pub(crate) struct Reporter {
    tx: mpsc::Sender<Event>,
    step: Step,
    total: Option<u64>,
}

impl Reporter {
    pub(crate) fn channel(step: Step, total: Option<u64>) -> (Reporter, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        (Reporter { tx, step, total }, rx)
    }

    /// A log line. If the receiver is gone the line is dropped: the step is being abandoned.
    pub(crate) fn log(&self, level: LogLevel, message: impl Into<String>) {
        let _ = self.tx.blocking_send(Event::Log(level, message.into()));
    }

    /// Reports progress every [`PROGRESS_EVERY`] rows; fails when the step was cancelled.
    pub(crate) fn tick(&self, done: u64) -> Result<(), EtlError> {
        if !done.is_multiple_of(PROGRESS_EVERY) {
            return Ok(());
        }
        self.progress(done);
        self.check()
    }

    /// Fails when the step was cancelled.
    pub(crate) fn check(&self) -> Result<(), EtlError> {
        if self.tx.is_closed() {
            return Err(EtlError::Cancelled { step: self.step });
        }
        Ok(())
    }

    /// Reports progress now.
    pub(crate) fn progress(&self, done: u64) {
        let _ = self.tx.blocking_send(Event::Progress(done, self.total));
    }
}

/// Runs `work` on a blocking thread and hands its events to `obs` until it ends.
pub(crate) async fn run_blocking<T: Send + 'static>(
    step: Step,
    total: Option<u64>,
    obs: &dyn PipelineObserver,
    work: impl FnOnce(Reporter) -> Result<T, EtlError> + Send + 'static,
) -> Result<T, EtlError> {
    let (reporter, mut rx) = Reporter::channel(step, total);
    let handle = tokio::task::spawn_blocking(move || work(reporter));
    while let Some(event) = rx.recv().await {
        dispatch(obs, step, event);
    }
    handle
        .await
        .map_err(|source| EtlError::JoinWorker { step, source })?
}

/// Hands one event to the observer.
fn dispatch(obs: &dyn PipelineObserver, step: Step, event: Event) {
    match event {
        Event::Log(level, message) => obs.log(step, level, &message),
        Event::Progress(done, total) => obs.progress(step, done, total),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_match_python() {
        assert_eq!(LogLevel::Warning.python_level(), 30);
        assert_eq!(Step::Transform.to_string(), "transform");
    }
}
