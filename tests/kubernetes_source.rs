//! The Kubernetes source against the API double: a kubeconfig and the in-cluster setup (TLS,
//! token rotation), base64 decoding, 401/403/404/5xx and slow answers, the CLI's exit code for
//! a 403, a kubelet-style mounted Secret volume read by the `file` source, and that no token or
//! value is printed.
#![cfg(feature = "kubernetes")]

#[allow(unused_macros, unused_imports)] // only its capture is used here
mod conformance;
#[path = "doubles/kube_api.rs"]
mod kube_api;
mod support;

use std::path::Path;
use std::time::Duration;

use conformance::Capture;
use credchain::core::{CredentialSource, ErrorKind, Lifetime, MapEnv, SourceSettings};
use credchain_kubernetes::KubernetesSource;
use kube_api::{rotate_token, Behaviour, KubeApi};

const TOKEN: &str = "FAKE_SA_TOKEN_kubeconfig_001";
const NS: &str = "etl";
const SECRET: &str = "prefect";
const KEY: &str = "PREFECT_API_KEY";
const VALUE: &str = "pnu_FAKE_KEY_001";

/// A source named `kubernetes` built from `options` (TOML) and `env`.
fn kube_source(options: &str, env: &[(&str, &str)]) -> KubernetesSource {
    let table: toml::Table = toml::from_str(options).unwrap();
    let env = MapEnv::new(env.iter().copied());
    KubernetesSource::from_options(SourceSettings::new("kubernetes"), table, &env)
        .unwrap_or_else(|e| panic!("building the kubernetes source: {e}"))
}

/// A source reading Secret `prefect` through a kubeconfig for `api` written into `dir`.
fn through_kubeconfig(api: &KubeApi, dir: &Path, extra: &str) -> KubernetesSource {
    let path = api.write_kubeconfig(dir, TOKEN, NS);
    kube_source(
        &format!(
            "secret = '{SECRET}'\nkubeconfig = '{}'\n{extra}",
            path.display()
        ),
        &[],
    )
}

#[tokio::test]
async fn a_secret_made_with_echo_resolves_to_the_key_without_its_newline() {
    let capture = Capture::start();
    let api = KubeApi::start(TOKEN).await;
    api.put(NS, SECRET, KEY, format!("{VALUE}\n").as_bytes());
    let dir = tempfile::tempdir().unwrap();
    let source = through_kubeconfig(&api, dir.path(), "");

    let outcome = source.fetch(KEY).await;
    capture.record(&outcome);
    let resolved = outcome.unwrap().expect("the key is in the Secret");
    assert!(resolved.value.expose() == VALUE, "wrong value");
    assert_eq!(resolved.value.len(), 16);
    assert_eq!(resolved.provenance.source, "kubernetes");
    assert_eq!(resolved.provenance.location, "etl/prefect#PREFECT_API_KEY");
    assert_eq!(resolved.provenance.version.as_deref(), Some("1"));
    assert_eq!(resolved.lifetime, Lifetime::Remote { expires_in: None });
    assert_eq!(api.requests(), 1);
    assert_eq!(api.tokens_seen(), vec![Some(TOKEN.to_string())]);
    capture.record_debug(&source);
    capture.assert_hidden(&[VALUE, TOKEN]);
}

#[tokio::test]
async fn invalid_base64_is_invalid_and_names_the_secret_and_key_but_not_the_data() {
    const RAW: &str = "cG51X0ZBS0Vf*not*base64";
    let capture = Capture::start();
    let api = KubeApi::start(TOKEN).await;
    api.put_raw(NS, SECRET, KEY, RAW);
    let dir = tempfile::tempdir().unwrap();
    let source = through_kubeconfig(&api, dir.path(), "");

    let outcome = source.fetch(KEY).await;
    capture.record(&outcome);
    let err = outcome.expect_err("invalid base64 is an error");
    assert_eq!(err.kind(), ErrorKind::Invalid);
    let message = err.to_string();
    assert!(
        message.contains("etl/prefect#PREFECT_API_KEY") && message.contains("base64"),
        "{message}"
    );
    capture.assert_hidden(&[RAW, TOKEN]);
}

#[tokio::test]
async fn a_missing_secret_or_data_key_is_absent() {
    let api = KubeApi::start(TOKEN).await;
    api.put(NS, SECRET, "PREFECT_API_URL", b"http://127.0.0.1:4200/api");
    let dir = tempfile::tempdir().unwrap();
    let path = api.write_kubeconfig(dir.path(), TOKEN, NS);
    let mut settings = SourceSettings::new("kubernetes");
    settings
        .keys
        .insert("DATABASE_URL".into(), "etl-db/url".into());
    let table = toml::from_str(&format!(
        "secret = '{SECRET}'\nkubeconfig = '{}'",
        path.display()
    ))
    .unwrap();
    let source = KubernetesSource::from_options(settings, table, &MapEnv::default()).unwrap();

    assert!(
        source.fetch(KEY).await.unwrap().is_none(),
        "no such data key"
    );
    assert!(
        source.fetch("DATABASE_URL").await.unwrap().is_none(),
        "no such Secret (404)"
    );
    assert_eq!(api.requests(), 2);
}

#[tokio::test]
async fn refusals_and_server_errors_map_to_denied_and_unavailable() {
    let capture = Capture::start();
    let api = KubeApi::start(TOKEN).await;
    api.put(NS, SECRET, KEY, VALUE.as_bytes());
    let dir = tempfile::tempdir().unwrap();
    let source = through_kubeconfig(&api, dir.path(), "");

    for (behaviour, kind) in [
        (Behaviour::Fail(401), ErrorKind::Denied),
        (Behaviour::Fail(403), ErrorKind::Denied),
        (Behaviour::Fail(500), ErrorKind::Unavailable),
        (Behaviour::Fail(503), ErrorKind::Unavailable),
    ] {
        api.set(behaviour);
        let outcome = source.fetch(KEY).await;
        capture.record(&outcome);
        let err = outcome.expect_err("a failing server is an error");
        assert_eq!(err.kind(), kind, "{behaviour:?}: {err}");
        if behaviour == Behaviour::Fail(403) {
            let hint = err.hint().unwrap_or_default();
            assert!(
                hint.contains("`get` on `secrets`") && hint.contains("`etl`"),
                "{hint}"
            );
        }
    }
    assert_eq!(
        api.requests(),
        4,
        "one request per fetch: the source does not retry"
    );

    api.set(Behaviour::Normal);
    api.revoke(TOKEN);
    let outcome = source.fetch(KEY).await;
    capture.record(&outcome);
    assert_eq!(
        outcome.unwrap_err().kind(),
        ErrorKind::Denied,
        "a revoked token is a 401"
    );
    capture.assert_hidden(&[VALUE, TOKEN]);
}

#[tokio::test]
async fn a_slow_or_unreachable_server_is_unavailable() {
    let api = KubeApi::start(TOKEN).await;
    api.put(NS, SECRET, KEY, VALUE.as_bytes());
    api.set(Behaviour::Slow(Duration::from_secs(10)));
    let dir = tempfile::tempdir().unwrap();
    let source = through_kubeconfig(&api, dir.path(), "timeout = '1s'");
    let err = source.fetch(KEY).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        err.to_string().contains("did not answer within 1s"),
        "{err}"
    );

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let kubeconfig = std::fs::read_to_string(dir.path().join("kubeconfig")).unwrap();
    let moved = kubeconfig.replace(&api.addr().port().to_string(), &closed.to_string());
    std::fs::write(dir.path().join("kubeconfig"), moved).unwrap();
    let source = through_kubeconfig_file(dir.path());
    let err = source.fetch(KEY).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("cannot reach"), "{err}");
}

/// A source reading the kubeconfig already in `dir`.
fn through_kubeconfig_file(dir: &Path) -> KubernetesSource {
    let path = dir.join("kubeconfig");
    kube_source(
        &format!("secret = '{SECRET}'\nkubeconfig = '{}'", path.display()),
        &[],
    )
}

#[tokio::test]
async fn without_a_kubeconfig_or_a_pod_the_source_is_not_configured() {
    let none = kube_source(&format!("secret = '{SECRET}'"), &[]);
    assert_eq!(
        none.fetch(KEY).await.unwrap_err().kind(),
        ErrorKind::NotConfigured
    );

    let home = tempfile::tempdir().unwrap();
    let home_only = kube_source(
        &format!("secret = '{SECRET}'"),
        &[("HOME", home.path().to_str().unwrap())],
    );
    assert_eq!(
        home_only.fetch(KEY).await.unwrap_err().kind(),
        ErrorKind::NotConfigured
    );

    let sa = tempfile::tempdir().unwrap();
    let env = [
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
        ("KUBERNETES_SERVICE_PORT", "1"),
    ];
    let options = format!(
        "secret = '{SECRET}'\nservice_account_dir = '{}'",
        sa.path().display()
    );
    let no_token = kube_source(&options, &env);
    assert_eq!(
        no_token.fetch(KEY).await.unwrap_err().kind(),
        ErrorKind::NotConfigured
    );
}

/// The pod variables for a double on 127.0.0.1.
fn pod_env(api: &KubeApi) -> Vec<(&'static str, String)> {
    vec![
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1".to_string()),
        ("KUBERNETES_SERVICE_PORT", api.addr().port().to_string()),
    ]
}

#[tokio::test]
async fn in_cluster_over_tls_the_next_read_after_a_rotation_carries_the_new_token() {
    const FIRST: &str = "FAKE_SA_TOKEN_in_cluster_first";
    const SECOND: &str = "FAKE_SA_TOKEN_in_cluster_second";
    let capture = Capture::start();
    let api = KubeApi::start_tls(FIRST).await;
    api.put(NS, SECRET, KEY, VALUE.as_bytes());
    let sa = tempfile::tempdir().unwrap();
    api.write_service_account(sa.path(), FIRST, NS);
    let env = pod_env(&api);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let options = format!(
        "secret = '{SECRET}'\nservice_account_dir = '{}'",
        sa.path().display()
    );
    let source = kube_source(&options, &env);

    let outcome = source.fetch(KEY).await;
    capture.record(&outcome);
    let first = outcome.unwrap().expect("the key is in the Secret");
    assert_eq!(
        first.provenance.location, "etl/prefect#PREFECT_API_KEY",
        "namespace from the pod"
    );

    rotate_token(sa.path(), SECOND);
    api.accept(SECOND);
    api.revoke(FIRST);
    let outcome = source.fetch(KEY).await;
    capture.record(&outcome);
    assert!(
        outcome.unwrap().unwrap().value.expose() == VALUE,
        "wrong value after rotation"
    );
    let seen = api.tokens_seen();
    assert!(
        seen == [Some(FIRST.to_string()), Some(SECOND.to_string())],
        "tokens sent out of order"
    );
    capture.record_debug(&source);
    capture.assert_hidden(&[VALUE, FIRST, SECOND]);
}

#[tokio::test]
async fn in_cluster_refuses_a_server_the_pod_ca_did_not_sign() {
    let api = KubeApi::start_tls(TOKEN).await;
    let stranger = KubeApi::start_tls(TOKEN).await;
    let sa = tempfile::tempdir().unwrap();
    stranger.write_service_account(sa.path(), TOKEN, NS);
    let env = pod_env(&api);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let options = format!(
        "secret = '{SECRET}'\nservice_account_dir = '{}'",
        sa.path().display()
    );
    let err = kube_source(&options, &env).fetch(KEY).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(
        api.tokens_seen(),
        Vec::<Option<String>>::new(),
        "no token reached a server"
    );
}

#[tokio::test]
async fn forbidden_makes_the_cli_exit_5_with_the_rbac_hint() {
    let api = KubeApi::start(TOKEN).await;
    api.put(NS, SECRET, KEY, VALUE.as_bytes());
    api.set(Behaviour::Fail(403));
    let dir = tempfile::tempdir().unwrap();
    api.write_kubeconfig(dir.path(), TOKEN, NS);
    let config = format!(
        "[keys]\n{KEY} = \"required\"\n\n[[sources]]\ntype = \"kubernetes\"\nsecret = \"{SECRET}\"\n\
         kubeconfig = \"kubeconfig\"\n"
    );
    std::fs::write(dir.path().join("credchain.toml"), config).unwrap();

    let cwd = dir.path().to_path_buf();
    let out =
        tokio::task::spawn_blocking(move || support::Cli::new().args(["get", KEY]).cwd(cwd).run())
            .await
            .unwrap();
    assert_eq!(out.code, Some(5), "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains("`get` on `secrets`"),
        "no RBAC hint: {}",
        out.stderr
    );
    support::assert_no_secret(&out.all_output(), &[VALUE, TOKEN]);
}

/// Writes `files` into `volume` the way the kubelet updates a Secret volume: a new timestamped
/// directory, a `..data` symlink swapped to it by rename, one symlink per key through `..data`,
/// then the old directory removed.
fn kubelet_update(volume: &Path, generation: u32, files: &[(&str, &str)]) {
    use std::os::unix::fs::symlink;
    std::fs::create_dir_all(volume).unwrap();
    let stamp = format!("..2026_01_01_00_00_{generation:02}.{generation:09}");
    std::fs::create_dir(volume.join(&stamp)).unwrap();
    for (name, text) in files {
        std::fs::write(volume.join(&stamp).join(name), text).unwrap();
    }
    let old = std::fs::read_link(volume.join("..data")).ok();
    symlink(&stamp, volume.join("..data_tmp")).unwrap();
    std::fs::rename(volume.join("..data_tmp"), volume.join("..data")).unwrap();
    for (name, _) in files {
        let _ = symlink(Path::new("..data").join(name), volume.join(name));
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(volume.join(old)).unwrap();
    }
}

#[tokio::test]
async fn a_mounted_secret_volume_swapped_twice_is_read_anew_by_the_file_source() {
    let capture = Capture::start();
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("prefect");
    let values = [
        "pnu_FAKE_MOUNT_001",
        "pnu_FAKE_MOUNT_002",
        "pnu_FAKE_MOUNT_003",
    ];
    kubelet_update(&volume, 1, &[(KEY, &format!("{}\n", values[0]))]);
    let mut options = toml::Table::new();
    options.insert("dir".into(), volume.display().to_string().into());
    let env = std::sync::Arc::new(MapEnv::default());
    let source =
        credchain::sources::build("file", SourceSettings::new("file"), options, env).unwrap();

    for (generation, value) in values.iter().enumerate() {
        if generation > 0 {
            kubelet_update(&volume, generation as u32 + 1, &[(KEY, value)]);
        }
        let outcome = source.fetch(KEY).await;
        capture.record(&outcome);
        let resolved = outcome.unwrap().expect("the mounted key");
        assert!(
            resolved.value.expose() == *value,
            "generation {generation}: old value served"
        );
    }
    capture.assert_hidden(&values);
}

/// The `credchain.toml` in the ConfigMap of an example manifest, dedented.
fn example_config(manifest: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/kubernetes")
        .join(manifest);
    let text = std::fs::read_to_string(path).unwrap();
    let marker = "credchain.toml: |\n";
    let start = text.find(marker).expect("a ConfigMap with credchain.toml") + marker.len();
    let lines = text[start..]
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "));
    lines
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_configs_of_the_example_manifests_load() {
    for manifest in ["deployment-api.yaml", "deployment-mounted.yaml"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("credchain.toml"), example_config(manifest)).unwrap();
        let cwd = dir.path().to_path_buf();
        let out = tokio::task::spawn_blocking(move || {
            support::Cli::new().args(["resolve"]).cwd(cwd).run()
        })
        .await
        .unwrap();
        // Outside a pod both stores are "not configured", so the required keys are missing
        // (exit 3); a bad config would exit 2.
        assert_eq!(out.code, Some(3), "{manifest}: {}", out.stderr);
    }
}
