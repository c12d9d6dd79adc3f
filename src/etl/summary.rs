//! The one-line account of a run: rows read, loaded and rejected, where, and how long.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serializer;

/// What a pipeline run did. `Display` prints one line; `Serialize` gives the JSON of
/// `credchain run --json` and of the Prefect artifact.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    /// The table loaded into.
    pub table: String,
    /// The target, with any password masked.
    pub target: String,
    /// Records read from the source.
    pub rows_read: u64,
    /// Records written to the table (read minus rejected).
    pub rows_loaded: u64,
    /// Records written to the rejects file.
    pub rows_rejected: u64,
    /// Rows the database inserted or updated; an upsert that found a row unchanged does not
    /// count it, so a re-run of the same input shows 0.
    pub rows_changed: u64,
    /// Whether the load created the table.
    pub table_created: bool,
    /// The rejects file.
    pub rejects: PathBuf,
    /// From the start of extract to the end of load.
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration: Duration,
}

fn seconds<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "loaded {} of {} rows into {} at {} ({} changed, {} rejected",
            self.rows_loaded,
            self.rows_read,
            self.table,
            self.target,
            self.rows_changed,
            self.rows_rejected
        )?;
        if self.rows_rejected > 0 {
            write!(f, ", see {}", self.rejects.display())?;
        }
        write!(f, ") in {:.2} s", self.duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(rejected: u64) -> Summary {
        Summary {
            table: "birdstrikes".into(),
            target: "sqlite://etl.db".into(),
            rows_read: 10,
            rows_loaded: 10 - rejected,
            rows_rejected: rejected,
            rows_changed: 10 - rejected,
            table_created: true,
            rejects: "birdstrikes.rejects.csv".into(),
            duration: Duration::from_millis(1234),
        }
    }

    #[test]
    fn display_is_one_line() {
        assert_eq!(
            summary(0).to_string(),
            "loaded 10 of 10 rows into birdstrikes at sqlite://etl.db (10 changed, 0 rejected) in 1.23 s"
        );
        assert!(summary(2)
            .to_string()
            .contains("2 rejected, see birdstrikes.rejects.csv)"));
    }

    #[test]
    fn json_has_seconds() {
        let json = serde_json::to_value(summary(0)).unwrap();
        assert_eq!(json["duration_seconds"], 1.234);
        assert_eq!(json["rows_loaded"], 10);
    }
}
