//! Command-line behaviour a new user meets first: exit codes of `exec`, a missing `--env-file`,
//! a config without sources, and JSON output on failure.

mod support;

use support::{run_credchain, Cli};

#[test]
fn exec_of_a_missing_command_exits_127() {
    let out = run_credchain(&["exec", "--", "credchain-no-such-command"], &[]);
    assert_eq!(out.code, Some(127), "{}", out.stderr);
    assert!(out.stderr.contains("error:"), "{}", out.stderr);
}

#[test]
fn exec_of_a_non_executable_file_exits_126() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("script"), "echo hi\n").unwrap();
    let out = Cli::new()
        .args(["exec", "--", "./script"])
        .cwd(dir.path())
        .run();
    assert_eq!(out.code, Some(126), "{}", out.stderr);
}

#[test]
fn missing_explicit_env_file_is_a_config_error_naming_it() {
    let out = run_credchain(&["--env-file", "missing.env", "resolve"], &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("missing.env"), "{}", out.stderr);
}

#[test]
fn config_without_sources_reads_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("credchain.toml"),
        "[prefect]\nmax_retries = 1\n",
    )
    .unwrap();
    let out = Cli::new()
        .args(["resolve", "PREFECT_API_URL", "--json"])
        .env("PREFECT_API_URL", "http://127.0.0.1:9/api")
        .cwd(dir.path())
        .run();
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("env"), "{}", out.stdout);
}

#[test]
fn json_failure_prints_one_document_on_stdout() {
    let out = run_credchain(&["--env-file", "missing.env", "resolve", "--json"], &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect(&out.stdout);
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["error"]["kind"], "usage");
    assert_eq!(doc["error"]["exit"], 2);
    assert!(doc["error"]["message"]
        .as_str()
        .unwrap()
        .contains("missing.env"));
}

#[test]
fn check_json_failure_prints_its_own_document_once() {
    let out = run_credchain(&["check", "--json"], &[]);
    assert_ne!(out.code, Some(0), "{}", out.stderr);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect(&out.stdout);
    assert_eq!(doc["ok"], false);
}

#[test]
fn a_missing_source_file_is_a_config_error_before_prefect_is_contacted() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = "[pipeline]\nsource = \"missing.csv\"\ntable = \"t\"\n";
    std::fs::write(dir.path().join("credchain.toml"), pipeline).unwrap();
    // Nothing listens on port 9: contacting Prefect first would exit 6.
    for command in ["run", "serve"] {
        let out = Cli::new()
            .args([command])
            .env("PREFECT_API_URL", "http://127.0.0.1:9/api")
            .cwd(dir.path())
            .run();
        assert_eq!(out.code, Some(2), "{command}: {}", out.stderr);
        assert!(out.stderr.contains("missing.csv"), "{}", out.stderr);
    }
}

#[test]
fn doctor_reports_an_invalid_pipeline_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[pipeline]\nno_such_field = 1\n";
    std::fs::write(dir.path().join("credchain.toml"), config).unwrap();
    let out = Cli::new().args(["doctor"]).cwd(dir.path()).run();
    assert_eq!(out.code, Some(2), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("pipeline: error"), "{}", out.stdout);
}

#[test]
fn doctor_warns_once_about_key_and_auth_string_together() {
    let dir = tempfile::tempdir().unwrap();
    let env = "PREFECT_API_KEY=pnu_FAKE_DOCTOR_KEY\nPREFECT_API_AUTH_STRING=admin:FAKEpass\n";
    std::fs::write(dir.path().join(".env"), env).unwrap();
    let out = Cli::new().args(["doctor"]).cwd(dir.path()).run();
    let stdout = &out.stdout;
    assert_eq!(stdout.matches("refuses to run").count(), 1, "{stdout}");
    assert!(!stdout.contains("ignores the key"), "{stdout}");
    assert!(stdout.contains("(2 keys)"), "{stdout}");
    support::assert_no_secret(&out.all_output(), &["pnu_FAKE_DOCTOR_KEY", "FAKEpass"]);
}

#[test]
fn doctor_reports_a_duplicate_dotenv_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let env = "PREFECT_API_KEY=pnu_FAKE_DUP_A\nPREFECT_API_KEY=pnu_FAKE_DUP_B\n";
    std::fs::write(dir.path().join(".env"), env).unwrap();
    let out = Cli::new().args(["doctor"]).cwd(dir.path()).run();
    let all = out.all_output();
    assert_eq!(all.matches("again on line 2").count(), 1, "{all}");
    support::assert_no_secret(&all, &["pnu_FAKE_DUP_A", "pnu_FAKE_DUP_B"]);
}
