//! The sample built into the binary: the birdstrikes CSV and the pipeline that loads it, so
//! `credchain run` with no config works from any directory.

use std::path::Path;

use super::config::{PipelineConfig, BUILTIN_PREFIX};

/// The names `builtin:NAME` sources can use.
pub const BUILTIN_NAMES: [&str; 1] = [BIRDSTRIKES_NAME];

const BIRDSTRIKES_NAME: &str = "birdstrikes.csv";
/// 10,000 FAA wildlife strike reports (the same file as `examples/data/birdstrikes.csv`).
static BIRDSTRIKES_CSV: &[u8] = include_bytes!("../../examples/data/birdstrikes.csv");
/// The sample pipeline (the same file as `examples/pipeline.toml`).
const PIPELINE_TOML: &str = include_str!("../../examples/pipeline.toml");

/// The bytes of an embedded file.
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    (name == BIRDSTRIKES_NAME).then_some(BIRDSTRIKES_CSV)
}

/// `examples/pipeline.toml` with its source replaced by the embedded CSV: birdstrikes into
/// `sqlite://etl.db` in the working directory, rejects to `birdstrikes.rejects.csv`.
pub fn default_pipeline() -> PipelineConfig {
    let mut config =
        PipelineConfig::from_toml_str(PIPELINE_TOML, "built-in pipeline", Path::new("."))
            .expect("the embedded examples/pipeline.toml is valid (tested)");
    config.source = format!("{BUILTIN_PREFIX}{BIRDSTRIKES_NAME}");
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pipeline_reads_the_embedded_csv() {
        let config = default_pipeline();
        assert_eq!(config.source, "builtin:birdstrikes.csv");
        assert_eq!(config.table, "birdstrikes");
        assert!(builtin("birdstrikes.csv")
            .unwrap()
            .starts_with(b"Airport Name,"));
        assert!(builtin("other.csv").is_none());
    }
}
