//! The AWS Secrets Manager source against the moto server (SigV4 verified): JSON and
//! plain-text secrets, `SecretBinary`, version stages and ids, the `AWSPENDING` rotation
//! window, a wrong secret key, and that no key, token or value is ever printed.
#![cfg(feature = "aws")]

mod aws_admin;
#[path = "conformance/capture.rs"]
mod capture;
mod support;

use aws_admin::{source, unique, Admin};
use capture::{printed, Capture};
use credchain_core::{CredentialSource, ErrorKind, Lifetime, Secret};

const KEY: &str = "PREFECT_API_KEY";
const URL_KEY: &str = "PREFECT_API_URL";

fn json(pairs: &[(&str, &str)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    serde_json::Value::Object(map).to_string()
}

#[tokio::test]
async fn json_secret_holds_the_url_and_the_key() {
    let capture = Capture::start();
    let admin = Admin::new();
    let id = unique("json");
    let key = format!("pnu_FAKE_{}", id.replace('/', "_"));
    let version = admin
        .create_text(
            &id,
            &json(&[(URL_KEY, "http://127.0.0.1:4200/api"), (KEY, &key)]),
        )
        .await;
    let aws = source(&format!("secret_id = '{id}'"), &admin.env());

    let found = aws
        .fetch(KEY)
        .await
        .unwrap()
        .expect("the key is in the JSON object");
    assert_eq!(found.value.expose(), key);
    assert_eq!(found.provenance.source, "aws");
    assert_eq!(found.provenance.location, format!("{id}#{KEY}"));
    assert_eq!(found.provenance.version.as_deref(), Some(version.as_str()));
    assert_eq!(found.lifetime, Lifetime::Remote { expires_in: None });
    let url = aws.fetch(URL_KEY).await.unwrap().unwrap();
    assert_eq!(url.value.expose(), "http://127.0.0.1:4200/api");
    let missing = aws.fetch("DATABASE_URL").await;
    capture.record(&missing);
    assert!(
        matches!(missing, Ok(None)),
        "a field the object lacks is absent"
    );

    capture.record_debug(&found);
    capture.record_debug(&aws);
    capture.assert_hidden(&[&key, &admin.secret_key]);
}

#[tokio::test]
async fn plain_text_secret_per_key_through_keys() {
    let admin = Admin::new();
    let id = unique("plain");
    let key = format!("pnu_FAKE_{}", id.replace('/', "_"));
    admin.create_text(&id, &format!("{key}\n")).await;
    let aws = source(&format!("[keys]\n{KEY} = '{id}'"), &admin.env());

    let found = aws.fetch(KEY).await.unwrap().unwrap();
    assert_eq!(found.value.expose(), key, "the trailing newline is trimmed");
    assert_eq!(found.provenance.location, id);
    assert!(
        matches!(aws.fetch(URL_KEY).await, Ok(None)),
        "a key with no entry is not held"
    );
}

#[tokio::test]
async fn secret_binary_holds_the_key() {
    let admin = Admin::new();
    let id = unique("binary");
    let key = format!("pnu_FAKE_{}", id.replace('/', "_"));
    admin.create_binary(&id, key.as_bytes()).await;
    let aws = source(&format!("[keys]\n{KEY} = '{id}'"), &admin.env());
    assert_eq!(aws.fetch(KEY).await.unwrap().unwrap().value.expose(), key);

    let bad = unique("binary-bad");
    admin.create_binary(&bad, &[b'p', 0xff, 0xfe, b'x']).await;
    let aws = source(&format!("[keys]\n{KEY} = '{bad}'"), &admin.env());
    let err = aws.fetch(KEY).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.to_string().contains("not UTF-8"), "{err}");
}

#[tokio::test]
async fn plain_text_secret_read_with_a_field_is_not_a_json_object() {
    let capture = Capture::start();
    let admin = Admin::new();
    let id = unique("plain-field");
    let key = format!("pnu_FAKE_{}", id.replace('/', "_"));
    admin.create_text(&id, &key).await;
    let aws = source(&format!("[keys]\n{KEY} = '{id}#api_key'"), &admin.env());

    let outcome = aws.fetch(KEY).await;
    capture.record(&outcome);
    let err = outcome.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.to_string().contains("not a JSON object"), "{err}");
    assert!(err.to_string().contains(&id), "{err}");
    capture.assert_hidden(&[&key]);
}

#[tokio::test]
async fn missing_secret_is_absent() {
    let admin = Admin::new();
    let aws = source(
        &format!("secret_id = '{}'", unique("never-created")),
        &admin.env(),
    );
    assert!(matches!(aws.fetch(KEY).await, Ok(None)));
}

#[tokio::test]
async fn pending_version_is_offered_only_after_a_rejection() {
    let capture = Capture::start();
    let admin = Admin::new();
    let id = unique("rotation");
    let (old, new) = (
        format!("pnu_FAKE_OLD_{}", id.len()),
        format!("pnu_FAKE_NEW_{}", id.len()),
    );
    let v1 = admin.create_text(&id, &json(&[(KEY, &old)])).await;
    let v2 = admin
        .put(&id, &json(&[(KEY, &new)]), Some("AWSPENDING"))
        .await;
    let aws = source(&format!("secret_id = '{id}'"), &admin.env());

    let current = aws.fetch(KEY).await.unwrap().unwrap();
    assert_eq!(current.value.expose(), old, "resolution reads AWSCURRENT");
    assert_eq!(current.provenance.version.as_deref(), Some(v1.as_str()));

    let offered = aws
        .fetch_after_rejection(KEY, &Secret::new(old.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        offered.value.expose(),
        new,
        "the rejected current value gives way to AWSPENDING"
    );
    assert_eq!(
        offered.provenance.version.as_deref(),
        Some(format!("{v2} (AWSPENDING)").as_str())
    );

    let unrelated = aws
        .fetch_after_rejection(KEY, &Secret::new("pnu_FAKE_STALE"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        unrelated.value.expose(),
        old,
        "a current value that changed is returned as is"
    );

    admin.promote(&id, &v2, &v1).await;
    let promoted = aws.fetch(KEY).await.unwrap().unwrap();
    assert_eq!(
        promoted.value.expose(),
        new,
        "AWSCURRENT moved to the new version"
    );
    assert_eq!(promoted.provenance.version.as_deref(), Some(v2.as_str()));

    for resolved in [&current, &offered, &unrelated, &promoted] {
        capture.record_debug(resolved);
    }
    capture.assert_hidden(&[&old, &new, &admin.secret_key]);
}

#[tokio::test]
async fn rejection_without_a_pending_version_returns_the_current_value() {
    let admin = Admin::new();
    let id = unique("no-pending");
    let key = format!("pnu_FAKE_{}", id.len());
    admin.create_text(&id, &json(&[(KEY, &key)])).await;
    let aws = source(&format!("secret_id = '{id}'"), &admin.env());

    let again = aws
        .fetch_after_rejection(KEY, &Secret::new(key.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        again.value.expose(),
        key,
        "the rotation layer backs off on the same value"
    );
}

#[tokio::test]
async fn version_id_and_stage_pin_what_is_read() {
    let admin = Admin::new();
    let id = unique("versions");
    let v1 = admin.create_text(&id, &json(&[(KEY, "pnu_FAKE_V1")])).await;
    admin.put(&id, &json(&[(KEY, "pnu_FAKE_V2")]), None).await;

    let pinned = source(
        &format!("secret_id = '{id}'\nversion_id = '{v1}'"),
        &admin.env(),
    );
    let found = pinned.fetch(KEY).await.unwrap().unwrap();
    assert_eq!(found.value.expose(), "pnu_FAKE_V1");
    let previous = source(
        &format!("secret_id = '{id}'\nversion_stage = 'AWSPREVIOUS'"),
        &admin.env(),
    );
    let found = previous.fetch(KEY).await.unwrap().unwrap();
    assert_eq!(found.value.expose(), "pnu_FAKE_V1");
    assert_eq!(
        found.provenance.version,
        Some(format!("{v1} (AWSPREVIOUS)"))
    );
    let current = source(&format!("secret_id = '{id}'"), &admin.env());
    assert_eq!(
        current.fetch(KEY).await.unwrap().unwrap().value.expose(),
        "pnu_FAKE_V2"
    );
}

#[tokio::test]
async fn wrong_secret_key_is_denied_naming_the_secret_not_the_key() {
    let capture = Capture::start();
    let admin = Admin::new();
    let id = unique("denied");
    admin
        .create_text(&id, &json(&[(KEY, "pnu_FAKE_GUARDED")]))
        .await;
    let wrong = format!("{}WRONG", admin.secret_key);
    let token = "FAKEsessionTOKENxyz";
    let mut env = admin.env();
    env.retain(|(name, _)| name != "AWS_SECRET_ACCESS_KEY");
    env.push(("AWS_SECRET_ACCESS_KEY".into(), wrong.clone()));
    env.push(("AWS_SESSION_TOKEN".into(), token.into()));
    let aws = source(&format!("secret_id = '{id}'"), &env);

    let outcome = aws.fetch(KEY).await;
    capture.record(&outcome);
    capture.record_debug(&aws);
    let err = outcome.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Denied, "{err}");
    assert!(
        err.to_string().contains(&id) && err.to_string().contains(&admin.region),
        "{err}"
    );
    assert!(
        err.hint().unwrap_or_default().contains("Environment"),
        "{:?}",
        err.hint()
    );
    // The access key id is an identifier, not a secret: the SDK logs it at DEBUG and TRACE.
    capture.assert_hidden(&[&wrong, &admin.secret_key, token, "pnu_FAKE_GUARDED"]);
    assert!(
        !format!("{err} {:?} {aws:?}", err.hint()).contains(&admin.key_id),
        "{err}"
    );
}

#[tokio::test]
async fn diagnose_names_the_region_endpoint_and_credential_provider() {
    let capture = Capture::start();
    let admin = Admin::new();
    let aws = source(
        &format!("secret_id = '{}'", unique("diagnose")),
        &admin.env(),
    );

    let diagnosis = aws.diagnose().await.expect("moto is configured");
    let details = diagnosis.details.join("\n");
    assert!(
        details.contains(&format!("region {} (from AWS_REGION)", admin.region)),
        "{details}"
    );
    assert!(
        details.contains(&format!("endpoint {}", admin.endpoint)),
        "{details}"
    );
    assert!(
        details.contains("credentials from Environment"),
        "{details}"
    );
    capture.record_debug(&diagnosis);
    capture.assert_hidden(&[&admin.secret_key]);
}

#[tokio::test]
async fn nothing_listening_is_unavailable_naming_the_endpoint() {
    let admin = Admin::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let aws = source(
        &format!("secret_id = 'x'\nendpoint_url = '{endpoint}'"),
        &admin.env(),
    );

    let outcome = aws.fetch(KEY).await;
    let err = outcome.as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", printed(&outcome));
    assert!(err.to_string().contains(&endpoint), "{err}");
}
