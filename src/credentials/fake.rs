//! A scripted credential source for unit tests: it answers with its steps in order and counts
//! its reads.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use credchain_core::{
    async_trait, CredentialSource, ErrorKind, Lifetime, Provenance, Resolved, Secret, SourceError,
};
use tokio::time::sleep;

#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    Value(&'static str),
    Absent,
    Fail(ErrorKind),
}

/// Answers with its steps in order, repeating the last; or reads a file when it has a path.
#[derive(Debug)]
pub(crate) struct Fake {
    only: Option<&'static str>,
    steps: Mutex<VecDeque<Step>>,
    file: Option<PathBuf>,
    lifetime: Lifetime,
    latency: Duration,
    reads: AtomicUsize,
}

impl Fake {
    pub(crate) fn new(lifetime: Lifetime, steps: &[Step]) -> Arc<Self> {
        Arc::new(Fake {
            only: None,
            steps: Mutex::new(steps.iter().copied().collect()),
            file: None,
            lifetime,
            latency: Duration::from_millis(50),
            reads: AtomicUsize::new(0),
        })
    }

    /// A fake that holds only `key`; reads of other keys find nothing and are not counted.
    pub(crate) fn keyed(key: &'static str, lifetime: Lifetime, steps: &[Step]) -> Arc<Self> {
        let mut fake = Arc::into_inner(Self::new(lifetime, steps)).expect("just made");
        fake.only = Some(key);
        Arc::new(fake)
    }

    pub(crate) fn file(path: &Path) -> Arc<Self> {
        Arc::new(Fake {
            only: None,
            steps: Mutex::new(VecDeque::new()),
            file: Some(path.to_path_buf()),
            lifetime: Lifetime::File(path.to_path_buf()),
            latency: Duration::ZERO,
            reads: AtomicUsize::new(0),
        })
    }

    pub(crate) fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    fn next_step(&self) -> Step {
        let mut steps = self.steps.lock().unwrap();
        if steps.len() > 1 {
            steps.pop_front().unwrap()
        } else {
            *steps.front().expect("a fake needs at least one step")
        }
    }
}

#[async_trait]
impl CredentialSource for Fake {
    fn name(&self) -> &str {
        "fake"
    }

    async fn fetch(&self, key: &str) -> Result<Option<Resolved>, SourceError> {
        if self.only.is_some_and(|only| only != key) {
            return Ok(None);
        }
        self.reads.fetch_add(1, Ordering::SeqCst);
        sleep(self.latency).await;
        let value = match &self.file {
            Some(path) => std::fs::read_to_string(path).unwrap(),
            None => match self.next_step() {
                Step::Value(v) => v.to_string(),
                Step::Absent => return Ok(None),
                Step::Fail(kind) => return Err(SourceError::new(kind, "the store is down")),
            },
        };
        Ok(Some(Resolved {
            value: Secret::new(value),
            provenance: Provenance {
                source: "fake".into(),
                location: format!("secret/{key}"),
                version: None,
            },
            lifetime: self.lifetime.clone(),
        }))
    }
}
