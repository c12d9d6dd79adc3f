//! `credchain serve` against real Prefect servers: several runners, runs created through the
//! API, key rotation at a bearer-key gateway while serving, and SIGTERM during a run. Each test
//! has a private Prefect server, because the deployment name `main-etl/etl-job` is global.

mod e2e;
mod prefect_api;
mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::Serve;
use support::{assert_no_secret, Gateway, PrefectServer, Role};

const SAMPLE: &str = include_str!("../examples/data/birdstrikes.csv");
const RUNS_DONE: Duration = Duration::from_secs(180);

/// A working directory with a pipeline that appends `rows` rows per run into `out.db`, polling
/// every second.
fn runner_dir(rows: usize, extra_config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv: String = SAMPLE
        .lines()
        .take(rows + 1)
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(dir.path().join("data.csv"), csv).unwrap();
    let config = format!(
        "[[sources]]\ntype = \"env\"\n\n[[sources]]\ntype = \"dotenv\"\n\n{extra_config}\n\n\
         [pipeline]\nsource = \"data.csv\"\ntarget = \"sqlite://out.db\"\ntable = \"birds\"\n\
         rejects = \"rejects.csv\"\n\n[serve]\npoll_interval = \"1s\"\n"
    );
    fs::write(dir.path().join("credchain.toml"), config).unwrap();
    dir
}

fn count_rows(dir: &Path) -> i64 {
    let db = dir.join("out.db");
    if !db.exists() {
        return 0;
    }
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT count(*) FROM birds", [], |r| r.get(0))
        .unwrap_or(0)
}

fn create_runs(api: &str, deployment: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| prefect_api::create_deployment_run(api, deployment))
        .collect()
}

fn assert_all_completed(api: &str, ids: &[String]) {
    let runs = prefect_api::wait_terminal(api, ids, RUNS_DONE);
    for run in &runs {
        assert_eq!(
            prefect_api::state_type(run),
            "COMPLETED",
            "run {}: {}",
            run["id"],
            run["state"]
        );
    }
}

#[test]
fn two_runners_execute_each_of_ten_runs_exactly_once() {
    let server = PrefectServer::start(&[]);
    let api = server.url();
    let dirs = [runner_dir(40, ""), runner_dir(40, "")];
    let mut runners: Vec<Serve> = dirs
        .iter()
        .map(|d| Serve::start(d.path(), &[("PREFECT_API_URL".to_string(), api.clone())]))
        .collect();
    let deployment = prefect_api::wait_for_deployment(&api, Duration::from_secs(60));
    let ids = create_runs(&api, &deployment, 10);
    assert_all_completed(&api, &ids);

    for id in &ids {
        let tasks = prefect_api::task_runs(&api, id);
        assert_eq!(tasks.len(), 3, "run {id} has {} task runs", tasks.len());
    }
    // Each run appends 40 rows to the database of the runner that executed it.
    let rows: i64 = dirs.iter().map(|d| count_rows(d.path())).sum();
    assert_eq!(rows, 400, "rows across both runners");
    for runner in &mut runners {
        runner.stop_cleanly(&[]);
    }
}

#[test]
fn serve_keeps_completing_runs_while_the_gateway_key_rotates() {
    let server = PrefectServer::start(&[]);
    let old_key = "pnu_FAKE_ROTATE_OLD_0001";
    let new_key = "pnu_FAKE_ROTATE_NEW_0002";
    let mut gateway = Gateway::start(&server.url(), &[(old_key, Role::Rw)]);
    let dir = runner_dir(20, "[[sources]]\ntype = \"file\"\ndir = \"secrets\"");
    let secrets = dir.path().join("secrets");
    fs::create_dir(&secrets).unwrap();
    write_atomically(&secrets.join("PREFECT_API_KEY"), old_key);
    let gateway_url = gateway.url();
    let mut runner = Serve::start(
        dir.path(),
        &[("PREFECT_API_URL".to_string(), gateway_url.clone())],
    );

    let api = server.url();
    let deployment = prefect_api::wait_for_deployment(&api, Duration::from_secs(60));
    let before = create_runs(&api, &deployment, 2);
    assert_all_completed(&api, &before);

    // Rotate: the gateway stops accepting the old key at once; the file gets the new one.
    gateway.set_keys(&[(new_key, Role::Rw)]);
    write_atomically(&secrets.join("PREFECT_API_KEY"), new_key);
    let after = create_runs(&api, &deployment, 2);
    assert_all_completed(&api, &after);

    runner.stop_cleanly(&[old_key, new_key]);
    assert_no_secret(&runner.output(), &[old_key, new_key]);
}

#[test]
fn sigterm_during_a_run_lets_it_finish_and_exits_zero() {
    let server = PrefectServer::start(&[]);
    let api = server.url();
    let dir = runner_dir(10_000, "");
    let mut runner = Serve::start(dir.path(), &[("PREFECT_API_URL".to_string(), api.clone())]);
    let deployment = prefect_api::wait_for_deployment(&api, Duration::from_secs(60));
    let ids = create_runs(&api, &deployment, 1);
    wait_for_state(&api, &ids[0], "RUNNING");

    runner.stop_cleanly(&[]);
    let run = prefect_api::flow_run(&api, &ids[0]);
    assert_eq!(
        prefect_api::state_type(&run),
        "COMPLETED",
        "{}",
        runner.output()
    );
}

#[test]
fn sigterm_past_the_grace_period_cancels_the_run_and_exits_zero() {
    let server = PrefectServer::start(&[]);
    let api = server.url();
    // A zero grace period: the run in flight is cancelled at once.
    let dir = runner_dir(10_000, "");
    let config = fs::read_to_string(dir.path().join("credchain.toml")).unwrap();
    fs::write(
        dir.path().join("credchain.toml"),
        config.replace(
            "poll_interval = \"1s\"",
            "poll_interval = \"1s\"\ngrace_period = \"0s\"",
        ),
    )
    .unwrap();
    let mut runner = Serve::start(dir.path(), &[("PREFECT_API_URL".to_string(), api.clone())]);
    let deployment = prefect_api::wait_for_deployment(&api, Duration::from_secs(60));
    let ids = create_runs(&api, &deployment, 1);
    wait_for_state(&api, &ids[0], "RUNNING");

    runner.stop_cleanly(&[]);
    let state = prefect_api::state_type(&prefect_api::flow_run(&api, &ids[0]));
    assert!(
        state == "CANCELLED" || state == "COMPLETED",
        "run left in {state}:\n{}",
        runner.output()
    );
}

fn wait_for_state(api: &str, id: &str, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = prefect_api::state_type(&prefect_api::flow_run(api, id));
        if state == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} never reached {wanted} (is {state})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write_atomically(path: &Path, value: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, value).unwrap();
    fs::rename(&tmp, path).unwrap();
}

#[test]
fn serve_refuses_both_cron_and_interval_before_any_request() {
    let dir = runner_dir(10, "");
    let config = fs::read_to_string(dir.path().join("credchain.toml")).unwrap();
    let both = "poll_interval = \"1s\"\ncron = \"0 * * * *\"\ninterval = \"1h\"";
    fs::write(
        dir.path().join("credchain.toml"),
        config.replace("poll_interval = \"1s\"", both),
    )
    .unwrap();
    // Port 9 (discard) is closed here: any request would fail with exit 6, not 2.
    let out = support::Cli::new()
        .cwd(dir.path())
        .args(["serve"])
        .env("PREFECT_API_URL", "http://127.0.0.1:9/api")
        .run();
    assert_eq!(out.code, Some(2), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("cron"), "{}", out.stderr);
}

/// A stop while serve waits out a rejected key (the backoff of `rejection_backoff_total`, set
/// far longer than the test's wait) ends it at once, both while registering and while polling.
#[test]
fn sigterm_while_a_rejected_key_is_waited_out_stops_serve_at_once() {
    let server = PrefectServer::start(&[]);
    let good = "pnu_FAKE_STOPWAIT_GOOD_01";
    let wrong = "pnu_FAKE_STOPWAIT_WRONG_02";
    let gateway = Gateway::start(&server.url(), &[(good, Role::Rw)]);
    let sources = "[[sources]]\ntype = \"file\"\ndir = \"secrets\"\n\n\
                   [prefect]\nrejection_backoff_total = \"600s\"";
    let dir = runner_dir(10, sources);
    let secrets = dir.path().join("secrets");
    fs::create_dir(&secrets).unwrap();
    let vars = [("PREFECT_API_URL".to_string(), gateway.url())];

    // While registering: the key is wrong from the start.
    write_atomically(&secrets.join("PREFECT_API_KEY"), wrong);
    let mut runner = Serve::start(dir.path(), &vars);
    std::thread::sleep(Duration::from_secs(3));
    runner.stop_cleanly(&[good, wrong]);

    // While polling: the key turns wrong after the deployment is registered.
    write_atomically(&secrets.join("PREFECT_API_KEY"), good);
    let mut runner = Serve::start(dir.path(), &vars);
    prefect_api::wait_for_deployment(&server.url(), Duration::from_secs(60));
    write_atomically(&secrets.join("PREFECT_API_KEY"), wrong);
    std::thread::sleep(Duration::from_secs(4));
    runner.stop_cleanly(&[good, wrong]);
    assert_no_secret(&runner.output(), &[good, wrong]);
}
