//! `credchain run` as a user runs it, locally (no Prefect): configuration errors found before
//! anything is written, exit codes by cause, and source URLs printed without their secrets.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use support::{assert_no_secret, Cli, CliOutput};

/// Writes `pipeline.toml` in `dir` with `body` inside `[pipeline]`.
fn write_pipeline(dir: &Path, body: &str) {
    fs::write(dir.join("pipeline.toml"), format!("[pipeline]\n{body}\n")).expect("write pipeline");
}

fn run_in(dir: &Path, vars: &[(&str, &str)]) -> CliOutput {
    let mut cli = Cli::new()
        .cwd(dir)
        .args(["run", "--pipeline", "pipeline.toml"]);
    for (name, value) in vars {
        cli = cli.env(name, value);
    }
    cli.run()
}

/// Answers `requests` HTTP requests with `status` and `body`, on a loopback port; returns
/// `http://127.0.0.1:PORT`.
fn serve(status: &'static str, body: &'static [u8], requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for _ in 0..requests {
            let Ok((mut socket, _)) = listener.accept() else {
                return;
            };
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request);
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes());
            let _ = socket.write_all(body);
        }
    });
    format!("http://{addr}")
}

const INPUT: &str = "a,b\n1,x\n2,y,extra\n";
const DATABASE: &[u8] = b"not to be touched";

/// Runs a pipeline whose `rejects` collides with another file (with `vars` set), in a
/// directory holding `src.csv` and `z.db`: it exits 2 naming `pipeline.rejects` and `collision`,
/// and both files are as they were.
fn assert_rejects_refused(body: &str, vars: &[(&str, &str)], collision: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("src.csv"), INPUT).unwrap();
    fs::write(dir.path().join("z.db"), DATABASE).unwrap();
    write_pipeline(dir.path(), body);
    let out = run_in(dir.path(), vars);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("pipeline.rejects"), "{}", out.stderr);
    assert!(out.stderr.contains(collision), "{}", out.stderr);
    assert_eq!(fs::read(dir.path().join("z.db")).unwrap(), DATABASE);
    let input = fs::read_to_string(dir.path().join("src.csv")).unwrap();
    assert_eq!(input, INPUT);
}

#[test]
fn rejects_on_the_database_file_is_refused_before_anything_is_written() {
    assert_rejects_refused(
        "source = \"src.csv\"\ntarget = \"sqlite://z.db\"\ntable = \"t\"\nrejects = \"z.db\"",
        &[],
        "SQLite target",
    );
}

#[test]
fn rejects_on_the_source_file_is_refused_before_anything_is_written() {
    assert_rejects_refused(
        "source = \"src.csv\"\ntarget = \"sqlite://z.db\"\ntable = \"t\"\n\
         rejects = \"./sub/../src.csv\"",
        &[],
        "source file",
    );
}

#[test]
fn rejects_on_a_database_named_by_target_key_is_refused() {
    assert_rejects_refused(
        "source = \"src.csv\"\ntarget_key = \"ETL_DB\"\ntable = \"t\"\nrejects = \"z.db\"",
        &[("ETL_DB", "sqlite://z.db")],
        "SQLite target",
    );
}

#[test]
fn a_password_key_found_in_no_source_exits_3_with_a_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("src.csv"), "a\n1\n").unwrap();
    write_pipeline(
        dir.path(),
        "source = \"src.csv\"\ntarget = \"postgres://etl@127.0.0.1:1/etl\"\ntable = \"t\"\n\
         password_key = \"DBPW\"",
    );
    let out = run_in(dir.path(), &[]);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(out.stderr.contains("DBPW"), "{}", out.stderr);
    assert!(
        out.stderr.contains("environment") && out.stderr.contains(".env"),
        "the hint says where to set it: {}",
        out.stderr
    );
}

#[test]
fn a_source_url_answering_404_exits_2_without_its_query_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = serve("404 Not Found", b"gone", 1);
    let url = base.replace("http://", "http://user:FAKEpass404@") + "/missing.csv?tok=FAKEtok404";
    write_pipeline(
        dir.path(),
        &format!("source = \"{url}\"\ntarget = \"sqlite://z.db\"\ntable = \"t\""),
    );
    let out = run_in(dir.path(), &[]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("404"), "{}", out.stderr);
    assert!(out.stderr.contains("missing.csv?tok=***"), "{}", out.stderr);
    assert_no_secret(&out.all_output(), &["FAKEtok404", "FAKEpass404"]);
}

#[test]
fn a_presigned_source_url_prints_its_query_keys_but_not_their_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = serve("200 OK", b"a,b\n1,x\n2,y\n", 1);
    let url = base.replace("http://", "http://user:FAKEpass200@")
        + "/ok.csv?X-Amz-Signature=FAKEsig200&X-Amz-Credential=FAKEcred200";
    write_pipeline(
        dir.path(),
        &format!("source = \"{url}\"\ntarget = \"sqlite://z.db\"\ntable = \"t\""),
    );
    let out = Cli::new()
        .cwd(dir.path())
        .args(["run", "--pipeline", "pipeline.toml", "--json"])
        .env("RUST_LOG", "debug")
        .run();
    assert_eq!(out.code, Some(0), "{out:?}");
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert!(
        doc["flow_run_id"].is_null() && doc["flow_run_state"].is_null(),
        "{doc}"
    );
    assert!(
        out.stderr
            .contains("?X-Amz-Signature=***&X-Amz-Credential=***"),
        "{}",
        out.stderr
    );
    assert_no_secret(
        &out.all_output(),
        &["FAKEsig200", "FAKEcred200", "FAKEpass200"],
    );
}

#[test]
fn an_empty_source_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("empty.csv"), "").unwrap();
    write_pipeline(
        dir.path(),
        "source = \"empty.csv\"\ntarget = \"sqlite://z.db\"\ntable = \"t\"",
    );
    let out = run_in(dir.path(), &[]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("has no columns"), "{}", out.stderr);
}

/// The test database's URL with `path` as its database, and its password.
fn postgres_url_with_database(database: Option<&str>) -> (String, String) {
    let mut url = url::Url::parse(&support::postgres_url()).expect("postgres URL");
    let password = url.password().expect("a password").to_string();
    if let Some(database) = database {
        url.set_path(database);
    }
    (url.to_string(), password)
}

#[test]
fn postgres_errors_exit_by_cause_with_a_hint_naming_what_to_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("src.csv"), "a\n1\n").unwrap();
    let (nodb, password) = postgres_url_with_database(Some("/nodb_credchain"));
    let (good, _) = postgres_url_with_database(None);
    let mut nopw = url::Url::parse(&good).unwrap();
    nopw.set_password(None).unwrap();
    let schema = format!("noschema_{}", uuid::Uuid::new_v4().simple());
    let cases = [
        (nodb.clone(), "t".to_string(), 2, "CREATE DATABASE"),
        (good.clone(), format!("{schema}.t"), 2, "CREATE SCHEMA"),
        (nopw.to_string(), "t".to_string(), 4, "password"),
    ];
    for (url, table, code, hint) in cases {
        write_pipeline(
            dir.path(),
            &format!("source = \"src.csv\"\ntarget_key = \"DATABASE_URL\"\ntable = \"{table}\""),
        );
        let out = run_in(dir.path(), &[("DATABASE_URL", &url)]);
        assert_eq!(out.code, Some(code), "{out:?}");
        let hint_line = out
            .stderr
            .lines()
            .find(|l| l.starts_with("hint:"))
            .unwrap_or_default();
        assert!(hint_line.contains(hint), "{}", out.stderr);
        assert_no_secret(&out.all_output(), &[&password]);
    }
}
