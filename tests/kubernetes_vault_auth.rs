//! Vault's Kubernetes auth, live: the shared OpenBao server's `kubernetes` auth method points at
//! the Kubernetes API double (over TLS, with the double's CA as `kubernetes_ca_cert`), which
//! answers OpenBao's TokenReview call for a service account JWT; the Vault source logs in with
//! that JWT from a token file and reads a KV secret.
#![cfg(all(feature = "kubernetes", feature = "vault"))]

#[path = "doubles/kube_api.rs"]
mod kube_api;
mod support;
mod vault_admin;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use credchain_core::{CredentialSource, ErrorKind};
use kube_api::{KubeApi, ServiceAccount};
use serde_json::json;
use vault_admin::{error_text, source, unique, Admin, Capture};

const KEY: &str = "PREFECT_API_KEY";
/// A token the double accepts for reading Secrets; unused by OpenBao, which sends the login JWT.
const API_TOKEN: &str = "FAKE_SA_TOKEN_unused_by_bao";

/// A service account JWT shaped as Kubernetes issues them. Its signature is not checked:
/// OpenBao without `pem_keys` trusts the TokenReview answer instead, which is the point here.
fn service_account_jwt(account: &ServiceAccount, nonce: &str) -> String {
    let header = json!({ "alg": "RS256", "kid": "credchain-test" });
    let claims = json!({
        "iss": "kubernetes/serviceaccount",
        "sub": format!("system:serviceaccount:{}:{}", account.namespace, account.name),
        "kubernetes.io/serviceaccount/namespace": account.namespace,
        "kubernetes.io/serviceaccount/service-account.name": account.name,
        "kubernetes.io/serviceaccount/service-account.uid": account.uid,
        "kubernetes.io/serviceaccount/secret.name": format!("{}-token-{nonce}", account.name),
    });
    let part = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let signature = URL_SAFE_NO_PAD.encode(format!("FAKE-signature-{nonce}"));
    format!("{}.{}.{signature}", part(&header), part(&claims))
}

/// Enables the `kubernetes` auth method at a fresh mount pointing at `api`, with a role `etl`
/// for service account `etl/credchain` that may read `secret/data/<dir>/*`; returns the mount.
async fn kubernetes_auth(admin: &Admin, api: &KubeApi, dir: &str) -> String {
    let mount = unique("k8s");
    admin.enable_auth(&mount, "kubernetes").await;
    // Outside a pod OpenBao has no local CA file, so it is given the double's CA.
    let config = json!({
        "kubernetes_host": api.url(),
        "kubernetes_ca_cert": api.ca_pem(),
        "disable_local_ca_jwt": true,
    });
    admin
        .call("POST", &format!("auth/{mount}/config"), Some(config))
        .await;
    let policy = format!("{mount}-read");
    admin
        .read_policy(&policy, &[&format!("secret/data/{dir}/*")])
        .await;
    let role = json!({
        "bound_service_account_names": ["credchain"],
        "bound_service_account_namespaces": ["etl"],
        "token_policies": [policy],
        "token_ttl": "1h",
    });
    admin
        .call("POST", &format!("auth/{mount}/role/etl"), Some(role))
        .await;
    mount
}

/// Options for a Vault source logging in at `mount` with the JWT in `token_file`.
fn options(admin: &Admin, dir: &str, mount: &str, token_file: &std::path::Path) -> String {
    format!(
        "address = '{}'\npath = 'secret/{dir}/prefect'\nauth = {{ method = 'kubernetes', role = \
         'etl', mount = '{mount}', token_file = '{}' }}",
        admin.addr,
        token_file.display()
    )
}

#[tokio::test]
async fn openbao_kubernetes_login_is_checked_by_the_doubles_token_review() {
    let (capture, _guard) = Capture::start();
    let admin = Admin::new();
    let api = KubeApi::start_tls(API_TOKEN).await;
    let dir = unique("k8s-etl");
    let value = format!("pnu_FAKE_{dir}");
    admin
        .kv2_put("secret", &format!("{dir}/prefect"), json!({ KEY: value }))
        .await;
    let mount = kubernetes_auth(&admin, &api, &dir).await;

    let account = ServiceAccount {
        namespace: "etl".into(),
        name: "credchain".into(),
        uid: "5d1c7a3e-0b8f-4e61-9a2d-3f4b5c6d7e8f".into(),
    };
    let jwt = service_account_jwt(&account, &dir);
    api.review(&jwt, account);
    let files = tempfile::tempdir().unwrap();
    let token_file = files.path().join("token");
    std::fs::write(&token_file, &jwt).unwrap();
    let vault = source(&options(&admin, &dir, &mount, &token_file), &[]);

    let resolved = vault
        .fetch(KEY)
        .await
        .unwrap()
        .expect("the key is in the KV secret");
    assert!(resolved.value.expose() == value, "wrong value");
    assert_eq!(
        api.token_reviews(),
        1,
        "OpenBao asked the double's TokenReview once"
    );
    assert_eq!(
        api.tokens_seen(),
        vec![Some(jwt.clone())],
        "OpenBao sent the login JWT as bearer"
    );

    let printed = format!("{vault:?}{resolved:?}{}", capture.text());
    support::assert_no_secret(&printed, &[&value, &jwt]);
}

#[tokio::test]
async fn a_jwt_the_token_review_does_not_authenticate_is_denied() {
    let (capture, _guard) = Capture::start();
    let admin = Admin::new();
    let api = KubeApi::start_tls(API_TOKEN).await;
    let dir = unique("k8s-etl");
    admin
        .kv2_put(
            "secret",
            &format!("{dir}/prefect"),
            json!({ KEY: "pnu_FAKE_unread" }),
        )
        .await;
    let mount = kubernetes_auth(&admin, &api, &dir).await;

    let stranger = ServiceAccount {
        namespace: "etl".into(),
        name: "credchain".into(),
        uid: "0a0b0c0d-1111-4222-8333-444455556666".into(),
    };
    let jwt = service_account_jwt(&stranger, &dir);
    api.accept(&jwt); // OpenBao may call the API with it, but the review says "not authenticated"
    let files = tempfile::tempdir().unwrap();
    let token_file = files.path().join("token");
    std::fs::write(&token_file, &jwt).unwrap();
    let vault = source(&options(&admin, &dir, &mount, &token_file), &[]);

    let err = vault.fetch(KEY).await.expect_err("the login is refused");
    assert_eq!(err.kind(), ErrorKind::Denied, "{}", error_text(&err));
    assert_eq!(api.token_reviews(), 0);
    assert!(api.requests() >= 1, "OpenBao asked the double");

    let printed = format!("{vault:?}{}{}", error_text(&err), capture.text());
    support::assert_no_secret(&printed, &[&jwt, "pnu_FAKE_unread"]);
}
