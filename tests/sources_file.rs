//! The `file` source: the conformance suite over a directory of files, Kubernetes-style
//! `..data` symlink swaps, and its own rules (no base64 decoding, overrides, missing dir).

mod conformance;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use conformance::{Capture, Fixture};
use credchain::core::{CredentialSource, ErrorKind, Lifetime, MapEnv, SourceSettings};
use credchain::sources::{self, file_stamp};

struct FileFixture {
    dir: tempfile::TempDir,
    source: Arc<dyn CredentialSource>,
}

impl FileFixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let source = file_source(dir.path(), &[]);
        FileFixture { dir, source }
    }
}

#[async_trait]
impl Fixture for FileFixture {
    fn source(&self) -> Arc<dyn CredentialSource> {
        self.source.clone()
    }

    /// Rewrites the file in place: the source must see it without any stamp trickery.
    async fn put(&self, key: &str, value: &str) {
        std::fs::write(self.dir.path().join(key), value).unwrap();
    }

    async fn remove(&self, key: &str) {
        let _ = std::fs::remove_file(self.dir.path().join(key));
    }
}

conformance::conformance_tests!(file_conformance, FileFixture::new());

fn file_source(dir: &Path, keys: &[(&str, &str)]) -> Arc<dyn CredentialSource> {
    let mut settings = SourceSettings::new("secrets");
    for (key, location) in keys {
        settings
            .keys
            .insert((*key).to_owned(), (*location).to_owned());
    }
    let mut options = toml::Table::new();
    options.insert("dir".into(), dir.display().to_string().into());
    sources::build("file", settings, options, Arc::new(MapEnv::default())).unwrap()
}

/// A secret volume laid out as the kubelet does: `..<timestamp>/KEY`, `..data -> ..<timestamp>`
/// and `KEY -> ..data/KEY`.
struct KubeletVolume {
    root: tempfile::TempDir,
    generation: u32,
}

impl KubeletVolume {
    fn new(key: &str, value: &str) -> Self {
        let volume = KubeletVolume {
            root: tempfile::tempdir().unwrap(),
            generation: 0,
        };
        let data = volume.write_generation(key, value, 0);
        std::os::unix::fs::symlink(data, volume.root.path().join("..data")).unwrap();
        std::os::unix::fs::symlink(format!("..data/{key}"), volume.root.path().join(key)).unwrap();
        volume
    }

    fn write_generation(&self, key: &str, value: &str, generation: u32) -> String {
        let name = format!("..2025_01_01_00_00_{generation:02}.000000001");
        let dir = self.root.path().join(&name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(key), value).unwrap();
        name
    }

    /// The kubelet's atomic update: a new timestamped dir, a temporary link to it renamed over
    /// `..data`, then the old dir removed.
    fn swap(&mut self, key: &str, value: &str) {
        let old = std::fs::read_link(self.root.path().join("..data")).unwrap();
        self.generation += 1;
        let data = self.write_generation(key, value, self.generation);
        let tmp = self.root.path().join("..data_tmp");
        std::os::unix::fs::symlink(data, &tmp).unwrap();
        std::fs::rename(&tmp, self.root.path().join("..data")).unwrap();
        std::fs::remove_dir_all(self.root.path().join(old)).unwrap();
    }
}

#[tokio::test]
async fn file_kubelet_data_swap_done_twice_is_seen_each_time() {
    let capture = Capture::start();
    let mut volume = KubeletVolume::new("PREFECT_API_KEY", "pnu_FAKE_KUBE_0\n");
    let source = file_source(volume.root.path(), &[]);
    let key_path = volume.root.path().join("PREFECT_API_KEY");
    let mut stamp = file_stamp(&key_path).unwrap();

    for (generation, value) in [(1, "pnu_FAKE_KUBE_1"), (2, "pnu_FAKE_KUBE_2")] {
        volume.swap("PREFECT_API_KEY", &format!("{value}\n"));
        let outcome = source.fetch("PREFECT_API_KEY").await;
        capture.record(&outcome);
        let resolved = outcome.unwrap().unwrap();
        assert!(
            resolved.value.expose() == value,
            "generation {generation} not seen"
        );
        assert_eq!(resolved.lifetime, Lifetime::File(key_path.clone()));
        // Compared with the previous generation only: the kubelet frees the old directory, so
        // a later generation may reuse an earlier one's inode.
        let next = file_stamp(&key_path).unwrap();
        assert_ne!(
            next, stamp,
            "the stamp did not change at generation {generation}"
        );
        stamp = next;
    }
    capture.assert_hidden(&["pnu_FAKE_KUBE_0", "pnu_FAKE_KUBE_1", "pnu_FAKE_KUBE_2"]);
}

#[tokio::test]
async fn file_missing_dir_is_not_configured() {
    let dir = tempfile::tempdir().unwrap();
    let source = file_source(&dir.path().join("nope"), &[]);
    let err = source.fetch("PREFECT_API_KEY").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConfigured);
    assert_eq!(
        source.diagnose().await.unwrap_err().kind(),
        ErrorKind::NotConfigured
    );
}

#[tokio::test]
async fn file_contents_are_not_base64_decoded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("PREFECT_API_KEY"),
        "cG51X0ZBS0VfS0VZXzAwMQ==\r\n",
    )
    .unwrap();
    let source = file_source(dir.path(), &[]);
    let resolved = source.fetch("PREFECT_API_KEY").await.unwrap().unwrap();
    assert!(resolved.value.expose() == "cG51X0ZBS0VfS0VZXzAwMQ==");
}

#[tokio::test]
async fn file_location_is_dir_slash_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("PREFECT_API_KEY"), "pnu_FAKE_KEY_001").unwrap();
    let source = file_source(dir.path(), &[]);
    let resolved = source.fetch("PREFECT_API_KEY").await.unwrap().unwrap();
    let expected = dir.path().join("PREFECT_API_KEY");
    assert_eq!(resolved.provenance.location, expected.display().to_string());
    assert_eq!(resolved.provenance.source, "secrets");
}

#[tokio::test]
async fn file_keys_override_names_a_relative_path_and_a_json_field() {
    let capture = Capture::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("prefect")).unwrap();
    std::fs::write(
        dir.path().join("prefect/api"),
        "{\n  \"key\": \"pnu_FAKE_JSON_8\"\n}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("db-url"), "postgres://etl@db/etl\n").unwrap();
    let source = file_source(
        dir.path(),
        &[
            ("PREFECT_API_KEY", "prefect/api#key"),
            ("DATABASE_URL", "db-url"),
        ],
    );

    let outcome = source.fetch("PREFECT_API_KEY").await;
    capture.record(&outcome);
    let key = outcome.unwrap().unwrap();
    assert!(key.value.expose() == "pnu_FAKE_JSON_8");
    assert!(
        key.provenance.location.ends_with("prefect/api#key"),
        "{}",
        key.provenance.location
    );
    let db = source.fetch("DATABASE_URL").await.unwrap().unwrap();
    assert_eq!(db.value.expose(), "postgres://etl@db/etl");
    capture.assert_hidden(&["pnu_FAKE_JSON_8"]);
}

#[tokio::test]
async fn file_key_that_is_not_a_file_name_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let source = file_source(dir.path(), &[]);
    for key in ["../etc/passwd", "a/b", ".."] {
        assert_eq!(
            source.fetch(key).await.unwrap_err().kind(),
            ErrorKind::Invalid,
            "{key}"
        );
    }
}

#[test]
fn file_keys_override_outside_the_dir_is_refused_when_built() {
    let dir = tempfile::tempdir().unwrap();
    for target in ["/etc/hostname", "../outside", "a/../../b#field", ""] {
        let mut settings = SourceSettings::new("secrets");
        settings.keys.insert("K".into(), target.into());
        let mut options = toml::Table::new();
        options.insert("dir".into(), dir.path().display().to_string().into());
        let built = sources::build("file", settings, options, Arc::new(MapEnv::default()));
        let error = built
            .err()
            .unwrap_or_else(|| panic!("{target:?} was accepted"));
        assert_eq!(error.kind(), ErrorKind::Invalid, "{target}");
    }
}

#[tokio::test]
async fn file_that_is_a_directory_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("PREFECT_API_KEY")).unwrap();
    let source = file_source(dir.path(), &[]);
    let err = source.fetch("PREFECT_API_KEY").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
}

#[tokio::test]
async fn file_non_utf8_contents_are_invalid_and_not_shown() {
    let capture = Capture::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("PREFECT_API_KEY"), b"pnu_FAKE_\xff_RAW").unwrap();
    let source = file_source(dir.path(), &[]);
    let outcome = source.fetch("PREFECT_API_KEY").await;
    capture.record(&outcome);
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Invalid);
    capture.assert_hidden(&["pnu_FAKE_", "_RAW"]);
}
