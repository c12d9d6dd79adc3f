//! Reads and writes Prefect's REST API directly, for integration tests that check what
//! credchain reported (flow runs, task runs, logs, artifacts) or that create runs as a user
//! would from the UI. Blocking, so tests stay plain `#[test]` functions.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How often a call is retried when a SQLite-backed server answers 503 under write contention.
const BUSY_RETRIES: u32 = 10;

/// A blocking JSON call: `method` `base + path` with an optional body; panics on transport
/// errors and returns (status, body). A 503 (the server's database was busy) is retried, as any
/// Prefect client must.
pub fn call(method: &str, base: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut attempt = 0;
        loop {
            let mut request = client.request(method.clone(), format!("{base}{path}"));
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request.send().await.expect("request to Prefect");
            let status = response.status().as_u16();
            if status == 503 && attempt < BUSY_RETRIES {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                continue;
            }
            let text = response.text().await.unwrap_or_default();
            return (status, serde_json::from_str(&text).unwrap_or(Value::Null));
        }
    })
}

/// POST that must succeed.
pub fn post(base: &str, path: &str, body: Value) -> Value {
    let (status, value) = call("POST", base, path, Some(body));
    assert!(
        (200..300).contains(&status),
        "POST {path} answered {status}: {value}"
    );
    value
}

/// GET that must succeed.
pub fn get(base: &str, path: &str) -> Value {
    let (status, value) = call("GET", base, path, None);
    assert!(
        (200..300).contains(&status),
        "GET {path} answered {status}: {value}"
    );
    value
}

/// A flow run by id.
pub fn flow_run(base: &str, id: &str) -> Value {
    get(base, &format!("/flow_runs/{id}"))
}

/// The state type of a flow run.
pub fn state_type(run: &Value) -> String {
    run["state_type"].as_str().unwrap_or("").to_string()
}

/// The task runs of a flow run.
pub fn task_runs(base: &str, flow_run_id: &str) -> Vec<Value> {
    let body = json!({ "flow_runs": { "id": { "any_": [flow_run_id] } } });
    as_list(post(base, "/task_runs/filter", body))
}

/// The log lines of a flow run, oldest first.
pub fn logs(base: &str, flow_run_id: &str) -> Vec<Value> {
    let body = json!({ "logs": { "flow_run_id": { "any_": [flow_run_id] } }, "sort": "TIMESTAMP_ASC", "limit": 200 });
    as_list(post(base, "/logs/filter", body))
}

/// The artifacts of a flow run.
pub fn artifacts(base: &str, flow_run_id: &str) -> Vec<Value> {
    let body = json!({ "artifacts": { "flow_run_id": { "any_": [flow_run_id] } } });
    as_list(post(base, "/artifacts/filter", body))
}

/// The runs of a deployment.
pub fn deployment_runs(base: &str, deployment_id: &str) -> Vec<Value> {
    let body = json!({ "deployments": { "id": { "any_": [deployment_id] } }, "limit": 200 });
    as_list(post(base, "/flow_runs/filter", body))
}

/// The id of deployment `main-etl/etl-job`, waiting up to `timeout` for a runner to create it.
pub fn wait_for_deployment(base: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, value) = call("GET", base, "/deployments/name/main-etl/etl-job", None);
        if status == 200 {
            return value["id"].as_str().expect("deployment id").to_string();
        }
        assert!(
            Instant::now() < deadline,
            "deployment main-etl/etl-job did not appear"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Creates a run of the deployment, as the UI's "Run" button does.
pub fn create_deployment_run(base: &str, deployment_id: &str) -> String {
    let run = post(
        base,
        &format!("/deployments/{deployment_id}/create_flow_run"),
        json!({}),
    );
    run["id"].as_str().expect("flow run id").to_string()
}

/// Waits until every run in `ids` is in a terminal state, or panics after `timeout`.
pub fn wait_terminal(base: &str, ids: &[String], timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let runs: Vec<Value> = ids.iter().map(|id| flow_run(base, id)).collect();
        let done = runs.iter().all(|r| {
            matches!(
                state_type(r).as_str(),
                "COMPLETED" | "FAILED" | "CANCELLED" | "CRASHED"
            )
        });
        if done {
            return runs;
        }
        assert!(
            Instant::now() < deadline,
            "runs not finished in time: {:?}",
            runs.iter().map(state_type).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn as_list(value: Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}
