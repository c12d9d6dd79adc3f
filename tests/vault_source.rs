//! The Vault source against the shared OpenBao dev server: KV v1 and v2 reads, versions and
//! rotation, mount discovery, deleted versions, AppRole and JWT logins, token renewal and
//! re-login, denied and unreachable servers, and that no token, secret id or value is printed.
#![cfg(feature = "vault")]

#[path = "doubles/kube_api.rs"]
mod kube_api;
mod support;
mod vault_admin;

use std::time::Duration;

use credchain_core::{CredentialSource, ErrorKind, Lifetime, MapEnv, SourceSettings};
use credchain_vault::VaultSource;
use serde_json::{json, Value};
use vault_admin::{error_text, source, unique, Admin, Capture, JwtSigner, TlsBao};

const KEY: &str = "PREFECT_API_KEY";

/// A source that reads `path` with `token` (plus `extra` options).
fn token_source(admin: &Admin, path: &str, extra: &str, token: &str) -> VaultSource {
    let options = format!("address = '{}'\npath = '{path}'\n{extra}", admin.addr);
    source(&options, &[("VAULT_TOKEN", token)])
}

/// Writes `KEY = pnu_FAKE_<name>` to `secret/<name>/prefect` and a policy `<name>` that may read
/// it; returns the value.
async fn seed(admin: &Admin, name: &str) -> String {
    let value = format!("pnu_FAKE_{name}");
    let path = format!("{name}/prefect");
    admin.kv2_put("secret", &path, json!({ KEY: value })).await;
    admin
        .read_policy(name, &[&format!("secret/data/{name}/*")])
        .await;
    value
}

/// AppRole at auth/`name` with a role `etl` holding policy `name` and `role` settings; returns
/// the source reading `secret/<name>/prefect` with an inline secret id, and that secret id.
async fn approle_source(admin: &Admin, name: &str, role: Value) -> (VaultSource, String) {
    let mut settings = json!({ "token_policies": [name] });
    settings
        .as_object_mut()
        .unwrap()
        .extend(role.as_object().unwrap().clone());
    let (role_id, secret_id) = admin.approle(name, "etl", settings).await;
    let auth = format!("role_id = '{role_id}', secret_id = '{secret_id}'");
    (auth_source(admin, name, "approle", &auth), secret_id)
}

/// A source reading `secret/<name>/prefect` that logs in with `method` at auth/`name`.
fn auth_source(admin: &Admin, name: &str, method: &str, fields: &str) -> VaultSource {
    let options = format!(
        "address = '{}'\npath = 'secret/{name}/prefect'\n\
         auth = {{ method = '{method}', mount = '{name}', {fields} }}",
        admin.addr
    );
    source(&options, &[])
}

/// The value of `KEY`, which must be there.
async fn value_of(vault: &VaultSource) -> String {
    let found = vault.fetch(KEY).await.unwrap().expect("the key is there");
    found.value.expose().to_string()
}

#[tokio::test]
async fn kv2_reads_carry_their_version_and_see_rotation() {
    let (capture, _guard) = Capture::start();
    let admin = Admin::new();
    let dir = unique("etl");
    let path = format!("secret/{dir}/prefect");
    let v1 = seed(&admin, &dir).await;
    let vault = token_source(&admin, &path, "", &admin.root);

    let first = vault.fetch(KEY).await.unwrap().expect("version 1 is there");
    assert_eq!(first.value.expose(), v1);
    assert_eq!(first.provenance.source, "vault");
    assert_eq!(first.provenance.location, format!("{path}#{KEY}"));
    assert_eq!(first.provenance.version.as_deref(), Some("1"));
    assert_eq!(first.lifetime, Lifetime::Remote { expires_in: None });

    let v2 = format!("{v1}_2");
    admin
        .kv2_put("secret", &format!("{dir}/prefect"), json!({ KEY: v2 }))
        .await;
    let second = vault.fetch(KEY).await.unwrap().unwrap();
    assert_eq!(second.value.expose(), v2);
    assert_eq!(second.provenance.version.as_deref(), Some("2"));

    let pinned = token_source(&admin, &path, "version = 1", &admin.root);
    let old = pinned.fetch(KEY).await.unwrap().unwrap();
    assert_eq!(old.value.expose(), v1);
    assert_eq!(old.provenance.version.as_deref(), Some("1"));

    let printed = format!(
        "{vault:?}{pinned:?}{first:?}{second:?}{old:?}{}",
        capture.text()
    );
    support::assert_no_secret(&printed, &[&v1, &v2, &admin.root]);
    assert_eq!(
        capture.count("logged in to vault"),
        2,
        "one login per source"
    );
}

#[tokio::test]
async fn kv1_mount_resolves_through_discovery() {
    let admin = Admin::new();
    let mount = unique("kv1");
    admin.mount_kv(&mount, 1).await;
    let value = format!("pnu_FAKE_{mount}");
    let body = json!({ KEY: value });
    admin
        .call("POST", &format!("{mount}/prefect"), Some(body))
        .await;
    let vault = token_source(&admin, &format!("{mount}/prefect"), "", &admin.root);

    let found = vault.fetch(KEY).await.unwrap().unwrap();
    assert_eq!(found.value.expose(), value);
    assert_eq!(found.provenance.version, None);
    assert!(matches!(found.lifetime, Lifetime::Remote { .. }));
}

#[tokio::test]
async fn kv2_mount_not_named_secret_resolves_through_discovery() {
    let admin = Admin::new();
    let mount = unique("kv");
    admin.mount_kv(&mount, 2).await;
    let value = format!("pnu_FAKE_{mount}");
    let url = "http://127.0.0.1:4200/api";
    let fields = json!({ KEY: value, "PREFECT_API_URL": url });
    admin.kv2_put(&mount, "prefect", fields).await;
    let vault = token_source(&admin, &format!("{mount}/prefect"), "", &admin.root);

    assert_eq!(value_of(&vault).await, value);
    let found = vault.fetch("PREFECT_API_URL").await.unwrap().unwrap();
    assert_eq!(found.value.expose(), url);
    assert_eq!(found.provenance.version.as_deref(), Some("1"));
}

#[tokio::test]
async fn a_path_with_the_api_data_segment_names_the_path_to_write() {
    let admin = Admin::new();
    let mount = unique("kv");
    admin.mount_kv(&mount, 2).await;
    let vault = token_source(&admin, &format!("{mount}/data/prefect"), "", &admin.root);

    let err = vault.fetch(KEY).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    let expected = format!("`{mount}/prefect`");
    assert!(err.to_string().contains(&expected), "{err}");
}

#[tokio::test]
async fn keys_override_the_path_and_field() {
    let admin = Admin::new();
    let dir = unique("keys");
    let value = format!("pnu_FAKE_{dir}");
    let other = format!("{dir}/other");
    admin
        .kv2_put("secret", &other, json!({ "api_key": value }))
        .await;
    let mut settings = SourceSettings::new("vault");
    let location = format!("secret/{other}#api_key");
    settings.keys.insert(KEY.to_string(), location.clone());
    let options = format!("address = '{}'\npath = 'secret/{dir}/prefect'", admin.addr);
    let env = MapEnv::new([("VAULT_TOKEN", admin.root.as_str())]);
    let vault = VaultSource::from_options(settings, toml::from_str(&options).unwrap(), &env);

    let found = vault.unwrap().fetch(KEY).await.unwrap().unwrap();
    assert_eq!(found.value.expose(), value);
    assert_eq!(found.provenance.location, location);
}

#[tokio::test]
async fn a_deleted_latest_version_is_absent_with_a_warning() {
    let (capture, _guard) = Capture::start();
    let admin = Admin::new();
    let dir = unique("deleted");
    let first = seed(&admin, &dir).await;
    let latest = format!("{first}_latest");
    let path = format!("{dir}/prefect");
    admin.kv2_put("secret", &path, json!({ KEY: latest })).await;
    admin
        .call("DELETE", &format!("secret/data/{path}"), None)
        .await;
    let vault = token_source(&admin, &format!("secret/{path}"), "", &admin.root);

    assert!(vault.fetch(KEY).await.unwrap().is_none());
    let text = capture.text();
    let warning = text
        .lines()
        .find(|l| l.contains("WARN") && l.contains("is deleted"))
        .expect("a warning about the deleted version");
    let names_both = warning.contains(&format!("secret/{path}")) && warning.contains("version 2");
    assert!(names_both, "{warning}");
    support::assert_no_secret(&text, &[&first, &latest, &admin.root]);
}

#[tokio::test]
async fn absent_empty_and_invalid_values() {
    let admin = Admin::new();
    let dir = unique("values");
    let fields = json!({ "EMPTY": " \n", "BROKEN": "pnu_FAKE_a\nb", "NUM": 42 });
    admin
        .kv2_put("secret", &format!("{dir}/prefect"), fields)
        .await;
    let vault = token_source(&admin, &format!("secret/{dir}/prefect"), "", &admin.root);

    assert!(vault.fetch("MISSING_FIELD").await.unwrap().is_none());
    assert!(vault.fetch("EMPTY").await.unwrap().is_none());
    let number = vault.fetch("NUM").await.unwrap().unwrap();
    assert_eq!(number.value.expose(), "42");
    let err = vault.fetch("BROKEN").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    support::assert_no_secret(&error_text(&err), &["pnu_FAKE_a"]);

    let nowhere = format!("secret/{dir}/nothing-here");
    let empty = token_source(&admin, &nowhere, "", &admin.root);
    assert!(empty.fetch(KEY).await.unwrap().is_none());
}

#[tokio::test]
async fn approle_login_reads_with_the_roles_policy() {
    let (capture, _guard) = Capture::start();
    let admin = Admin::new();
    let name = unique("approle");
    let value = seed(&admin, &name).await;
    let settings = json!({ "token_policies": [name], "token_ttl": "10m" });
    let (role_id, secret_id) = admin.approle(&name, "etl", settings).await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret-id");
    std::fs::write(&secret_file, format!("{secret_id}\n")).unwrap();
    let file = secret_file.display();
    let fields = format!("role_id = '{role_id}', secret_id_file = '{file}'");
    let vault = auth_source(&admin, &name, "approle", &fields);

    let found = vault.fetch(KEY).await.unwrap().unwrap();
    assert_eq!(found.value.expose(), value);
    value_of(&vault).await;
    assert_eq!(capture.count("logged in to vault"), 1, "no login per read");

    let diagnosis = vault.diagnose().await.unwrap();
    let details = diagnosis.details.join("\n");
    assert!(details.contains(&admin.addr), "{details}");
    assert!(
        details.contains(&format!("approle at auth/{name}")),
        "{details}"
    );
    assert!(details.contains("token TTL"), "{details}");
    let printed = format!("{vault:?}{found:?}{diagnosis:?}{}", capture.text());
    support::assert_no_secret(&printed, &[&value, &secret_id, &admin.root]);
}

#[tokio::test]
async fn approle_with_a_wrong_secret_id_is_denied_without_quoting_it() {
    let admin = Admin::new();
    let name = unique("approle-bad");
    seed(&admin, &name).await;
    let settings = json!({ "token_policies": [name] });
    let (role_id, _) = admin.approle(&name, "etl", settings).await;
    let wrong = "FAKE-0000-wrong-secret-id";
    let fields = format!("role_id = '{role_id}', secret_id = '{wrong}'");
    let vault = auth_source(&admin, &name, "approle", &fields);

    let err = vault.fetch(KEY).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Denied, "{err}");
    assert!(err.to_string().contains(&format!("auth/{name}")), "{err}");
    support::assert_no_secret(&error_text(&err), &[wrong]);
}

/// JWT auth at auth/`name` trusting `signer`, with a role `etl` bound to `subject`.
async fn jwt_role(admin: &Admin, name: &str, subject: &str) {
    let role = json!({
        "role_type": "jwt", "user_claim": "sub", "bound_subject": subject,
        "bound_audiences": ["credchain"], "token_policies": [name], "token_ttl": "10m",
    });
    let path = format!("auth/{name}/role/etl");
    admin.call("POST", &path, Some(role)).await;
}

#[tokio::test]
async fn jwt_login_rereads_the_token_file_on_each_login() {
    let (capture, _guard) = Capture::start();
    let admin = Admin::new();
    let name = unique("jwt");
    let value = seed(&admin, &name).await;
    let signer = JwtSigner::new();
    admin.enable_auth(&name, "jwt").await;
    let config = json!({ "jwt_validation_pubkeys": [signer.public_pem()] });
    admin
        .call("POST", &format!("auth/{name}/config"), Some(config))
        .await;
    jwt_role(&admin, &name, "worker-1").await;
    let dir = tempfile::tempdir().unwrap();
    let jwt_file = dir.path().join("token");
    let first = signer.sign("worker-1", "credchain", 300);
    std::fs::write(&jwt_file, &first).unwrap();
    let fields = format!("role = 'etl', token_file = '{}'", jwt_file.display());
    let vault = auth_source(&admin, &name, "jwt", &fields);
    assert_eq!(value_of(&vault).await, value);

    // Only the new JWT in the file can log in now; the next login must read it.
    jwt_role(&admin, &name, "worker-2").await;
    let second = signer.sign("worker-2", "credchain", 300);
    std::fs::write(&jwt_file, &second).unwrap();
    let revoke = format!("sys/leases/revoke-prefix/auth/{name}/login");
    admin.call("PUT", &revoke, None).await;
    let found = vault.fetch(KEY).await.unwrap().unwrap();
    assert_eq!(found.value.expose(), value);
    let printed = format!("{vault:?}{found:?}{}", capture.text());
    support::assert_no_secret(&printed, &[&value, &first, &second]);
}

#[tokio::test]
async fn a_short_lived_token_is_renewed_without_failing_a_read() {
    let admin = Admin::new();
    let dir = unique("renew");
    let value = seed(&admin, &dir).await;
    // A token cannot log in again: only renewal keeps it alive past its 6 s TTL. Renewals come
    // at about 4 s and 8 s; one up to 2 s late still finds the token alive.
    let token = admin.token(&[&dir], "6s").await;
    let vault = token_source(&admin, &format!("secret/{dir}/prefect"), "", &token);

    assert_eq!(value_of(&vault).await, value);
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(value_of(&vault).await, value);
}

#[tokio::test]
async fn an_approle_token_past_its_max_ttl_is_replaced_by_a_fresh_login() {
    let admin = Admin::new();
    let name = unique("maxttl");
    let value = seed(&admin, &name).await;
    let role = json!({ "token_ttl": "2s", "token_max_ttl": "3s" });
    let (vault, _) = approle_source(&admin, &name, role).await;

    assert_eq!(value_of(&vault).await, value);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(value_of(&vault).await, value);
}

#[tokio::test]
async fn a_revoked_token_leads_to_one_login_and_success() {
    let (capture, _guard) = Capture::start();
    let admin = Admin::new();
    let name = unique("revoked");
    let value = seed(&admin, &name).await;
    let (vault, secret_id) = approle_source(&admin, &name, json!({})).await;
    value_of(&vault).await;

    let revoke = format!("sys/leases/revoke-prefix/auth/{name}/login");
    admin.call("PUT", &revoke, None).await;
    assert_eq!(value_of(&vault).await, value, "read after a fresh login");
    assert_eq!(
        capture.count("logged in to vault"),
        2,
        "exactly one fresh login"
    );
    support::assert_no_secret(&capture.text(), &[&value, &secret_id]);
}

#[tokio::test]
async fn a_policy_that_does_not_cover_the_path_is_denied_naming_it() {
    let admin = Admin::new();
    let dir = unique("denied");
    let value = seed(&admin, &dir).await;
    let policy = format!("{dir}-elsewhere");
    let elsewhere = format!("secret/data/{dir}/elsewhere");
    admin.read_policy(&policy, &[&elsewhere]).await;
    let token = admin.token(&[&policy], "10m").await;
    let path = format!("secret/{dir}/prefect");
    let configured = "mount = 'secret'\nkv_version = 2";
    for extra in [configured, ""] {
        let vault = token_source(&admin, &path, extra, &token);
        let err = vault.fetch(KEY).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Denied, "{err}");
        assert!(err.to_string().contains(&path), "{err}");
        support::assert_no_secret(&error_text(&err), &[&token, &value]);
    }
}

#[tokio::test]
async fn a_stopped_vault_is_unavailable_naming_the_address() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let address = format!("http://{closed}");
    let options = format!("address = '{address}'\npath = 'secret/etl'");
    let vault = source(&options, &[("VAULT_TOKEN", "s.FAKE-token")]);

    let err = vault.fetch(KEY).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains(&address), "{err}");
    let diagnosed = vault.diagnose().await.unwrap_err();
    assert_eq!(diagnosed.kind(), ErrorKind::Unavailable);
    let printed = format!("{}{}", error_text(&err), error_text(&diagnosed));
    support::assert_no_secret(&printed, &["s.FAKE-token"]);
}

#[tokio::test]
async fn a_vault_that_does_not_answer_times_out_as_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    // Accept connections and never answer.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let options = format!("address = '{address}'\npath = 'secret/etl'\ntimeout = '1s'");
    let vault = source(&options, &[("VAULT_TOKEN", "s.FAKE-token")]);

    let err = vault.fetch(KEY).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let message = err.to_string();
    assert!(message.contains(&address), "{message}");
    assert!(message.contains("did not answer"), "{message}");
    silent.abort();
}

#[tokio::test]
async fn without_an_address_or_a_token_vault_is_not_configured() {
    let home = tempfile::tempdir().unwrap();
    let home_dir = home.path().to_str().unwrap();
    let env = [("VAULT_TOKEN", "s.FAKE"), ("HOME", home_dir)];
    let no_address = source("path = 'secret/etl'", &env);
    let err = no_address.fetch(KEY).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConfigured);
    let diagnosed = no_address.diagnose().await.unwrap_err();
    assert_eq!(diagnosed.kind(), ErrorKind::NotConfigured);

    let admin = Admin::new();
    let options = format!("address = '{}'\npath = 'secret/etl'", admin.addr);
    let no_token = source(&options, &[("HOME", home_dir)]);
    let err = no_token.fetch(KEY).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConfigured);
}

#[tokio::test]
async fn the_token_helper_file_is_used_when_vault_token_is_unset() {
    let admin = Admin::new();
    let dir = unique("helper");
    let value = seed(&admin, &dir).await;
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join(".vault-token"), &admin.root).unwrap();
    let home_dir = home.path().to_str().unwrap();
    let env = [("VAULT_ADDR", admin.addr.as_str()), ("HOME", home_dir)];
    let vault = source(&format!("path = 'secret/{dir}/prefect'"), &env);

    assert_eq!(value_of(&vault).await, value);
}

#[tokio::test]
async fn a_namespace_applies_to_the_login_and_the_reads() {
    let name = unique("ns");
    let admin = Admin::new().namespace(&name).await;
    admin.mount_kv("kv", 2).await;
    let value = format!("pnu_FAKE_{name}");
    admin.kv2_put("kv", "prefect", json!({ KEY: value })).await;
    admin.read_policy("etl", &["kv/data/prefect"]).await;
    let role = json!({ "token_policies": ["etl"] });
    let (role_id, secret_id) = admin.approle("approle", "etl", role).await;
    let options = format!(
        "address = '{}'\nnamespace = '{name}'\npath = 'kv/prefect'\n\
         auth = {{ method = 'approle', role_id = '{role_id}', secret_id = '{secret_id}' }}",
        admin.addr
    );

    assert_eq!(value_of(&source(&options, &[])).await, value);
    let env = [
        ("VAULT_NAMESPACE", name.as_str()),
        ("VAULT_TOKEN", &admin.root),
    ];
    let from_env = format!("address = '{}'\npath = 'kv/prefect'", admin.addr);
    assert_eq!(value_of(&source(&from_env, &env)).await, value);
}

#[tokio::test]
async fn a_missing_kubernetes_token_file_is_invalid_naming_it() {
    let admin = Admin::new();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("token");
    let fields = format!("role = 'etl', token_file = '{}'", missing.display());
    let vault = auth_source(&admin, "kubernetes", "kubernetes", &fields);

    let err = vault.fetch(KEY).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn tls_is_verified_with_ca_cert_or_skipped_with_skip_verify() {
    let bao = TlsBao::start();
    let admin = bao.admin();
    let value = seed(&admin, "tls").await;
    let base = format!("address = '{}'\npath = 'secret/tls/prefect'", bao.addr);
    let env = [("VAULT_TOKEN", TlsBao::ROOT)];

    let ca = format!("{base}\nca_cert = '{}'", bao.ca_cert.display());
    assert_eq!(value_of(&source(&ca, &env)).await, value);
    let ca_from_env = [env[0], ("VAULT_CACERT", bao.ca_cert.to_str().unwrap())];
    assert_eq!(value_of(&source(&base, &ca_from_env)).await, value);

    let untrusted = source(&base, &env).fetch(KEY).await.unwrap_err();
    assert_eq!(untrusted.kind(), ErrorKind::Unavailable, "{untrusted}");
    assert!(untrusted.to_string().contains(&bao.addr), "{untrusted}");

    let skipping = source(&format!("{base}\nskip_verify = true"), &env);
    assert_eq!(value_of(&skipping).await, value);
    let diagnosis = skipping.diagnose().await.unwrap();
    assert!(diagnosis
        .warnings
        .iter()
        .any(|w| w.contains("TLS verification is off")));
}

#[tokio::test]
async fn kubernetes_login_has_its_token_reviewed_by_the_cluster() {
    let (capture, _guard) = Capture::start();
    let admin = Admin::new();
    let name = unique("k8s");
    let value = seed(&admin, &name).await;
    let kube = kube_api::KubeApi::start_tls("FAKE-unused-bearer").await;
    admin.enable_auth(&name, "kubernetes").await;
    let config = json!({
        "kubernetes_host": kube.url(), "kubernetes_ca_cert": kube.ca_pem(),
        "disable_local_ca_jwt": true,
    });
    admin
        .call("POST", &format!("auth/{name}/config"), Some(config))
        .await;
    let role = json!({
        "bound_service_account_names": ["etl"], "bound_service_account_namespaces": ["prefect"],
        "token_policies": [name], "token_ttl": "10m",
    });
    admin
        .call("POST", &format!("auth/{name}/role/etl"), Some(role))
        .await;
    let account = kube_api::ServiceAccount {
        namespace: "prefect".into(),
        name: "etl".into(),
        uid: "0b5f6c1e-FAKE".into(),
    };
    let jwt = JwtSigner::new().sign_claims(json!({
        "iss": "kubernetes/serviceaccount",
        "sub": "system:serviceaccount:prefect:etl",
        "kubernetes.io/serviceaccount/namespace": account.namespace,
        "kubernetes.io/serviceaccount/service-account.name": account.name,
        "kubernetes.io/serviceaccount/service-account.uid": account.uid,
    }));
    kube.review(&jwt, account);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &jwt).unwrap();
    let fields = format!("role = 'etl', token_file = '{}'", token_file.display());
    let vault = auth_source(&admin, &name, "kubernetes", &fields);

    assert_eq!(value_of(&vault).await, value);
    assert_eq!(kube.token_reviews(), 1);
    let printed = format!("{vault:?}{}", capture.text());
    support::assert_no_secret(&printed, &[&value, &jwt]);
}

#[tokio::test]
async fn a_token_vault_does_not_know_and_a_missing_mount_get_hints_that_tell_them_apart() {
    let admin = Admin::new();
    let name = unique("hints");
    seed(&admin, &name).await;

    // An unknown token: Vault answers 403 as for a policy that does not allow the read.
    let wrong = "hvs.FAKE-unknown-token-0001";
    let vault = token_source(&admin, &format!("secret/{name}/prefect"), "", wrong);
    let err = vault.fetch(KEY).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Denied, "{err}");
    let hint = err.hint().unwrap_or_default();
    assert!(hint.contains("invalid, expired or revoked"), "{hint}");
    support::assert_no_secret(&error_text(&err), &[wrong]);

    // A valid token and a path under no mount: the hint names the missing mount too.
    let vault = token_source(&admin, &format!("{name}-nomount/x"), "", &admin.root);
    let err = vault.fetch(KEY).await.unwrap_err();
    let hint = err.hint().unwrap_or_default();
    assert!(
        hint.contains(&format!(
            "no secrets engine is mounted at `{name}-nomount/`"
        )),
        "{hint}"
    );
    assert!(!hint.contains("invalid, expired"), "{hint}");
}
