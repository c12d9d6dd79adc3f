//! Helpers shared by the ETL integration tests: sample files, configs, a recording observer.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use credchain::etl::{
    Column, EtlError, LogLevel, Pipeline, PipelineConfig, PipelineObserver, ResolvedTarget, Step,
    Summary,
};

/// The birdstrikes sample shipped in examples/.
pub fn birdstrikes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/birdstrikes.csv")
}

/// A pipeline config from TOML lines inside `[pipeline]`; paths in it should be absolute.
pub fn config(body: &str) -> PipelineConfig {
    let text = format!("[pipeline]\n{body}");
    PipelineConfig::from_toml_str(&text, "test.toml", Path::new(".")).expect("valid test config")
}

/// TOML for a string value (paths with backslashes or quotes stay valid).
pub fn toml_str(value: impl AsRef<str>) -> String {
    toml::Value::String(value.as_ref().to_string()).to_string()
}

/// Writes `lines` as a file in `dir`.
pub fn write_file(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// The first `n` data rows of birdstrikes with a unique `id` column in front.
pub fn birdstrikes_with_ids(n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(birdstrikes()).unwrap();
    let mut lines = text.lines();
    let mut out = vec![format!("id,{}", lines.next().unwrap())];
    out.extend(
        lines
            .take(n)
            .enumerate()
            .map(|(i, l)| format!("{},{l}", i + 1)),
    );
    out
}

/// Every log line and progress report a run produced.
#[derive(Default)]
pub struct Recorder {
    pub logs: Mutex<Vec<(Step, LogLevel, String)>>,
    pub progress: Mutex<Vec<(Step, u64, Option<u64>)>>,
    pub finished: Mutex<Vec<Step>>,
}

impl Recorder {
    /// Every log message joined, for "no secret in the output" checks.
    pub fn all_text(&self) -> String {
        let logs = self.logs.lock().unwrap();
        logs.iter()
            .map(|(_, _, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl PipelineObserver for Recorder {
    fn log(&self, step: Step, level: LogLevel, message: &str) {
        self.logs
            .lock()
            .unwrap()
            .push((step, level, message.to_string()));
    }

    fn progress(&self, step: Step, done: u64, total: Option<u64>) {
        self.progress.lock().unwrap().push((step, done, total));
    }

    fn finished(&self, step: Step) {
        self.finished.lock().unwrap().push(step);
    }
}

/// Builds the pipeline with no credential keys.
pub fn pipeline(config: PipelineConfig) -> Pipeline {
    let target = ResolvedTarget::resolve(&config, |_| None).expect("target");
    Pipeline::new(config, target).expect("pipeline")
}

/// Runs the three steps one by one; returns the summary and the columns transform decided.
pub async fn run_steps(
    pipeline: &Pipeline,
    obs: &Recorder,
) -> Result<(Summary, Vec<Column>), EtlError> {
    let extracted = pipeline.extract(obs).await?;
    let transformed = pipeline.transform(extracted, obs).await?;
    let columns = transformed.columns().to_vec();
    let loaded = pipeline.load(transformed, obs).await?;
    Ok((loaded.into_summary(), columns))
}

/// The column named `name`.
pub fn column<'a>(columns: &'a [Column], name: &str) -> &'a Column {
    columns
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no column {name}"))
}
