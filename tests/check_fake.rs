//! `credchain check` against a recording stand-in for Prefect: the exact request paths (a URL
//! ending in `/api/` and one ending in `/api` send the same ones), and TLS with a private CA
//! (trusted through `SSL_CERT_FILE` or `PREFECT_API_SSL_CERT_FILE`, refused without it).

mod prefect_fake;
mod support;

use prefect_fake::{prefect_like, FakePrefect};
use support::{Cli, CliOutput};

/// Runs `credchain check ARGS` with `vars` off the async runtime, so the fake keeps serving.
async fn check(args: &[&str], vars: Vec<(String, String)>) -> CliOutput {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut cli = Cli::new().args(["-vv", "check"]).args(args);
        for (name, value) in vars {
            cli = cli.env(name, value);
        }
        cli.run()
    })
    .await
    .unwrap()
}

fn var(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_string(), value.into())
}

fn assert_exit(out: &CliOutput, code: i32) {
    assert_eq!(
        out.code,
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_api_slash_send_exactly_the_same_requests() {
    let mut lines = Vec::new();
    for suffix in ["", "/"] {
        let fake = FakePrefect::start(|seen, _| prefect_like(seen)).await;
        let out = check(
            &["--write"],
            vec![var("PREFECT_API_URL", format!("{}{suffix}", fake.url()))],
        )
        .await;
        assert_exit(&out, 0);
        lines.push(fake.lines());
    }
    assert_eq!(lines[0], lines[1]);
    assert_eq!(
        lines[0],
        [
            "GET /api/health",
            "GET /api/csrf-token",
            "POST /api/flows/filter",
            "GET /api/admin/version",
            "POST /api/flows/count",
            "POST /api/flows/",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_says_its_api_version_and_client() {
    let fake = FakePrefect::start(|seen, _| prefect_like(seen)).await;
    let out = check(&[], vec![var("PREFECT_API_URL", fake.url())]).await;
    assert_exit(&out, 0);
    for seen in fake.seen() {
        assert_eq!(
            seen.header("x-prefect-api-version"),
            "0.8.4",
            "{}",
            seen.line()
        );
        assert!(
            seen.header("user-agent").starts_with("credchain/"),
            "{}",
            seen.line()
        );
        assert_eq!(seen.header("authorization"), "", "no credential, no header");
    }
}

fn ca_file(fake: &FakePrefect) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), fake.ca_pem.as_ref().unwrap()).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_ca_in_ssl_cert_file_is_trusted() {
    let fake = FakePrefect::start_tls(|seen, _| prefect_like(seen)).await;
    let ca = ca_file(&fake);
    for name in ["SSL_CERT_FILE", "PREFECT_API_SSL_CERT_FILE"] {
        let vars = vec![
            var("PREFECT_API_URL", fake.url()),
            var(name, ca.path().display().to_string()),
        ];
        assert_exit(&check(&[], vars).await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ca_exits_6_naming_the_host_and_the_certificate_problem() {
    let fake = FakePrefect::start_tls(|seen, _| prefect_like(seen)).await;
    let out = check(&[], vec![var("PREFECT_API_URL", fake.url())]).await;
    assert_exit(&out, 6);
    assert!(
        out.stderr.contains("TLS handshake with localhost failed"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("unknown authority"), "{}", out.stderr);
    assert!(
        out.stderr.contains("PREFECT_API_SSL_CERT_FILE"),
        "the hint says what to set: {}",
        out.stderr
    );
    assert!(fake.seen().is_empty(), "no request got through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_ca_file_fails_an_https_url_at_once_and_does_not_matter_for_http() {
    let missing = var("SSL_CERT_FILE", "/nonexistent/credchain-ca.pem");
    let tls = FakePrefect::start_tls(|seen, _| prefect_like(seen)).await;
    let out = check(
        &[],
        vec![var("PREFECT_API_URL", tls.url()), missing.clone()],
    )
    .await;
    assert_exit(&out, 2);
    assert!(out.stderr.contains("credchain-ca.pem"), "{}", out.stderr);
    // A plain-HTTP server never needs the CA file, so it is not even read.
    let plain = FakePrefect::start(|seen, _| prefect_like(seen)).await;
    let out = check(&[], vec![var("PREFECT_API_URL", plain.url()), missing]).await;
    assert_exit(&out, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_plain_http_port_says_to_use_http() {
    let fake = FakePrefect::start(|seen, _| prefect_like(seen)).await;
    let url = fake.url().replacen("http://", "https://", 1);
    let out = check(&[], vec![var("PREFECT_API_URL", url)]).await;
    assert_exit(&out, 6);
    assert!(
        out.stderr.contains("answered in plain HTTP") && out.stderr.contains("use http://"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skip_verify_accepts_an_unknown_ca() {
    let fake = FakePrefect::start_tls(|seen, _| prefect_like(seen)).await;
    let vars = vec![
        var("PREFECT_API_URL", fake.url()),
        var("PREFECT_API_TLS_INSECURE_SKIP_VERIFY", "true"),
    ];
    let out = check(&[], vars).await;
    assert_exit(&out, 0);
    assert!(
        out.stderr.contains("not checked"),
        "a warning says so: {}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answered_with_404_points_at_the_missing_api_path() {
    let fake = FakePrefect::start(|seen, _| {
        prefect_fake::Answer::json(404, r#"{"detail":"Not Found"}"#).with("x-seen", &seen.path)
    })
    .await;
    let url = fake.url().replace("/api", "/prefect");
    let out = check(&[], vec![var("PREFECT_API_URL", url.clone())]).await;
    assert_exit(&out, 2);
    assert!(
        out.stderr.contains(&format!("PREFECT_API_URL={url}/api")),
        "{}",
        out.stderr
    );
}
