//! The Azure Key Vault source against the Key Vault double: the key-to-name mapping, one
//! data-plane read per lookup once a token is cached, pinned versions, client secret, workload
//! identity (a rotated token file), managed identity and Azure CLI logins, the one-second
//! metadata probe, 403/404/429/5xx, the CLI's exit code for a 403, and that no token, client
//! secret, assertion or value is ever printed.
#![cfg(feature = "azure")]

#[path = "doubles/azure_kv.rs"]
mod azure_kv;
#[allow(unused_macros, unused_imports)] // only its capture is used here
mod conformance;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use azure_kv::{
    AzureKv, Behaviour, Metadata, CLIENT_ID, CLIENT_SECRET, OBJECT_ID, TENANT, TOKEN_PREFIX,
};
use conformance::{printed, Capture};
use credchain::core::{CredentialSource, ErrorKind, Lifetime, MapEnv, SourceSettings};
use credchain_azure::AzureSource;

const KEY: &str = "PREFECT_API_KEY";
const SECRET_NAME: &str = "PREFECT-API-KEY";
const VALUE: &str = "pnu_FAKE_AZURE_KEY_001";
const NEXT_VALUE: &str = "pnu_FAKE_AZURE_KEY_002";
const ASSERTION_ONE: &str = "FAKE_federated_assertion_one";
const ASSERTION_TWO: &str = "FAKE_federated_assertion_two";
const CLI_TOKEN: &str = "FAKE_cli_access_token_001";
/// No lookup here may take this long; it only turns a hang into a failure.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// Everything that must never be printed.
const SECRETS: &[&str] = &[
    VALUE,
    NEXT_VALUE,
    CLIENT_SECRET,
    TOKEN_PREFIX,
    ASSERTION_ONE,
    ASSERTION_TWO,
    CLI_TOKEN,
];

/// The service principal's variables.
fn client_secret_env() -> Vec<(String, String)> {
    vec![
        ("AZURE_TENANT_ID".into(), TENANT.into()),
        ("AZURE_CLIENT_ID".into(), CLIENT_ID.into()),
        ("AZURE_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
    ]
}

/// A source named `azure` pointed at `kv`, with `extra` options and the variables `env`.
fn source(kv: &AzureKv, dir: &Path, extra: &str, env: Vec<(String, String)>) -> AzureSource {
    let options = format!("{}{extra}", kv.options(dir));
    let table: toml::Table = toml::from_str(&options).unwrap();
    AzureSource::from_options(
        SourceSettings::new("azure"),
        table,
        Arc::new(MapEnv::new(env)),
    )
    .unwrap_or_else(|e| panic!("building the azure source: {e}"))
}

/// Fetches with a hang guard and records the outcome in `capture`.
async fn fetch(
    capture: &Capture,
    source: &dyn CredentialSource,
    key: &str,
) -> Result<Option<credchain::core::Resolved>, credchain::core::SourceError> {
    let outcome = tokio::time::timeout(HANG_GUARD, source.fetch(key))
        .await
        .expect("the lookup hung");
    capture.record(&outcome);
    outcome
}

/// A directory holding an `az` that prints `CLI_TOKEN`, and a `PATH` with it first.
fn fake_az(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/sh\necho '{{\"accessToken\":\"{CLI_TOKEN}\",\"expiresOn\":\"2099-01-01 00:00:00.000000\",\
         \"expires_on\":4070908800,\"subscription\":\"sub\",\"tenant\":\"{TENANT}\",\"tokenType\":\"Bearer\"}}'\n"
    );
    std::fs::write(bin.join("az"), script).unwrap();
    std::fs::set_permissions(bin.join("az"), std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("{}:/usr/bin:/bin", bin.display())
}

#[tokio::test]
async fn prefect_api_key_is_read_from_prefect_dash_api_dash_key_once_per_lookup() {
    let capture = Capture::start();
    let kv = AzureKv::start().await;
    let version = kv.put(SECRET_NAME, VALUE);
    let dir = tempfile::tempdir().unwrap();
    let source = source(
        &kv,
        dir.path(),
        "credential = 'client_secret'\n",
        client_secret_env(),
    );

    let first = fetch(&capture, &source, KEY).await.unwrap().expect("found");
    assert!(first.value.expose() == VALUE, "wrong value");
    assert_eq!(first.provenance.source, "azure");
    assert!(
        first
            .provenance
            .location
            .ends_with("/secrets/PREFECT-API-KEY"),
        "{}",
        first.provenance
    );
    assert_eq!(first.provenance.version.as_deref(), Some(version.as_str()));
    assert_eq!(first.lifetime, Lifetime::Remote { expires_in: None });
    let after_login = kv.counts();
    assert_eq!(
        (
            after_login.challenges,
            after_login.tokens,
            after_login.reads
        ),
        (1, 1, 1)
    );

    for _ in 0..3 {
        fetch(&capture, &source, KEY).await.unwrap().expect("found");
    }
    let counts = kv.counts();
    assert_eq!(
        counts.reads, 4,
        "one data-plane read per lookup once the token is cached"
    );
    assert_eq!((counts.challenges, counts.tokens), (1, 1), "no new login");
    capture.assert_hidden(SECRETS);
}

#[tokio::test]
async fn pinned_version_returns_that_version() {
    let capture = Capture::start();
    let kv = AzureKv::start().await;
    let old = kv.put(SECRET_NAME, VALUE);
    kv.put(SECRET_NAME, NEXT_VALUE);
    let dir = tempfile::tempdir().unwrap();
    let pin = format!("credential = 'client_secret'\nversion = {{ {KEY} = '{old}' }}\n");
    let source = source(&kv, dir.path(), &pin, client_secret_env());

    let resolved = fetch(&capture, &source, KEY).await.unwrap().expect("found");
    assert!(
        resolved.value.expose() == VALUE,
        "the pinned version's value"
    );
    assert_eq!(resolved.provenance.version.as_deref(), Some(old.as_str()));
    capture.assert_hidden(SECRETS);
}

#[tokio::test]
async fn name_with_a_dot_is_a_configuration_error_before_any_request() {
    let capture = Capture::start();
    let kv = AzureKv::start().await;
    let dir = tempfile::tempdir().unwrap();
    let source = source(&kv, dir.path(), "", client_secret_env());

    let err = fetch(&capture, &source, "prefect.api_key")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(err.to_string().contains("`.`"), "{err}");
    assert_eq!(kv.counts().total(), 0, "the double saw a request");
    capture.assert_hidden(SECRETS);
}

#[tokio::test]
async fn keys_override_with_a_field_reads_json() {
    let capture = Capture::start();
    let kv = AzureKv::start().await;
    kv.put("etl-secrets", &format!("{{\"api_key\": \"{VALUE}\"}}"));
    let dir = tempfile::tempdir().unwrap();
    let options = kv.options(dir.path()) + "credential = 'client_secret'\n";
    let mut settings = SourceSettings::new("azure");
    settings
        .keys
        .insert(KEY.into(), "etl-secrets#api_key".into());
    let table: toml::Table = toml::from_str(&options).unwrap();
    let env = Arc::new(MapEnv::new(client_secret_env()));
    let source = AzureSource::from_options(settings, table, env).unwrap();

    let resolved = fetch(&capture, &source, KEY).await.unwrap().expect("found");
    assert!(resolved.value.expose() == VALUE, "the field's value");
    assert!(resolved
        .provenance
        .location
        .ends_with("/secrets/etl-secrets#api_key"));
    capture.assert_hidden(SECRETS);
}

#[tokio::test]
async fn workload_identity_reads_the_token_file_again_after_it_rotates() {
    let capture = Capture::start();
    let kv = AzureKv::start().await;
    kv.put(SECRET_NAME, VALUE);
    kv.accept_assertion(ASSERTION_ONE);
    kv.accept_assertion(ASSERTION_TWO);
    // Tokens this short-lived are renewed on every lookup, so each lookup logs in again.
    kv.token_lifetime(60);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, ASSERTION_ONE).unwrap();
    let env = vec![
        ("AZURE_TENANT_ID".into(), TENANT.into()),
        ("AZURE_CLIENT_ID".into(), CLIENT_ID.into()),
        (
            "AZURE_FEDERATED_TOKEN_FILE".into(),
            token_file.display().to_string(),
        ),
    ];
    let source = source(&kv, dir.path(), "", env);

    fetch(&capture, &source, KEY).await.unwrap().expect("found");
    std::fs::write(&token_file, ASSERTION_TWO).unwrap();
    fetch(&capture, &source, KEY).await.unwrap().expect("found");
    assert_eq!(kv.assertions_seen(), [ASSERTION_ONE, ASSERTION_TWO]);
    assert_eq!(
        kv.counts().metadata,
        0,
        "workload identity comes before managed identity"
    );
    capture.assert_hidden(SECRETS);
}

#[tokio::test]
async fn managed_identity_logs_in_through_the_metadata_service() {
    let capture = Capture::start();
    let kv = AzureKv::start().await;
    kv.put(SECRET_NAME, VALUE);
    let dir = tempfile::tempdir().unwrap();
    let source = source(&kv, dir.path(), "", vec![]);

    let resolved = fetch(&capture, &source, KEY).await.unwrap().expect("found");
    assert!(resolved.value.expose() == VALUE);
    let counts = kv.counts();
    assert_eq!((counts.metadata, counts.tokens), (1, 0));
    let diagnosis = source.diagnose().await.unwrap();
    capture.record_debug(&diagnosis);
    assert!(
        diagnosis
            .details
            .iter()
            .any(|d| d == "credential: managed_identity"),
        "{diagnosis:?}"
    );
    capture.assert_hidden(SECRETS);
}

#[tokio::test]
async fn silent_metadata_service_passes_to_the_azure_cli_within_the_probe() {
    let capture = Capture::start();
    let kv = AzureKv::start().await;
    kv.put(SECRET_NAME, VALUE);
    kv.metadata(Metadata::Silent);
    kv.accept_token(CLI_TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let path = fake_az(dir.path());
    let source = source(&kv, dir.path(), "", vec![("PATH".into(), path)]);

    // The guard only turns a hang into a failure; the probe itself gives up after 1 s.
    let resolved = tokio::time::timeout(Duration::from_secs(20), source.fetch(KEY))
        .await
        .expect("the metadata probe did not give up");
    capture.record(&resolved);
    assert!(resolved.unwrap().expect("found").value.expose() == VALUE);
    assert_eq!(kv.counts().metadata, 1);

    // The silent service is remembered: the next lookup does not probe again.
    fetch(&capture, &source, KEY).await.unwrap().expect("found");
    assert_eq!(kv.counts().metadata, 1);
    let diagnosis = source.diagnose().await.unwrap();
    capture.record_debug(&diagnosis);
    assert!(
        diagnosis
            .details
            .iter()
            .any(|d| d == "credential: azure_cli"),
        "{diagnosis:?}"
    );
    capture.assert_hidden(SECRETS);
}

#[tokio::test]
async fn pinned_managed_identity_waits_for_the_timeout_and_is_unavailable() {
    let capture = Capture::start();
    let kv = AzureKv::start().await;
    kv.put(SECRET_NAME, VALUE);
    kv.metadata(Metadata::Silent);
    let dir = tempfile::tempdir().unwrap();
    let pin = "credential = 'managed_identity'\ntimeout = '2s'\n";
    let source = source(&kv, dir.path(), pin, vec![]);

    let err = fetch(&capture, &source, KEY).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    capture.assert_hidden(SECRETS);
}

#[tokio::test]
async fn no_credential_anywhere_is_not_configured() {
    let capture = Capture::start();
    let kv = AzureKv::start().await;
    kv.metadata(Metadata::NoIdentity);
    let dir = tempfile::tempdir().unwrap();
    let empty_path = dir.path().join("empty");
    std::fs::create_dir(&empty_path).unwrap();
    let source = source(
        &kv,
        dir.path(),
        "",
        vec![("PATH".into(), empty_path.display().to_string())],
    );

    let err = fetch(&capture, &source, KEY).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConfigured, "{err}");
    let text = err.to_string();
    for named in [
        "client_secret",
        "workload_identity",
        "managed_identity",
        "azure_cli",
    ] {
        assert!(text.contains(named), "{named} is not in: {text}");
    }
    assert_eq!(kv.counts().reads, 0);
    capture.assert_hidden(SECRETS);
}

#[tokio::test]
async fn no_vault_url_is_not_configured() {
    let table: toml::Table = toml::from_str("credential = 'azure_cli'").unwrap();
    let env = Arc::new(MapEnv::new(client_secret_env()));
    let source = AzureSource::from_options(SourceSettings::new("azure"), table, env).unwrap();
    let err = source.fetch(KEY).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConfigured);
    assert!(err.to_string().contains("AZURE_KEYVAULT_URL"), "{err}");
    assert_eq!(
        source.diagnose().await.unwrap_err().kind(),
        ErrorKind::NotConfigured
    );
}

#[tokio::test]
async fn wrong_client_secret_is_denied_without_printing_it() {
    const WRONG: &str = "FAKE_wrong_client_secret_9";
    let capture = Capture::start();
    let kv = AzureKv::start().await;
    kv.put(SECRET_NAME, VALUE);
    let dir = tempfile::tempdir().unwrap();
    let mut env = client_secret_env();
    env[2].1 = WRONG.into();
    let source = source(&kv, dir.path(), "", env);

    let err = fetch(&capture, &source, KEY).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Denied, "{err}");
    assert!(err.to_string().contains("AADSTS7000215"), "{err}");
    assert_eq!(
        kv.counts().metadata,
        0,
        "a refused client secret stops the chain"
    );
    capture.assert_hidden(&[SECRETS, &[WRONG]].concat());
}

#[tokio::test]
async fn forbidden_is_denied_and_names_the_principal() {
    let capture = Capture::start();
    let kv = AzureKv::start().await;
    kv.put(SECRET_NAME, VALUE);
    kv.set(Behaviour::Fail(403));
    let dir = tempfile::tempdir().unwrap();
    let source = source(&kv, dir.path(), "", client_secret_env());

    let err = fetch(&capture, &source, KEY).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Denied, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(OBJECT_ID) && text.contains(CLIENT_ID),
        "{text}"
    );
    assert!(err.hint().unwrap().contains("Key Vault Secrets User"));
    capture.assert_hidden(SECRETS);
}

#[tokio::test]
async fn rejected_token_is_denied_after_one_retry() {
    let capture = Capture::start();
    let kv = AzureKv::start().await;
    kv.put(SECRET_NAME, VALUE);
    let dir = tempfile::tempdir().unwrap();
    let source = source(&kv, dir.path(), "", client_secret_env());
    fetch(&capture, &source, KEY).await.unwrap().expect("found");

    kv.set(Behaviour::Fail(401));
    let err = fetch(&capture, &source, KEY).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Denied, "{err}");
    // The SDK asks the credential again after a 401; the credential's own cache may hand back
    // the same token, so the double sees the refused read and one retry, then the error.
    assert_eq!(
        kv.counts().reads,
        3,
        "the first read, the refused read and one retry"
    );
    capture.assert_hidden(SECRETS);
}

#[tokio::test]
async fn throttled_then_ok_succeeds_after_retry_after() {
    let capture = Capture::start();
    let kv = AzureKv::start().await;
    kv.put(SECRET_NAME, VALUE);
    kv.next(Behaviour::Throttle(1));
    let dir = tempfile::tempdir().unwrap();
    let source = source(&kv, dir.path(), "", client_secret_env());

    let resolved = fetch(&capture, &source, KEY)
        .await
        .unwrap()
        .expect("found after the retry");
    assert!(resolved.value.expose() == VALUE);
    assert_eq!(kv.counts().reads, 2, "the 429, then the read");
    capture.assert_hidden(SECRETS);
}

#[tokio::test]
async fn server_error_is_unavailable_after_the_retries() {
    let capture = Capture::start();
    let kv = AzureKv::start().await;
    kv.put(SECRET_NAME, VALUE);
    kv.set(Behaviour::Fail(500));
    let dir = tempfile::tempdir().unwrap();
    let source = source(&kv, dir.path(), "max_retries = 2\n", client_secret_env());

    let err = fetch(&capture, &source, KEY).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(kv.counts().reads, 3, "the first try and two retries");
    capture.assert_hidden(SECRETS);
}

#[tokio::test]
async fn missing_secret_is_absent_and_disabled_secret_is_absent_with_a_warning() {
    let capture = Capture::start();
    let kv = AzureKv::start().await;
    kv.put("PREFECT-API-URL", "http://127.0.0.1:4200/api");
    kv.put(SECRET_NAME, VALUE);
    kv.disable(SECRET_NAME);
    let dir = tempfile::tempdir().unwrap();
    let source = source(&kv, dir.path(), "", client_secret_env());

    assert!(fetch(&capture, &source, "DATABASE_URL")
        .await
        .unwrap()
        .is_none());
    let outcome = fetch(&capture, &source, KEY).await;
    assert!(matches!(outcome, Ok(None)), "{}", printed(&outcome));
    assert!(
        capture.text().contains("disabled"),
        "no warning about the disabled secret"
    );
    capture.assert_hidden(SECRETS);
}

#[tokio::test]
async fn forbidden_makes_the_cli_exit_5_with_the_role_hint() {
    let kv = AzureKv::start().await;
    kv.put(SECRET_NAME, VALUE);
    kv.set(Behaviour::Fail(403));
    let dir = tempfile::tempdir().unwrap();
    let options = kv.options(dir.path());
    let config = format!(
        "[keys]\n{KEY} = \"required\"\n\n[[sources]]\ntype = \"azure\"\ncredential = \"client_secret\"\n{options}"
    );
    std::fs::write(dir.path().join("credchain.toml"), config).unwrap();

    let cwd = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        let mut cli = support::Cli::new().args(["get", KEY]).cwd(cwd);
        for (name, value) in client_secret_env() {
            cli = cli.env(name, value);
        }
        cli.run()
    })
    .await
    .unwrap();
    assert_eq!(out.code, Some(5), "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains("Key Vault Secrets User"),
        "no role hint: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains(OBJECT_ID),
        "no principal: {}",
        out.stderr
    );
    support::assert_no_secret(&out.all_output(), SECRETS);
}
