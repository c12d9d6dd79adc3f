//! File stamps: the metadata that tells whether a file changed since it was last read.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What identifies one version of a file: its change and modification times, its inode and
/// device, and its size. Two reads with equal stamps saw the same contents, unless the file was
/// rewritten in place with the same size within one tick of the file system clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    /// Change time (seconds, nanoseconds); moves on every write, rename and chmod.
    pub ctime: (i64, i64),
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, i64),
    /// Inode number; a write-then-rename (and a `..data` symlink swap) changes it.
    pub ino: u64,
    /// Device the inode lives on.
    pub dev: u64,
    /// Size in bytes.
    pub size: u64,
}

impl FileStamp {
    /// The stamp of already-read metadata.
    pub fn from_metadata(meta: &std::fs::Metadata) -> Self {
        FileStamp {
            ctime: (meta.ctime(), meta.ctime_nsec()),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ino: meta.ino(),
            dev: meta.dev(),
            size: meta.size(),
        }
    }
}

/// The stamp of the file at `path`, following symlinks (so a Kubernetes `KEY -> ..data/KEY`
/// link reports the file it currently points to). `None` when the file cannot be read.
pub fn file_stamp(path: &Path) -> Option<FileStamp> {
    std::fs::metadata(path)
        .ok()
        .map(|meta| FileStamp::from_metadata(&meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_changes_when_a_file_is_replaced_by_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("KEY");
        std::fs::write(&path, "one").unwrap();
        let first = file_stamp(&path).unwrap();
        assert_eq!(file_stamp(&path), Some(first));

        let tmp = dir.path().join("KEY.tmp");
        std::fs::write(&tmp, "two").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_ne!(file_stamp(&path), Some(first));
    }

    #[test]
    fn stamp_of_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(file_stamp(&dir.path().join("missing")), None);
    }

    #[test]
    fn stamp_follows_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "abc").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(file_stamp(&link), file_stamp(&target));
    }
}
