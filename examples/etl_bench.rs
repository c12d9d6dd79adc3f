//! Runs one pipeline file through the ETL library and prints the summary; the credchain side
//! of `scripts/bench-etl` until `credchain run` is the whole command.
//!
//! ```text
//! cargo run --release --example etl_bench -- PIPELINE.toml
//! ```
//!
//! The keys that `target_key` and `password_key` name are read from the environment.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use credchain::core::Secret;
use credchain::etl::{LogLevel, Pipeline, PipelineConfig, PipelineObserver, ResolvedTarget, Step};

/// Prints how long each step took to stderr: wall time, and CPU time of the process.
struct StepTimer {
    started: Mutex<(Instant, f64)>,
}

/// User plus system CPU seconds of this process so far (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

impl PipelineObserver for StepTimer {
    fn log(&self, step: Step, level: LogLevel, message: &str) {
        if level >= LogLevel::Warning {
            eprintln!("{step}: {message}");
        }
    }

    fn progress(&self, _step: Step, _done: u64, _total: Option<u64>) {}

    fn finished(&self, step: Step) {
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        let (wall, cpu) = (started.0.elapsed().as_secs_f64(), cpu_seconds() - started.1);
        eprintln!("{step}: {wall:.2} s ({cpu:.2} s CPU)");
        *started = (Instant::now(), cpu_seconds());
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: etl_bench PIPELINE.toml");
        return ExitCode::from(2);
    };
    match run(path).await {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            let mut message = error.to_string();
            let mut cause = error.source();
            while let Some(e) = cause {
                message += &format!(": {e}");
                cause = e.source();
            }
            eprintln!("etl_bench: {message}");
            ExitCode::from(1)
        }
    }
}

async fn run(path: PathBuf) -> Result<credchain::etl::Summary, Box<dyn std::error::Error>> {
    let config = PipelineConfig::from_file(&path)?;
    let target = ResolvedTarget::resolve(&config, |key| std::env::var(key).ok().map(Secret::new))?;
    let pipeline = Pipeline::new(config, target)?;
    let timer = StepTimer {
        started: Mutex::new((Instant::now(), cpu_seconds())),
    };
    Ok(pipeline.run_all(&timer).await?)
}
