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

impl WriteRejectsError {
    /// Whether the configured path is at fault (a missing or read-only directory) rather than
    /// the run: a configuration problem.
    pub fn is_config(&self) -> bool {
        use io::ErrorKind::{NotADirectory, NotFound, PermissionDenied, ReadOnlyFilesystem};
        matches!(
            self.source.kind(),
            NotFound | PermissionDenied | ReadOnlyFilesystem | NotADirectory
        )
    }
}

/// Writes rejected records. The temp file is made at the first reject (or at the end when
/// there is none), so an interrupted run seldom leaves one behind.
pub(crate) struct RejectsWriter {
    path: PathBuf,
    dir: PathBuf,
    writer: Option<csv::Writer<BufWriter<NamedTempFile>>>,
    count: u64,
}

impl RejectsWriter {
    /// Prepares to write `path`; fails at once when its directory does not exist.
    pub(crate) fn create(path: &Path) -> Result<Self, WriteRejectsError> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        if !dir.is_dir() {
            let message = format!("no directory {}", dir.display());
            return Err(WriteRejectsError {
                path: path.to_path_buf(),
                source: io::Error::new(io::ErrorKind::NotFound, message),
            });
        }
        Ok(RejectsWriter {
            path: path.to_path_buf(),
            dir,
            writer: None,
            count: 0,
        })
    }

    /// The CSV writer over the temp file, made with its header on first use.
    fn writer(&mut self) -> Result<&mut csv::Writer<BufWriter<NamedTempFile>>, WriteRejectsError> {
        if self.writer.is_none() {
            let mut builder = tempfile::Builder::new();
            builder.prefix(".credchain-rejects-");
            // A temp file is private (0600); the rejects file is an ordinary output, like the
            // database file beside it.
            #[cfg(unix)]
            builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(REJECTS_MODE));
            let temp = builder
                .tempfile_in(&self.dir)
                .map_err(|e| self.error(without_temp_path(e)))?;
            let mut writer = csv::Writer::from_writer(BufWriter::new(temp));
            writer
                .write_record(REJECTS_HEADER)
                .map_err(|e| self.error(e.into()))?;
            self.writer = Some(writer);
        }
        Ok(self.writer.as_mut().expect("made above"))
    }

    /// Adds one rejected record.
    pub(crate) fn write(
        &mut self,
        line: u64,
        reason: &str,
        raw: &[u8],
    ) -> Result<(), WriteRejectsError> {
        let line = line.to_string();
        let result = self
            .writer()?
            .write_record([line.as_bytes(), reason.as_bytes(), raw]);
        self.count += 1;
        result.map_err(|e| self.error(e.into()))
    }

    /// How many records were rejected so far.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Flushes, syncs and renames the temp file over the rejects path.
    pub(crate) fn finish(mut self) -> Result<PathBuf, WriteRejectsError> {
        self.writer()?;
        let path = self.path.clone();
        let fail = |source| WriteRejectsError {
            path: path.clone(),
            source,
        };
        let writer = self.writer.take().expect("made above");
        let buffered = writer.into_inner().map_err(|e| fail(e.into_error()))?;
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

/// The cause of a temp file error without the temp file's name, which means nothing to the user.
fn without_temp_path(error: io::Error) -> io::Error {
    let cause = error
        .get_ref()
        .and_then(|inner| inner.source())
        .map(|cause| cause.to_string());
    match cause {
        Some(cause) => io::Error::new(error.kind(), cause),
        None => error,
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
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
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

    #[test]
    fn no_temp_file_before_the_first_reject_and_a_header_when_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.rejects.csv");
        let w = RejectsWriter::create(&path).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        w.finish().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "line,reason,record\n"
        );
    }

    #[test]
    fn a_missing_directory_is_a_configuration_problem_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nowhere").join("t.rejects.csv");
        let Err(e) = RejectsWriter::create(&path) else {
            panic!("a missing directory is refused");
        };
        assert!(e.is_config());
        assert_eq!(e.path, path);
        assert!(!format!("{:#}", anyhow::anyhow!(e)).contains(".credchain-rejects"));
    }
}
