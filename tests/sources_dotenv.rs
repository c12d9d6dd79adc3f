//! The `dotenv` source: the conformance suite over a real `.env` file, the syntax cases users
//! hit, provenance, re-reading on change, and the `doctor` warnings.

mod conformance;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use conformance::{Capture, Fixture};
use credchain::core::{CredentialSource, ErrorKind, Lifetime, MapEnv, Secret, SourceSettings};
use credchain::sources;

/// Writes `text` to `path` the way an editor saving atomically does: a new file renamed over.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct DotenvFixture {
    dir: tempfile::TempDir,
    lines: Mutex<BTreeMap<String, String>>,
    source: Arc<dyn CredentialSource>,
}

impl DotenvFixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let source = dotenv_source(dir.path(), &[], MapEnv::default());
        DotenvFixture {
            dir,
            lines: Mutex::default(),
            source,
        }
    }

    fn rewrite(&self, change: impl FnOnce(&mut BTreeMap<String, String>)) {
        let mut lines = self.lines.lock().unwrap();
        change(&mut lines);
        let text: String = lines.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        replace_file(&self.dir.path().join(".env"), &text);
    }
}

#[async_trait]
impl Fixture for DotenvFixture {
    fn source(&self) -> Arc<dyn CredentialSource> {
        self.source.clone()
    }

    async fn put(&self, key: &str, value: &str) {
        self.rewrite(|lines| {
            lines.insert(key.to_owned(), value.to_owned());
        });
    }

    async fn remove(&self, key: &str) {
        self.rewrite(|lines| {
            lines.remove(key);
        });
    }
}

conformance::conformance_tests!(dotenv_conformance, DotenvFixture::new());

/// A `dotenv` source for `<dir>/.env`, built through the registry as the config loader does.
fn dotenv_source(dir: &Path, keys: &[(&str, &str)], env: MapEnv) -> Arc<dyn CredentialSource> {
    let mut settings = SourceSettings::new("dotenv");
    settings.base_dir = dir.to_owned();
    for (key, location) in keys {
        settings
            .keys
            .insert((*key).to_owned(), (*location).to_owned());
    }
    sources::build("dotenv", settings, toml::Table::new(), Arc::new(env)).unwrap()
}

/// A temporary directory holding `.env` with `text`, and a source reading it.
fn with_env_file(text: &str) -> (tempfile::TempDir, Arc<dyn CredentialSource>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), text).unwrap();
    let source = dotenv_source(dir.path(), &[], MapEnv::default());
    (dir, source)
}

async fn value_of(source: &dyn CredentialSource, key: &str) -> Secret {
    source
        .fetch(key)
        .await
        .unwrap()
        .expect("the key is in the file")
        .value
}

#[tokio::test]
async fn dotenv_auth_string_in_double_quotes_loses_its_quotes() {
    let capture = Capture::start();
    let (_dir, source) = with_env_file("PREFECT_API_AUTH_STRING=\"admin:FAKEpass\"\n");
    let outcome = source.fetch("PREFECT_API_AUTH_STRING").await;
    capture.record(&outcome);
    assert!(outcome.unwrap().unwrap().value.expose() == "admin:FAKEpass");
    assert!(!capture.text().contains("WARN"));
    capture.assert_hidden(&["admin:FAKEpass"]);
}

#[tokio::test]
async fn dotenv_url_with_trailing_comment_drops_the_comment() {
    let (_dir, source) = with_env_file("PREFECT_API_URL=http://127.0.0.1:4200/api # local\n");
    let url = value_of(&*source, "PREFECT_API_URL").await;
    assert_eq!(url.expose(), "http://127.0.0.1:4200/api");
}

#[tokio::test]
async fn dotenv_hash_inside_key_is_kept() {
    let (_dir, source) = with_env_file("PREFECT_API_KEY=pnu_FAKE#a1b2\n");
    assert!(value_of(&*source, "PREFECT_API_KEY").await.expose() == "pnu_FAKE#a1b2");
}

#[tokio::test]
async fn dotenv_quoted_password_keeps_hash_and_space() {
    let (_dir, source) = with_env_file("DB_PASSWORD=\"p#ss word\"\n");
    assert!(value_of(&*source, "DB_PASSWORD").await.expose() == "p#ss word");
}

#[tokio::test]
async fn dotenv_export_prefix_and_exporter_key() {
    let text = "export PREFECT_API_KEY=pnu_FAKE_KEY_001\nexport port_token=tok_fake\nexporter=1\n";
    let (_dir, source) = with_env_file(text);
    assert!(value_of(&*source, "PREFECT_API_KEY").await.expose() == "pnu_FAKE_KEY_001");
    assert!(value_of(&*source, "port_token").await.expose() == "tok_fake");
    assert_eq!(value_of(&*source, "exporter").await.expose(), "1");
}

#[tokio::test]
async fn dotenv_key_with_spaces_fails_naming_its_line_not_its_value() {
    let capture = Capture::start();
    let (_dir, source) =
        with_env_file("PREFECT_API_URL=http://127.0.0.1:4200/api\nPREFECT API KEY=oops\n");
    let outcome = source.fetch("PREFECT_API_URL").await;
    capture.record(&outcome);
    let err = outcome.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.to_string().contains(".env:2"), "{err}");
    capture.assert_hidden(&["oops"]);
}

#[tokio::test]
async fn dotenv_crlf_file_leaves_no_cr() {
    let (_dir, source) = with_env_file("PREFECT_API_KEY=pnu_FAKE_KEY_001\r\nB=\"x\r\ny\"\r\n");
    assert!(value_of(&*source, "PREFECT_API_KEY").await.expose() == "pnu_FAKE_KEY_001");
    assert_eq!(value_of(&*source, "B").await.expose(), "x\ny");
}

#[tokio::test]
async fn dotenv_bare_dollar_kept_byte_for_byte() {
    let (_dir, source) = with_env_file("PREFECT_API_KEY=pnu_ab$cdEF@gh\n");
    assert!(value_of(&*source, "PREFECT_API_KEY").await.expose() == "pnu_ab$cdEF@gh");
}

#[tokio::test]
async fn dotenv_braced_reference_expands_from_the_file_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let text = "PREFECT_HOST=http://127.0.0.1:4200\nPREFECT_API_URL=${PREFECT_HOST}/api\nDB=${DB_HOST}:5432\n";
    std::fs::write(dir.path().join(".env"), text).unwrap();
    let source = dotenv_source(dir.path(), &[], MapEnv::new([("DB_HOST", "db.internal")]));
    let url = value_of(&*source, "PREFECT_API_URL").await;
    assert_eq!(url.expose(), "http://127.0.0.1:4200/api");
    assert_eq!(value_of(&*source, "DB").await.expose(), "db.internal:5432");
}

#[tokio::test]
async fn dotenv_undefined_reference_fails_naming_its_line() {
    let (_dir, source) = with_env_file("A=1\nBAD=${NOT_DEFINED}\n");
    let err = source.fetch("A").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.to_string().contains(".env:2"), "{err}");
    assert!(err.to_string().contains("NOT_DEFINED"), "{err}");
}

#[tokio::test]
async fn dotenv_key_defined_twice_takes_the_second_and_warns_with_both_lines() {
    let capture = Capture::start();
    let (_dir, source) =
        with_env_file("PREFECT_API_KEY=pnu_FAKE_OLD_1\nA=1\nPREFECT_API_KEY=pnu_FAKE_NEW_2\n");
    let outcome = source.fetch("PREFECT_API_KEY").await;
    capture.record(&outcome);
    let resolved = outcome.unwrap().unwrap();
    assert!(resolved.value.expose() == "pnu_FAKE_NEW_2");
    assert_eq!(resolved.provenance.location, ".env:3");

    let logs = capture.text();
    let warning = logs
        .lines()
        .find(|l| l.contains("WARN"))
        .expect("a warning");
    assert!(
        warning.contains("line 1") && warning.contains("line 3"),
        "{warning}"
    );
    capture.assert_hidden(&["pnu_FAKE_OLD_1", "pnu_FAKE_NEW_2"]);
}

const PEM: &str =
    "-----BEGIN PRIVATE KEY-----\nMIIEvFAKEFAKEFAKE\nAAAAFAKEFAKE==\n-----END PRIVATE KEY-----";

#[tokio::test]
async fn dotenv_pem_block_in_double_quotes() {
    let capture = Capture::start();
    let (_dir, source) = with_env_file(&format!("A=1\nTLS_KEY=\"{PEM}\"\nB=2\n"));
    let outcome = source.fetch("TLS_KEY").await;
    capture.record(&outcome);
    let resolved = outcome.unwrap().unwrap();
    assert!(resolved.value.expose() == PEM);
    assert_eq!(resolved.provenance.location, ".env:2");
    assert_eq!(
        source
            .fetch("B")
            .await
            .unwrap()
            .unwrap()
            .provenance
            .location,
        ".env:6"
    );
    capture.assert_hidden(&["MIIEvFAKEFAKEFAKE", "AAAAFAKEFAKE=="]);
}

#[tokio::test]
async fn dotenv_bom_at_start_is_ignored() {
    let (_dir, source) = with_env_file("\u{feff}PREFECT_API_KEY=pnu_FAKE_KEY_001\n");
    assert!(value_of(&*source, "PREFECT_API_KEY").await.expose() == "pnu_FAKE_KEY_001");
}

#[tokio::test]
async fn dotenv_unterminated_quote_names_the_line_and_hides_the_value() {
    let capture = Capture::start();
    let (_dir, source) = with_env_file("A=1\n\nPREFECT_API_KEY=\"pnu_FAKE_OPEN_9\nB=2\n");
    let outcome = source.fetch("A").await;
    capture.record(&outcome);
    let err = outcome.unwrap_err();
    assert!(err.to_string().contains(".env:3"), "{err}");
    capture.assert_hidden(&["pnu_FAKE_OPEN_9"]);
}

#[tokio::test]
async fn dotenv_missing_file_is_not_configured() {
    let dir = tempfile::tempdir().unwrap();
    let source = dotenv_source(dir.path(), &[], MapEnv::default());
    let err = source.fetch("PREFECT_API_KEY").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConfigured);
    assert!(err.to_string().contains(".env"), "{err}");
    assert_eq!(
        source.diagnose().await.unwrap_err().kind(),
        ErrorKind::NotConfigured
    );
}

#[tokio::test]
async fn dotenv_provenance_is_path_as_configured_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    std::fs::write(
        dir.path().join("conf/dev.env"),
        "# dev\n\nPREFECT_API_KEY=pnu_FAKE_KEY_001\n",
    )
    .unwrap();
    let mut settings = SourceSettings::new("local");
    settings.base_dir = dir.path().to_owned();
    let options: toml::Table = "path = \"conf/dev.env\"".parse().unwrap();
    let source = sources::build("dotenv", settings, options, Arc::new(MapEnv::default())).unwrap();

    let resolved = source.fetch("PREFECT_API_KEY").await.unwrap().unwrap();
    assert_eq!(resolved.provenance.source, "local");
    assert_eq!(resolved.provenance.location, "conf/dev.env:3");
    assert_eq!(
        resolved.lifetime,
        Lifetime::File(dir.path().join("conf/dev.env"))
    );
}

#[tokio::test]
async fn dotenv_keys_override_with_json_field() {
    let text = "ETL_JSON='{\"api_key\": \"pnu_FAKE_JSON_7\"}'\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), text).unwrap();
    let source = dotenv_source(
        dir.path(),
        &[("PREFECT_API_KEY", "ETL_JSON#api_key")],
        MapEnv::default(),
    );
    let resolved = source.fetch("PREFECT_API_KEY").await.unwrap().unwrap();
    assert!(resolved.value.expose() == "pnu_FAKE_JSON_7");
    assert_eq!(resolved.provenance.location, ".env:1#api_key");
}

#[tokio::test]
async fn dotenv_file_edited_between_reads_is_read_again() {
    let (dir, source) = with_env_file("PREFECT_API_KEY=pnu_FAKE_ROT_A\n");
    assert!(value_of(&*source, "PREFECT_API_KEY").await.expose() == "pnu_FAKE_ROT_A");
    replace_file(&dir.path().join(".env"), "PREFECT_API_KEY=pnu_FAKE_ROT_B\n");
    assert!(value_of(&*source, "PREFECT_API_KEY").await.expose() == "pnu_FAKE_ROT_B");
}

#[tokio::test]
async fn dotenv_empty_quoted_value_is_absent() {
    let (_dir, source) = with_env_file("A=\"\"\nB='  '\n");
    assert!(source.fetch("A").await.unwrap().is_none());
    assert!(source.fetch("B").await.unwrap().is_none());
}

fn warnings_of(diagnosis: &credchain::core::Diagnosis, needle: &str) -> usize {
    diagnosis
        .warnings
        .iter()
        .filter(|w| w.contains(needle))
        .count()
}

#[tokio::test]
async fn dotenv_doctor_warns_about_permissions_quotes_and_conflicting_keys() {
    use std::os::unix::fs::PermissionsExt;
    let capture = Capture::start();
    let text = "PREFECT_API_KEY=pnu_FAKE_KEY_001\nPREFECT_API_AUTH_STRING=\"'admin:FAKEpass'\"\nPADDED=\" pnu_FAKE_PAD \"\n";
    let (dir, source) = with_env_file(text);
    let path = dir.path().join(".env");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();

    let diagnosis = source.diagnose().await.unwrap();
    capture.record_debug(&diagnosis);
    assert_eq!(warnings_of(&diagnosis, "mode 644"), 1, "{diagnosis:?}");
    assert_eq!(
        warnings_of(
            &diagnosis,
            ".env:2: the value of PREFECT_API_AUTH_STRING starts or ends with a quote"
        ),
        1
    );
    assert_eq!(
        warnings_of(&diagnosis, ".env:3: the value of PADDED has whitespace"),
        1
    );
    assert_eq!(
        warnings_of(
            &diagnosis,
            "both PREFECT_API_KEY (line 1) and PREFECT_API_AUTH_STRING (line 2)"
        ),
        1
    );
    capture.assert_hidden(&["pnu_FAKE_KEY_001", "admin:FAKEpass", "pnu_FAKE_PAD"]);

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    replace_file(&path, "PREFECT_API_KEY=pnu_FAKE_KEY_001\n");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(source.diagnose().await.unwrap().warnings.is_empty());
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?} failed");
}

#[tokio::test]
async fn dotenv_doctor_warns_when_git_does_not_ignore_the_file() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, source) = with_env_file("A=1\n");
    let path: PathBuf = dir.path().join(".env");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(
        source.diagnose().await.unwrap().warnings.is_empty(),
        "outside a work tree"
    );

    git(dir.path(), &["init", "-q"]);
    let diagnosis = source.diagnose().await.unwrap();
    assert_eq!(
        warnings_of(&diagnosis, "git does not ignore it"),
        1,
        "{diagnosis:?}"
    );

    std::fs::write(dir.path().join(".gitignore"), ".env\n").unwrap();
    assert!(source.diagnose().await.unwrap().warnings.is_empty());
}
