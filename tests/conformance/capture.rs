//! Captures everything a test could leak a secret through (TRACE logs, errors with their whole
//! cause chain, `Debug` of resolved values) and asserts that no secret is in it.
#![allow(dead_code)] // some test binaries include this file alone

use std::error::Error as StdError;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use credchain::core::{Resolved, SourceError};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::fmt::MakeWriter;

/// Collects the logs of the current thread at TRACE level while it is alive, plus any text the
/// test adds with [`Capture::record`].
pub struct Capture {
    buffer: Buffer,
    _guard: DefaultGuard,
}

impl Capture {
    /// Starts capturing this thread's logs (a `#[tokio::test]` runs on one thread).
    pub fn start() -> Self {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(buffer.clone())
            .finish();
        Capture {
            _guard: tracing::subscriber::set_default(subscriber),
            buffer,
        }
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.0.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
    }

    /// Adds what a fetch returned, as a program could print it.
    pub fn record(&self, outcome: &Result<Option<Resolved>, SourceError>) {
        let text = printed(outcome);
        self.buffer
            .0
            .lock()
            .unwrap()
            .extend_from_slice(text.as_bytes());
    }

    /// Adds any printable thing (a diagnosis, a provenance).
    pub fn record_debug(&self, thing: &dyn std::fmt::Debug) {
        let text = format!("{thing:?}\n");
        self.buffer
            .0
            .lock()
            .unwrap()
            .extend_from_slice(text.as_bytes());
    }

    /// Fails the test if any secret, or any piece of one between control characters, was
    /// captured.
    pub fn assert_hidden(&self, secrets: &[&str]) {
        let text = self.text();
        for secret in secrets {
            for piece in pieces(secret) {
                assert!(
                    !text.contains(piece),
                    "a secret (or a {}-byte piece of one) reached the captured output",
                    piece.len()
                );
            }
        }
    }
}

/// How a program could print a fetch result: `Debug` of the value, or the error's `Display`
/// and `Debug` along its whole cause chain.
pub fn printed(outcome: &Result<Option<Resolved>, SourceError>) -> String {
    match outcome {
        Ok(resolved) => format!("{resolved:?}\n{resolved:#?}\n"),
        Err(err) => {
            let mut text = format!("{err:?}\n{}\n", err.hint().unwrap_or_default());
            let mut link: Option<&(dyn StdError + 'static)> = Some(err);
            while let Some(e) = link {
                text.push_str(&format!("{e}\n{e:?}\n"));
                link = e.source();
            }
            text
        }
    }
}

/// The secret and each part of it between control characters that is long enough to mean
/// something (so `pnu_A\nB` checks `pnu_A` too).
fn pieces(secret: &str) -> impl Iterator<Item = &str> {
    std::iter::once(secret)
        .chain(secret.split(char::is_control))
        .filter(|p| p.len() >= 4)
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
