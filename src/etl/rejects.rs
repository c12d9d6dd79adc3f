//! The rejects file: one CSV row per rejected record with its source line, the reason and the
//! record as it stood. It is written to a temp file beside the target path and renamed over it
//! at the end, so a reader never sees half a file. It is written on every run (a header only
//! when nothing was rejected), so it always describes the last run.

use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// Unix permissions of the rejects file.
#[cfg(unix)]
const REJECTS_MODE: u32 = 0o644;

/// The header row of the rejects file.
pub const REJECTS_HEADER: [&str; 3] = ["line", "reason", "record"];

/// Why the rejects file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write rejects file {}", path.display())]
pub struct WriteRejectsError {
    /// The rejects file.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

/// Writes rejected records.
pub(crate) struct RejectsWriter {
    path: PathBuf,
    writer: csv::Writer<BufWriter<NamedTempFile>>,
    count: u64,
}

impl RejectsWriter {
    /// Starts a temp file in the directory of `path`.
    pub(crate) fn create(path: &Path) -> Result<Self, WriteRejectsError> {
        let fail = |source| WriteRejectsError {
            path: path.to_path_buf(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut builder = tempfile::Builder::new();
        builder.prefix(".credchain-rejects-");
        // A temp file is private (0600); the rejects file is an ordinary output, like the
        // database file beside it.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(REJECTS_MODE));
        let temp = builder.tempfile_in(dir).map_err(fail)?;
        let mut writer = csv::Writer::from_writer(BufWriter::new(temp));
        writer
            .write_record(REJECTS_HEADER)
            .map_err(|e| fail(e.into()))?;
        Ok(RejectsWriter {
            path: path.to_path_buf(),
            writer,
            count: 0,
        })
    }

    /// Adds one rejected record.
    pub(crate) fn write(
        &mut self,
        line: u64,
        reason: &str,
        raw: &[u8],
    ) -> Result<(), WriteRejectsError> {
        self.count += 1;
        let line = line.to_string();
        self.writer
            .write_record([line.as_bytes(), reason.as_bytes(), raw])
            .map_err(|e| self.error(e.into()))
    }

    /// How many records were rejected so far.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Flushes, syncs and renames the temp file over the rejects path.
    pub(crate) fn finish(self) -> Result<PathBuf, WriteRejectsError> {
        let path = self.path.clone();
        let fail = |source| WriteRejectsError {
            path: path.clone(),
            source,
        };
        let buffered = self.writer.into_inner().map_err(|e| fail(e.into_error()))?;
        let temp = buffered.into_inner().map_err(|e| fail(e.into_error()))?;
        temp.as_file().sync_all().map_err(fail)?;
        temp.persist(&path).map_err(|e| fail(e.error))?;
        Ok(path)
    }

    fn error(&self, source: io::Error) -> WriteRejectsError {
        WriteRejectsError {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_are_written_atomically_with_line_reason_and_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.rejects.csv");
        let mut w = RejectsWriter::create(&path).unwrap();
        w.write(3, "expected 2 fields, found 1", b"x").unwrap();
        w.write(9, "bad", b"1,\"a,b\"").unwrap();
        assert!(!path.exists(), "nothing is visible before finish");
        assert_eq!(w.count(), 2);
        w.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "line,reason,record\n3,\"expected 2 fields, found 1\",x\n9,bad,\"1,\"\"a,b\"\"\"\n"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
