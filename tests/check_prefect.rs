//! `credchain check` against the real Prefect servers and the bearer-key gateway that
//! scripts/test starts: each supported setup passes, each failure exits with its own code and a
//! message that says what to do, and no key or auth string reaches the output, `-vv` logs
//! included.

mod support;

use std::net::TcpListener;

use support::{assert_no_secret, Cli, CliOutput, Gateway, Role};

const UNKNOWN_KEY: &str = "pnu_FAKE_UNKNOWN_KEY_0001";
const WRONG_KEY: &str = "pnu_FAKE_WRONG_DOTENV_KEY_0002";

/// `credchain -vv check ARGS` with `vars`, optionally in `dir`.
fn check(args: &[&str], vars: &[(&str, &str)], dir: Option<&std::path::Path>) -> CliOutput {
    let mut cli = Cli::new().args(["-vv", "check"]).args(args);
    for (name, value) in vars {
        cli = cli.env(name, value);
    }
    if let Some(dir) = dir {
        cli = cli.cwd(dir);
    }
    cli.run()
}

fn assert_exit(out: &CliOutput, code: i32) {
    assert_eq!(
        out.code,
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        tail(&out.stderr)
    );
}

/// The last lines of a long `-vv` log, for failure messages.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

/// The text after `label` on its line of the human output.
fn field(stdout: &str, label: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label).filter(|rest| rest.starts_with(' ')))
        .map(|rest| rest.trim().to_string())
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{stdout}"))
}

fn dotenv(lines: &[String]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), lines.join("\n") + "\n").unwrap();
    dir
}

#[test]
fn check_passes_against_prefect_without_a_key() {
    let out = check(&[], &[("PREFECT_API_URL", &support::prefect_url())], None);
    assert_exit(&out, 0);
    assert!(field(&out.stdout, "auth") == "none", "{}", out.stdout);
    assert!(out.stdout.contains("server version"), "{}", out.stdout);
    assert!(out.stdout.contains("flows visible"), "{}", out.stdout);
}

#[test]
fn check_passes_through_the_gateway_with_the_key_from_dotenv() {
    let key = support::gateway_rw_key();
    let dir = dotenv(&[
        format!("PREFECT_API_URL={}", support::gateway_url()),
        format!("PREFECT_API_KEY={key}"),
    ]);
    let out = check(&[], &[], Some(dir.path()));
    assert_exit(&out, 0);
    assert!(field(&out.stdout, "auth") == "bearer", "{}", out.stdout);
    assert!(
        out.stdout.contains("set, from dotenv (.env:2)"),
        "{}",
        out.stdout
    );
    assert_no_secret(&out.all_output(), &[&key]);
}

#[test]
fn key_in_the_environment_overrides_a_wrong_one_in_dotenv() {
    let key = support::gateway_rw_key();
    let dir = dotenv(&[
        format!("PREFECT_API_URL={}", support::gateway_url()),
        format!("PREFECT_API_KEY={WRONG_KEY}"),
    ]);
    let out = check(&[], &[("PREFECT_API_KEY", &key)], Some(dir.path()));
    assert_exit(&out, 0);
    assert!(
        out.stdout.contains("set, from env (PREFECT_API_KEY)"),
        "{}",
        out.stdout
    );
    assert_no_secret(&out.all_output(), &[&key, WRONG_KEY]);
}

#[test]
fn check_passes_against_the_basic_auth_server() {
    let auth = support::prefect_auth_string();
    let vars = [
        ("PREFECT_API_URL", support::prefect_auth_url()),
        ("PREFECT_API_AUTH_STRING", auth.clone()),
    ];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = check(&["--write"], &vars, None);
    assert_exit(&out, 0);
    assert!(field(&out.stdout, "auth") == "basic", "{}", out.stdout);
    let password = auth.split_once(':').unwrap().1;
    assert_no_secret(&out.all_output(), &[&auth, password]);
}

#[test]
fn check_write_passes_against_the_csrf_server() {
    let out = check(
        &["--write"],
        &[("PREFECT_API_URL", &support::prefect_csrf_url())],
        None,
    );
    assert_exit(&out, 0);
    assert!(
        field(&out.stdout, "write access").starts_with("yes"),
        "{}",
        out.stdout
    );
}

#[test]
fn unknown_key_exits_4_and_names_its_source() {
    let out = check(
        &[],
        &[
            ("PREFECT_API_URL", &support::gateway_url()),
            ("PREFECT_API_KEY", UNKNOWN_KEY),
        ],
        None,
    );
    assert_exit(&out, 4);
    assert!(
        out.stderr
            .contains("rejected PREFECT_API_KEY from env (PREFECT_API_KEY)"),
        "{}",
        tail(&out.stderr)
    );
    assert!(out.stderr.contains("same value"), "{}", tail(&out.stderr));
    assert!(out.stderr.contains("hint: "), "{}", tail(&out.stderr));
    assert_no_secret(&out.all_output(), &[UNKNOWN_KEY]);
}

#[test]
fn read_only_key_with_write_exits_5() {
    let key = support::gateway_ro_key();
    let out = check(
        &["--write"],
        &[
            ("PREFECT_API_URL", &support::gateway_url()),
            ("PREFECT_API_KEY", &key),
        ],
        None,
    );
    assert_exit(&out, 5);
    assert!(
        field(&out.stdout, "authenticated").starts_with("yes"),
        "a read works: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("permission denied"),
        "{}",
        tail(&out.stderr)
    );
    assert!(
        out.stderr.contains("read-only API key"),
        "{}",
        tail(&out.stderr)
    );
    assert_no_secret(&out.all_output(), &[&key]);
}

#[test]
fn nothing_listening_exits_6_naming_host_and_port() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = check(
        &[],
        &[("PREFECT_API_URL", &format!("http://127.0.0.1:{port}/api"))],
        None,
    );
    assert_exit(&out, 6);
    assert!(
        out.stderr
            .contains(&format!("connection refused by 127.0.0.1:{port}")),
        "{}",
        tail(&out.stderr)
    );
}

/// A listener that must see no connection: the check fails before any request.
fn untouched_listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn assert_untouched(listener: &TcpListener) {
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the server was contacted: {other:?}"),
    }
}

#[test]
fn url_without_api_exits_2_before_any_request() {
    let (listener, port) = untouched_listener();
    let out = check(
        &[],
        &[("PREFECT_API_URL", &format!("http://127.0.0.1:{port}"))],
        None,
    );
    assert_exit(&out, 2);
    assert!(
        out.stderr
            .contains(&format!("PREFECT_API_URL=http://127.0.0.1:{port}/api")),
        "{}",
        tail(&out.stderr)
    );
    assert_untouched(&listener);
}

#[test]
fn key_and_auth_string_together_exit_2() {
    let auth = "admin:FAKEpass_both_0003";
    let vars = [
        ("PREFECT_API_URL", support::prefect_url()),
        ("PREFECT_API_KEY", UNKNOWN_KEY.to_string()),
    ];
    let mut vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    vars.push(("PREFECT_API_AUTH_STRING", auth));
    let out = check(&[], &vars, None);
    assert_exit(&out, 2);
    assert!(
        out.stderr.contains("both PREFECT_API_KEY"),
        "{}",
        tail(&out.stderr)
    );
    assert_no_secret(
        &out.all_output(),
        &[UNKNOWN_KEY, auth, "FAKEpass_both_0003"],
    );
}

#[test]
fn cloud_url_without_a_key_exits_2_before_any_request() {
    // Any request would go through this proxy (and fail); it must see no connection.
    let (proxy, port) = untouched_listener();
    let proxy_url = format!("http://127.0.0.1:{port}");
    let vars = [
        (
            "PREFECT_API_URL",
            "https://api.prefect.cloud/api/accounts/a1/workspaces/w1",
        ),
        ("HTTPS_PROXY", proxy_url.as_str()),
        ("HTTP_PROXY", proxy_url.as_str()),
    ];
    let out = check(&[], &vars, None);
    assert_exit(&out, 2);
    assert!(
        out.stderr
            .contains("Prefect Cloud, which needs PREFECT_API_KEY"),
        "{}",
        tail(&out.stderr)
    );
    assert_untouched(&proxy);
}

#[test]
fn json_output_reports_sources_and_results() {
    let key = support::gateway_rw_key();
    let out = check(
        &["--json"],
        &[
            ("PREFECT_API_URL", &support::gateway_url()),
            ("PREFECT_API_KEY", &key),
        ],
        None,
    );
    assert_exit(&out, 0);
    let doc: serde_json::Value =
        serde_json::from_str(&out.stdout).expect("one JSON document on stdout");
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["auth"], "bearer");
    assert_eq!(doc["api_url"], support::gateway_url());
    assert_eq!(doc["sources"]["PREFECT_API_KEY"]["source"], "env");
    assert_eq!(
        doc["sources"]["PREFECT_API_KEY"]["location"],
        "PREFECT_API_KEY"
    );
    assert!(doc["sources"]["PREFECT_API_AUTH_STRING"].is_null());
    assert!(doc["server_version"].is_string());
    assert!(doc["flows_visible"].is_u64());
    assert!(doc["error"].is_null());
    assert_no_secret(&out.all_output(), &[&key]);

    let out = check(
        &["--json"],
        &[
            ("PREFECT_API_URL", &support::gateway_url()),
            ("PREFECT_API_KEY", UNKNOWN_KEY),
        ],
        None,
    );
    assert_exit(&out, 4);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["error"]["kind"], "unauthorized");
    assert_eq!(doc["error"]["exit"], 4);
    assert_no_secret(&out.all_output(), &[UNKNOWN_KEY]);
}

#[test]
fn rotated_gateway_key_in_dotenv_is_picked_up_by_the_next_check() {
    let (old, new) = ("pnu_FAKE_CHECK_OLD_0004", "pnu_FAKE_CHECK_NEW_0005");
    let mut gateway = Gateway::start(&support::prefect_url(), &[(old, Role::Rw)]);
    let dir = dotenv(&[
        format!("PREFECT_API_URL={}", gateway.url()),
        format!("PREFECT_API_KEY={old}"),
    ]);
    assert_exit(&check(&[], &[], Some(dir.path())), 0);
    gateway.set_keys(&[(new, Role::Rw)]);
    std::fs::write(
        dir.path().join(".env"),
        format!("PREFECT_API_URL={}\nPREFECT_API_KEY={new}\n", gateway.url()),
    )
    .unwrap();
    let out = check(&["--write"], &[], Some(dir.path()));
    assert_exit(&out, 0);
    assert_no_secret(&out.all_output(), &[old, new]);
}
