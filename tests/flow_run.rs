//! `credchain run` against a real Prefect server: flow and task runs with their states, logs,
//! the summary artifact, SQLite and PostgreSQL targets, rejects, failed loads, tag concurrency.

mod prefect_api;
mod support;

use std::fs;
use std::path::Path;

use serde_json::Value;
use support::{assert_no_secret, Cli, CliOutput};

const SAMPLE: &str = include_str!("../examples/data/birdstrikes.csv");

/// The first `rows` records of the sample with a unique `id` column in front.
fn sample_with_ids(rows: usize) -> String {
    let mut lines = SAMPLE.lines();
    let mut out = format!("id,{}\n", lines.next().expect("header"));
    for (i, line) in lines.take(rows).enumerate() {
        out.push_str(&format!("{},{line}\n", i + 1));
    }
    out
}

fn write_pipeline(dir: &Path, extra: &str) {
    let text = format!(
        "[pipeline]\nsource = \"data.csv\"\ntarget = \"sqlite://out.db\"\ntable = \"birds\"\n\
         rejects = \"rejects.csv\"\n{extra}\n"
    );
    fs::write(dir.join("pipeline.toml"), text).expect("write pipeline");
}

fn run_in(dir: &Path, api: &str) -> CliOutput {
    Cli::new()
        .cwd(dir)
        .args(["run", "--pipeline", "pipeline.toml", "--json"])
        .env("PREFECT_API_URL", api)
        .run()
}

fn flow_run_id(out: &CliOutput) -> String {
    let doc: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|_| panic!("run --json printed no JSON; stderr: {}", out.stderr));
    assert_eq!(doc["flow_run_state"], "COMPLETED", "{doc}");
    doc["flow_run_id"]
        .as_str()
        .expect("flow_run_id")
        .to_string()
}

fn sqlite_count(db: &Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("open sqlite");
    conn.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
        r.get(0)
    })
    .expect("count rows")
}

/// The message of a flow run's current state.
fn state_message(run: &Value) -> String {
    run["state"]["message"].as_str().unwrap_or("").to_string()
}

#[test]
fn run_without_prefect_loads_the_sample_and_says_nothing_is_reported() {
    let out = Cli::new().args(["run"]).run();
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains("nothing is reported to Prefect"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("loaded 10000 of 10000 rows"),
        "{}",
        out.stdout
    );
}

#[test]
fn run_reports_a_completed_flow_with_three_task_runs_logs_and_artifact() {
    let api = support::prefect_url();
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("data.csv"), sample_with_ids(500)).unwrap();
    write_pipeline(dir.path(), "key = [\"id\"]");

    let out = run_in(dir.path(), &api);
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    let id = flow_run_id(&out);
    assert_eq!(
        prefect_api::state_type(&prefect_api::flow_run(&api, &id)),
        "COMPLETED"
    );
    let tasks = prefect_api::task_runs(&api, &id);
    let mut names: Vec<(String, String)> = tasks
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                prefect_api::state_type(t),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("extract", "COMPLETED"),
            ("load", "COMPLETED"),
            ("transform", "COMPLETED")
        ]
        .map(|(n, s)| (n.to_string(), s.to_string()))
    );
    let logs = prefect_api::logs(&api, &id);
    assert!(
        logs.iter().any(|l| l["task_run_id"].is_string()),
        "no task-run log lines"
    );
    assert!(logs.iter().any(|l| l["message"]
        .as_str()
        .unwrap_or("")
        .contains("loaded 500 of 500")));
    let artifacts = prefect_api::artifacts(&api, &id);
    assert!(artifacts.iter().any(|a| a["data"]
        .as_str()
        .unwrap_or("")
        .contains("rows loaded | 500")));
    assert_eq!(sqlite_count(&dir.path().join("out.db"), "birds"), 500);

    // The same input again, with key columns, changes nothing.
    let again = run_in(dir.path(), &api);
    assert_eq!(again.code, Some(0), "stderr: {}", again.stderr);
    assert_eq!(sqlite_count(&dir.path().join("out.db"), "birds"), 500);
    let summary: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(summary["summary"]["rows_changed"], 0);
}

#[test]
fn run_into_postgres_takes_the_target_from_the_chain_and_never_prints_the_password() {
    let api = support::prefect_url();
    let database_url = support::postgres_url();
    let password = url::Url::parse(&database_url)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
        .expect("the test database URL has a password");
    let dir = tempfile::tempdir().expect("tempdir");
    let table = format!("birds_{}", std::process::id());
    fs::write(dir.path().join("data.csv"), sample_with_ids(300)).unwrap();
    let text = format!(
        "[pipeline]\nsource = \"data.csv\"\ntarget_key = \"DATABASE_URL\"\ntable = \"{table}\"\n\
         key = [\"id\"]\nrejects = \"rejects.csv\"\n"
    );
    fs::write(dir.path().join("pipeline.toml"), text).unwrap();
    fs::write(
        dir.path().join(".env"),
        format!("DATABASE_URL={database_url}\n"),
    )
    .unwrap();

    let out = Cli::new()
        .cwd(dir.path())
        .args(["-vv", "run", "--pipeline", "pipeline.toml", "--json"])
        .env("PREFECT_API_URL", &api)
        .run();
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert_no_secret(&out.all_output(), &[&password]);
    let id = flow_run_id(&out);
    assert_eq!(
        prefect_api::state_type(&prefect_api::flow_run(&api, &id)),
        "COMPLETED"
    );
    for log in prefect_api::logs(&api, &id) {
        assert_no_secret(log["message"].as_str().unwrap_or(""), &[&password]);
    }
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["summary"]["rows_loaded"], 300);
}

#[test]
fn run_with_too_many_bad_rows_fails_and_leaves_the_table_unchanged() {
    let api = support::prefect_url();
    let dir = tempfile::tempdir().expect("tempdir");
    let good = "id,name,amount\n1,a,10\n2,b,20\n3,c,30\n";
    fs::write(dir.path().join("data.csv"), good).unwrap();
    write_pipeline(dir.path(), "key = [\"id\"]\nmax_rejected = 0.05");
    assert_eq!(run_in(dir.path(), &api).code, Some(0));

    // 22 rows: line 3 has one field too many, line 5 has text in the integer column. 2 of 22
    // rejected is over the 5 % threshold.
    let mut bad = String::from("id,name,amount\n1,a,11\n2,b,21,extra\n3,c,31\n4,d,not-a-number\n");
    for i in 5..=22 {
        bad.push_str(&format!("{i},x,{i}\n"));
    }
    fs::write(dir.path().join("data.csv"), bad).unwrap();
    let out = run_in(dir.path(), &api);
    assert_eq!(out.code, Some(1), "stderr: {}", out.stderr);
    let rejects = fs::read_to_string(dir.path().join("rejects.csv")).expect("rejects file");
    assert!(
        rejects.lines().any(|l| l.starts_with("3,")),
        "line 3 not in rejects:\n{rejects}"
    );
    assert!(
        rejects.lines().any(|l| l.starts_with("5,")),
        "line 5 not in rejects:\n{rejects}"
    );
    let conn = rusqlite::Connection::open(dir.path().join("out.db")).unwrap();
    let total: i64 = conn
        .query_row("SELECT sum(amount) FROM birds", [], |r| r.get(0))
        .unwrap();
    assert_eq!(total, 60, "the table changed");

    let runs = prefect_api::post(
        &api,
        "/flow_runs/filter",
        serde_json::json!({ "sort": "START_TIME_DESC", "limit": 50 }),
    );
    let failed =
        runs.as_array().unwrap().iter().find(|r| {
            prefect_api::state_type(r) == "FAILED" && state_message(r).contains("reject")
        });
    let failed = failed.expect("no FAILED flow run naming the rejects");
    // Load ran beside transform and was cancelled when transform failed.
    let mut tasks: Vec<(String, String)> =
        prefect_api::task_runs(&api, failed["id"].as_str().unwrap())
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap().to_string(),
                    prefect_api::state_type(t),
                )
            })
            .collect();
    tasks.sort();
    assert_eq!(
        tasks,
        [
            ("extract", "COMPLETED"),
            ("load", "CANCELLED"),
            ("transform", "FAILED")
        ]
        .map(|(n, s)| (n.to_string(), s.to_string()))
    );
}

#[test]
fn run_whose_load_fails_midway_leaves_the_table_as_before() {
    let api = support::prefect_url();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("out.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE birds (id INTEGER PRIMARY KEY, name TEXT, amount INTEGER CHECK (amount < 1000));
             INSERT INTO birds VALUES (1, 'kept', 1), (2, 'kept', 2);",
        )
        .unwrap();
    }
    // The last row breaks the CHECK constraint, after the others were written.
    let mut csv = String::from("id,name,amount\n");
    for i in 1..=200 {
        csv.push_str(&format!("{i},new,{}\n", if i == 200 { 5000 } else { i }));
    }
    fs::write(dir.path().join("data.csv"), csv).unwrap();
    write_pipeline(dir.path(), "key = [\"id\"]");

    let out = run_in(dir.path(), &api);
    assert_eq!(out.code, Some(1), "stderr: {}", out.stderr);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: Vec<(i64, String)> = conn
        .prepare("SELECT id, name FROM birds ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows, vec![(1, "kept".to_string()), (2, "kept".to_string())]);
    assert!(
        out.stderr.contains("CHECK") || out.stderr.contains("constraint"),
        "{}",
        out.stderr
    );
}

#[test]
fn tag_limit_of_one_keeps_two_loads_from_overlapping() {
    let api = support::prefect_url();
    let tag = format!("etl-serial-{}", std::process::id());
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    for dir in &dirs {
        fs::write(dir.path().join("data.csv"), sample_with_ids(10_000)).unwrap();
        let extra = format!("key = [\"id\"]\ntags = [\"{tag}\"]");
        write_pipeline(dir.path(), &extra);
        fs::write(
            dir.path().join("credchain.toml"),
            format!(
                "[[sources]]\ntype = \"env\"\n\n[[concurrency.tags]]\ntag = \"{tag}\"\nlimit = 1\n"
            ),
        )
        .unwrap();
    }
    let setup = Cli::new()
        .cwd(dirs[0].path())
        .args(["concurrency", "setup"])
        .env("PREFECT_API_URL", &api)
        .run();
    assert_eq!(setup.code, Some(0), "stderr: {}", setup.stderr);

    let outs: Vec<CliOutput> = std::thread::scope(|scope| {
        let handles: Vec<_> = dirs
            .iter()
            .map(|dir| scope.spawn(|| run_in(dir.path(), &api)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut windows = Vec::new();
    for out in &outs {
        assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
        let id = flow_run_id(out);
        let load = prefect_api::task_runs(&api, &id)
            .into_iter()
            .find(|t| t["name"] == "load")
            .expect("load task run");
        let start = parse_time(&load["start_time"]);
        let end = parse_time(&load["end_time"]);
        windows.push((start, end));
    }
    windows.sort();
    assert!(
        windows[0].1 <= windows[1].0,
        "the two loads overlapped: {windows:?}"
    );
}

fn parse_time(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|| panic!("not a timestamp: {value}"))
}

/// Starts `credchain -v run` on 400,000 rows in `dir` with `vars`, sends `signal` after
/// `after`, and returns the exit code and stderr.
fn interrupt_run(
    dir: &Path,
    vars: &[(&str, &str)],
    after: std::time::Duration,
    signal: nix::sys::signal::Signal,
) -> (Option<i32>, String) {
    let body: String = SAMPLE.lines().skip(1).map(|l| format!("{l}\n")).collect();
    let mut csv = format!("{}\n", SAMPLE.lines().next().unwrap());
    for _ in 0..40 {
        csv.push_str(&body);
    }
    fs::write(dir.join("data.csv"), csv).unwrap();
    write_pipeline(dir, "");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_credchain"));
    command
        .args(["-v", "run", "--pipeline", "pipeline.toml"])
        .current_dir(dir)
        .env_clear()
        .env("HOME", dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (name, value) in vars {
        command.env(name, value);
    }
    let child = command.spawn().expect("start credchain run");
    // Wait until the run is under way.
    std::thread::sleep(after);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, signal).expect("send the signal");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn interrupting_a_reported_run_cancels_it_and_its_task_runs() {
    let api = support::prefect_url();
    let dir = tempfile::tempdir().expect("tempdir");
    let vars = [("PREFECT_API_URL", api.as_str())];
    let (code, stderr) = interrupt_run(
        dir.path(),
        &vars,
        std::time::Duration::from_millis(1500),
        nix::sys::signal::Signal::SIGINT,
    );
    assert_eq!(code, Some(130), "stderr: {stderr}");
    let at = stderr.find("flow_run=").expect("the flow run id is logged") + "flow_run=".len();
    let id = &stderr[at..at + 36];
    let run = prefect_api::flow_run(&api, id);
    assert_eq!(prefect_api::state_type(&run), "CANCELLED", "{run}");
    let tasks = prefect_api::task_runs(&api, id);
    assert!(!tasks.is_empty());
    for task in tasks {
        let state = prefect_api::state_type(&task);
        assert!(
            state == "COMPLETED" || state == "CANCELLED",
            "task run {} left {state}",
            task["name"]
        );
    }
}

#[test]
fn interrupting_run_rolls_back_and_exits_130_or_143() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wait = std::time::Duration::from_millis(700);
    let term = interrupt_run(dir.path(), &[], wait, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(term.0, Some(143), "stderr: {}", term.1);
    let (code, stderr) = interrupt_run(dir.path(), &[], wait, nix::sys::signal::Signal::SIGINT);
    assert_eq!(code, Some(130), "stderr: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let db = dir.path().join("out.db");
    if db.exists() {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'birds'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "an interrupted run left a table behind");
    }
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".credchain"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
}

#[test]
fn a_tag_limit_without_slots_fails_the_load_task_with_a_clear_error() {
    let api = support::prefect_url();
    let dir = tempfile::tempdir().expect("tempdir");
    let tag = format!("zero-{}", std::process::id());
    prefect_api::post(
        &api,
        "/v2/concurrency_limits/",
        serde_json::json!({ "name": format!("tag:{tag}"), "limit": 0 }),
    );
    fs::write(dir.path().join("data.csv"), "id,name\n1,a\n2,b\n").unwrap();
    write_pipeline(dir.path(), &format!("tags = [\"{tag}\"]"));
    let out = Cli::new()
        .cwd(dir.path())
        .args(["-v", "run", "--pipeline", "pipeline.toml"])
        .env("PREFECT_API_URL", &api)
        .run();
    assert_eq!(out.code, Some(2), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("has no slot"), "{}", out.stderr);
    assert!(out.stderr.contains("concurrency setup"), "{}", out.stderr);
    let at = out.stderr.find("flow_run=").expect("flow run id logged") + "flow_run=".len();
    let tasks = prefect_api::task_runs(&api, &out.stderr[at..at + 36]);
    let load = tasks
        .iter()
        .find(|t| t["name"] == "load")
        .expect("load task");
    assert_eq!(prefect_api::state_type(load), "FAILED", "{load}");
}
