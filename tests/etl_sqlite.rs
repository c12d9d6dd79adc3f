//! The ETL pipeline against real SQLite files in temp directories.

mod etl_support;

use std::path::Path;

use credchain::etl::{sample, ColumnType, EtlError, EtlErrorKind, LoadError, Step};
use etl_support::*;
use rusqlite::Connection;

fn sqlite_body(dir: &Path, source: &Path, table: &str, extra: &str) -> String {
    let db = dir.join("etl.db");
    let rejects = dir.join(format!("{table}.rejects.csv"));
    format!(
        "source = {}\ntarget = {}\ntable = \"{table}\"\nrejects = {}\n{extra}",
        toml_str(source.to_string_lossy()),
        toml_str(format!("sqlite://{}", db.display())),
        toml_str(rejects.to_string_lossy()),
    )
}

fn count(db: &Path, table: &str) -> i64 {
    let conn = Connection::open(db).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
        r.get(0)
    })
    .unwrap()
}

fn table_exists(db: &Path, table: &str) -> bool {
    if !db.exists() {
        return false;
    }
    let conn = Connection::open(db).unwrap();
    let sql = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1";
    conn.query_row(sql, [table], |r| r.get::<_, i64>(0))
        .unwrap()
        == 1
}

/// Every row, as text, in rowid order: for "exactly as before" checks.
fn dump(db: &Path, table: &str) -> Vec<String> {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(&format!("SELECT * FROM \"{table}\" ORDER BY rowid"))
        .unwrap();
    let width = stmt.column_count();
    let rows = stmt.query_map([], |row| {
        let values: Vec<String> = (0..width)
            .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
            .collect();
        Ok(values.join("|"))
    });
    rows.unwrap().map(Result::unwrap).collect()
}

#[tokio::test]
async fn birdstrikes_load_with_sensible_types() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&sqlite_body(dir.path(), &birdstrikes(), "birdstrikes", ""));
    let obs = Recorder::default();
    let (summary, columns) = run_steps(&pipeline(config), &obs).await.unwrap();

    assert_eq!(
        (
            summary.rows_read,
            summary.rows_loaded,
            summary.rows_rejected
        ),
        (10_000, 10_000, 0)
    );
    assert!(summary.table_created);
    let db = dir.path().join("etl.db");
    assert_eq!(count(&db, "birdstrikes"), 10_000);

    assert_eq!(column(&columns, "flight_date").ty, ColumnType::Date);
    assert_eq!(column(&columns, "cost_total").ty, ColumnType::Integer);
    assert_eq!(column(&columns, "cost_other").ty, ColumnType::Integer);
    assert_eq!(
        column(&columns, "speed_ias_in_knots").ty,
        ColumnType::Integer
    );
    assert_eq!(column(&columns, "airport_name").ty, ColumnType::Text);

    let conn = Connection::open(&db).unwrap();
    let declared: Vec<(String, String)> = conn
        .prepare("SELECT name, type FROM pragma_table_info('birdstrikes')")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        declared.contains(&("cost_total".into(), "INTEGER".into())),
        "{declared:?}"
    );
    assert!(
        declared.contains(&("flight_date".into(), "TEXT".into())),
        "{declared:?}"
    );
    let nulls: i64 = conn
        .query_row(
            "SELECT count(*) FROM birdstrikes WHERE speed_ias_in_knots IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(nulls, 2_836);
    let kinds: String = conn
        .query_row(
            "SELECT typeof(cost_total) || ',' || typeof(flight_date) || ',' || flight_date \
             FROM birdstrikes ORDER BY rowid LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kinds, "integer,text,1990-01-08");
}

#[tokio::test]
async fn every_step_reports_logs_progress_and_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&sqlite_body(dir.path(), &birdstrikes(), "birds", ""));
    let obs = Recorder::default();
    run_steps(&pipeline(config), &obs).await.unwrap();

    assert_eq!(
        *obs.finished.lock().unwrap(),
        [Step::Extract, Step::Transform, Step::Load]
    );
    let progress = obs.progress.lock().unwrap();
    for step in [Step::Extract, Step::Transform, Step::Load] {
        let last = progress
            .iter()
            .rev()
            .find(|p| p.0 == step)
            .expect("progress of every step");
        assert_eq!(last.1, 10_000, "{step} ends at the row count");
    }
    assert!(obs
        .all_text()
        .contains("loaded 10000 of 10000 rows into birds"));
}

#[tokio::test]
async fn rerun_with_key_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = write_file(dir.path(), "ids.csv", &birdstrikes_with_ids(500));
    let config = config(&sqlite_body(dir.path(), &source, "keyed", "key = [\"id\"]"));
    let pipeline = pipeline(config);
    let db = dir.path().join("etl.db");

    let first = pipeline.run_all(&Recorder::default()).await.unwrap();
    assert_eq!(first.rows_changed, 500);
    let before = dump(&db, "keyed");
    let second = pipeline.run_all(&Recorder::default()).await.unwrap();
    assert_eq!((second.rows_loaded, second.rows_changed), (500, 0));
    assert_eq!(dump(&db, "keyed"), before);

    // One changed value updates exactly one row.
    let mut lines = birdstrikes_with_ids(500);
    lines[7] = lines[7].replacen(",0,0,0,", ",1,0,1,", 1);
    write_file(dir.path(), "ids.csv", &lines);
    let third = pipeline.run_all(&Recorder::default()).await.unwrap();
    assert_eq!((third.rows_changed, count(&db, "keyed")), (1, 500));
}

#[tokio::test]
async fn a_key_twice_in_the_input_keeps_the_later_line() {
    let dir = tempfile::tempdir().unwrap();
    let lines = ["id,v", "1,first", "2,x", "1,second"].map(String::from);
    let source = write_file(dir.path(), "dup.csv", &lines);
    let config = config(&sqlite_body(dir.path(), &source, "dup", "key = \"id\""));
    pipeline(config)
        .run_all(&Recorder::default())
        .await
        .unwrap();
    let conn = Connection::open(dir.path().join("etl.db")).unwrap();
    let v: String = conn
        .query_row("SELECT v FROM dup WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, "second");
}

#[tokio::test]
async fn a_key_twice_in_the_input_counts_only_rows_that_end_changed() {
    let dir = tempfile::tempdir().unwrap();
    let lines = ["id,name", "1,a", "2,b", "2,b2"].map(String::from);
    let source = write_file(dir.path(), "dup.csv", &lines);
    let config = config(&sqlite_body(dir.path(), &source, "dup", "key = [\"id\"]"));
    let pipeline = pipeline(config);
    let first = pipeline.run_all(&Recorder::default()).await.unwrap();
    assert_eq!(first.rows_changed, 2, "two rows are new");
    for _ in 0..2 {
        let again = pipeline.run_all(&Recorder::default()).await.unwrap();
        assert_eq!(
            again.rows_changed, 0,
            "a re-run of the same input changes nothing"
        );
    }
    // A new key and a changed row count once each, however often their keys appear.
    let lines = ["id,name", "1,a", "1,z", "2,b", "3,c", "3,c", "2,b3"].map(String::from);
    write_file(dir.path(), "dup.csv", &lines);
    let third = pipeline.run_all(&Recorder::default()).await.unwrap();
    assert_eq!(third.rows_changed, 3);
    let conn = Connection::open(dir.path().join("etl.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT id || '=' || name FROM dup ORDER BY id")
        .unwrap();
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows, ["1=z", "2=b3", "3=c"]);
}

/// 40 good rows; line 5 has a missing field, line 9 text in the integer column.
fn file_with_bad_rows(dir: &Path) -> std::path::PathBuf {
    let mut lines = vec!["id,name,amount".to_string()];
    lines.extend((1..=40).map(|i| format!("{i},name {i},{}", i * 10)));
    lines[4] = "4,only two".into();
    lines[8] = "8,eight,lots".into();
    write_file(dir, "bad.csv", &lines)
}

#[tokio::test]
async fn bad_rows_go_to_the_rejects_file_with_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let source = file_with_bad_rows(dir.path());
    let config = config(&sqlite_body(
        dir.path(),
        &source,
        "bad",
        "max_rejected = 0.1",
    ));
    let obs = Recorder::default();
    let (summary, columns) = run_steps(&pipeline(config), &obs).await.unwrap();

    assert_eq!(
        (
            summary.rows_read,
            summary.rows_loaded,
            summary.rows_rejected
        ),
        (40, 38, 2)
    );
    assert_eq!(column(&columns, "amount").ty, ColumnType::Integer);
    assert_eq!(count(&dir.path().join("etl.db"), "bad"), 38);
    let rejects = std::fs::read_to_string(dir.path().join("bad.rejects.csv")).unwrap();
    assert_eq!(
        rejects,
        "line,reason,record\n\
         5,\"expected 3 fields, found 2\",\"4,only two\"\n\
         9,column amount (integer): `lots` is not a valid integer,\"8,eight,lots\"\n"
    );
    assert!(obs.all_text().contains("2 of 40 rows rejected"));
}

#[tokio::test]
async fn line_numbers_count_quoted_newlines_and_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    let lines = ["a,b", "1,\"two\nlines\"", "", "x,y", "3,z"].map(String::from);
    let source = write_file(dir.path(), "lines.csv", &lines);
    let config = config(&sqlite_body(
        dir.path(),
        &source,
        "lines",
        "max_rejected = 0.5",
    ));
    pipeline(config)
        .run_all(&Recorder::default())
        .await
        .unwrap();
    let rejects = std::fs::read_to_string(dir.path().join("lines.rejects.csv")).unwrap();
    assert!(rejects.contains("\n5,column a (integer): `x`"), "{rejects}");
}

#[tokio::test]
async fn too_many_rejects_fail_and_leave_the_table_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let good: Vec<String> = ["id,name,amount", "1,a,10", "2,b,20"]
        .map(String::from)
        .to_vec();
    let good_source = write_file(dir.path(), "good.csv", &good);
    pipeline(config(&sqlite_body(dir.path(), &good_source, "bad", "")))
        .run_all(&Recorder::default())
        .await
        .unwrap();
    let before = dump(&db, "bad");

    let source = file_with_bad_rows(dir.path());
    let body = sqlite_body(dir.path(), &source, "bad", "max_rejected = 0.03");
    let err = pipeline(config(&body))
        .run_all(&Recorder::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("2 of 40 rows rejected, more than max_rejected = 0.03"),
        "{text}"
    );
    assert_eq!(err.kind(), EtlErrorKind::Failed);
    assert_eq!(dump(&db, "bad"), before, "the table is untouched");
    let rejects = std::fs::read_to_string(dir.path().join("bad.rejects.csv")).unwrap();
    assert_eq!(
        rejects.lines().count(),
        3,
        "the rejects file is still written"
    );

    // A table that did not exist is not created.
    let body = sqlite_body(dir.path(), &source, "fresh", "max_rejected = 0.03");
    assert!(pipeline(config(&body))
        .run_all(&Recorder::default())
        .await
        .is_err());
    assert!(!table_exists(&db, "fresh"));
}

#[tokio::test]
async fn a_load_that_fails_midway_leaves_the_table_exactly_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE strict (id INTEGER UNIQUE, name TEXT NOT NULL, amount INTEGER);
         INSERT INTO strict VALUES (1000, 'kept', 1), (1001, 'also kept', 2);",
    )
    .unwrap();
    drop(conn);
    let before = dump(&db, "strict");

    // 200 good rows, then a NOT NULL violation on the last line.
    let mut lines = vec!["id,name,amount".to_string()];
    lines.extend((1..=200).map(|i| format!("{i},n{i},{i}")));
    lines.push("201,,5".into());
    let source = write_file(dir.path(), "late.csv", &lines);
    let err = pipeline(config(&sqlite_body(dir.path(), &source, "strict", "")))
        .run_all(&Recorder::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EtlError::Load(LoadError::InsertRow { line: 202, .. })),
        "{err:?}"
    );
    assert_eq!(dump(&db, "strict"), before);

    // A duplicate of a UNIQUE id inside the input fails the same way.
    let mut lines = vec!["id,name,amount".to_string()];
    lines.extend((1..=50).map(|i| format!("{i},n{i},{i}")));
    lines.push("7,again,7".into());
    let source = write_file(dir.path(), "dup.csv", &lines);
    let err = pipeline(config(&sqlite_body(dir.path(), &source, "strict", "")))
        .run_all(&Recorder::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("line 52"), "{err}");
    assert_eq!(dump(&db, "strict"), before);

    // A failure inside a full multi-row batch still names its line.
    let mut lines = vec!["id,name,amount".to_string()];
    lines.extend((1..=300).map(|i| format!("{i},n{i},{i}")));
    lines[100] = "100,,100".into();
    let source = write_file(dir.path(), "mid.csv", &lines);
    let err = pipeline(config(&sqlite_body(dir.path(), &source, "strict", "")))
        .run_all(&Recorder::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EtlError::Load(LoadError::InsertRow { line: 101, .. })),
        "{err:?}"
    );
    assert_eq!(dump(&db, "strict"), before);
}

#[tokio::test]
async fn an_existing_table_that_does_not_match_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE other (id INTEGER, label INTEGER)")
        .unwrap();
    let lines = ["id,name", "1,a"].map(String::from);
    let source = write_file(dir.path(), "o.csv", &lines);
    let err = pipeline(config(&sqlite_body(dir.path(), &source, "other", "")))
        .run_all(&Recorder::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "table other does not match the source: column name is missing; load into a new \
         table, change the table, or set `types`"
    );
}

#[tokio::test]
async fn boolean_date_and_timestamp_column_names_are_taken_at_their_word() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE named (flag BOOLEAN, day DATE, at DATETIME)")
        .unwrap();
    let load = |lines: &[&str]| {
        let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        let source = write_file(dir.path(), "named.csv", &lines);
        let body = sqlite_body(dir.path(), &source, "named", "");
        async move { pipeline(config(&body)).run_all(&Recorder::default()).await }
    };
    // What the names say fits: booleans, dates, and dates into a DATETIME column.
    let fine = load(&["flag,day,at", "true,2020-01-01,2020-01-02"]).await;
    assert!(fine.is_ok(), "{fine:?}");
    // Integers into BOOLEAN and timestamps into DATE do not, although SQLite would store them.
    let err = load(&[
        "flag,day,at",
        "99999,2020-01-01 10:00:00,2020-01-02 10:00:00",
    ])
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("column flag is BOOLEAN in the table but the source has integer values")
            && text.contains("column day is DATE in the table but the source has timestamp"),
        "{text}"
    );
    assert!(!text.contains("column at"), "{text}");
    assert_eq!(count(&db, "named"), 1, "the table is as before");
}

#[tokio::test]
async fn upsert_without_a_unique_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE loose (id INTEGER, name TEXT)")
        .unwrap();
    let source = write_file(dir.path(), "l.csv", &["id,name", "1,a"].map(String::from));
    let body = sqlite_body(dir.path(), &source, "loose", "key = [\"id\"]");
    let err = pipeline(config(&body))
        .run_all(&Recorder::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("needs a primary key or unique constraint on (\"id\")"),
        "{err}"
    );
}

#[tokio::test]
async fn replace_swaps_the_rows_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let source = write_file(
        dir.path(),
        "r.csv",
        &["id,name", "1,a", "2,b"].map(String::from),
    );
    let body = sqlite_body(dir.path(), &source, "swap", "replace = true");
    let pipeline = pipeline(config(&body));
    pipeline.run_all(&Recorder::default()).await.unwrap();
    pipeline.run_all(&Recorder::default()).await.unwrap();
    assert_eq!(count(&dir.path().join("etl.db"), "swap"), 2);
}

#[tokio::test]
async fn overrides_win_and_reject_what_does_not_parse() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        "Zip Code,Flag,When",
        "02134,yes,2024-01-02",
        "10001,no,2024-01-03T10:00:00Z",
    ]
    .map(String::from);
    let source = write_file(dir.path(), "o.csv", &lines);
    let extra = "types = { \"Zip Code\" = \"text\", flag = \"boolean\" }";
    let (summary, columns) = run_steps(
        &pipeline(config(&sqlite_body(dir.path(), &source, "o", extra))),
        &Recorder::default(),
    )
    .await
    .unwrap();
    assert_eq!(summary.rows_loaded, 2);
    assert_eq!(column(&columns, "zip_code").ty, ColumnType::Text);
    assert!(column(&columns, "zip_code").declared);
    assert_eq!(column(&columns, "when").ty, ColumnType::Timestamp);
    let conn = Connection::open(dir.path().join("etl.db")).unwrap();
    let row: (String, i64, String) = conn
        .query_row(
            "SELECT zip_code, flag, \"when\" FROM o ORDER BY rowid LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(row, ("02134".into(), 1, "2024-01-02 00:00:00".into()));
}

#[tokio::test]
async fn json_lines_load_with_nulls_for_missing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        r#"{"id": 1, "name": "a", "score": 1.5}"#,
        r#"{"id": 2, "name": null, "tags": ["x"]}"#,
        r#"not json"#,
        r#"{"id": 3, "name": "c", "score": 2}"#,
    ]
    .map(String::from);
    let source = write_file(dir.path(), "j.jsonl", &lines);
    let body = sqlite_body(dir.path(), &source, "j", "max_rejected = 0.3");
    let (summary, columns) = run_steps(&pipeline(config(&body)), &Recorder::default())
        .await
        .unwrap();
    assert_eq!((summary.rows_loaded, summary.rows_rejected), (3, 1));
    assert_eq!(column(&columns, "score").ty, ColumnType::Real);
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "name", "score", "tags"]);
    let conn = Connection::open(dir.path().join("etl.db")).unwrap();
    let nulls: i64 = conn
        .query_row(
            "SELECT count(*) FROM j WHERE name IS NULL OR score IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(nulls, 1);
    let rejects = std::fs::read_to_string(dir.path().join("j.rejects.csv")).unwrap();
    assert!(rejects.contains("\n3,invalid JSON"), "{rejects}");
}

#[tokio::test]
async fn the_builtin_sample_loads_from_any_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sample::default_pipeline();
    let db = dir.path().join("sample.db");
    config.target = Some(credchain::etl::config::TargetUrl::new(format!(
        "sqlite://{}",
        db.display()
    )));
    config.rejects = Some(dir.path().join("birdstrikes.rejects.csv"));
    let pipeline = pipeline(config);
    let summary = pipeline.run_all(&Recorder::default()).await.unwrap();
    assert_eq!((summary.rows_loaded, summary.rows_rejected), (10_000, 0));
    // replace = true: a second run leaves the same 10,000 rows.
    pipeline.run_all(&Recorder::default()).await.unwrap();
    assert_eq!(count(&db, "birdstrikes"), 10_000);
}

#[tokio::test]
async fn a_missing_source_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.csv");
    // Binding the pipeline opens the source, so the error comes before any step runs.
    let config = config(&sqlite_body(dir.path(), &missing, "t", ""));
    let target = credchain::etl::ResolvedTarget::resolve(&config, |_| None).unwrap();
    let err = credchain::etl::Pipeline::new(config, target).unwrap_err();
    assert!(err.to_string().contains("nope.csv"), "{err}");
    assert_eq!(err.kind(), EtlErrorKind::Config);
}

#[tokio::test]
async fn a_pipe_or_a_directory_as_the_source_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Without a writer, opening the pipe would wait forever: the check must not open it.
    for source in [fifo, dir.path().to_path_buf()] {
        let config = config(&sqlite_body(dir.path(), &source, "t", "format = \"csv\""));
        let target = credchain::etl::ResolvedTarget::resolve(&config, |_| None).unwrap();
        let err = credchain::etl::Pipeline::new(config, target).unwrap_err();
        assert!(err.to_string().contains("is not a regular file"), "{err}");
        assert_eq!(err.kind(), EtlErrorKind::Config);
    }
    assert!(!dir.path().join("etl.db").exists());
}

mod http {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Serves one response per connection, `requests` times, on a loopback port.
    async fn serve(status: &'static str, body: Vec<u8>, requests: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for _ in 0..requests {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = vec![0u8; 4096];
                let _ = socket.read(&mut request).await;
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                socket.write_all(head.as_bytes()).await.unwrap();
                socket.write_all(&body).await.unwrap();
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn an_http_source_is_downloaded_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let body = std::fs::read(birdstrikes()).unwrap();
        let base = serve("200 OK", body, 1).await;
        let url = format!("{base}/data/birdstrikes.csv?token=1");
        let text = sqlite_body(dir.path(), Path::new(&url), "web", "");
        let summary = pipeline(config(&text))
            .run_all(&Recorder::default())
            .await
            .unwrap();
        assert_eq!(summary.rows_loaded, 10_000);
    }

    #[tokio::test]
    async fn an_http_error_status_is_reported_without_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let base = serve("404 Not Found", b"gone".to_vec(), 1).await;
        let url = base.replace("http://", "http://user:FAKEpw@") + "/x.csv";
        let text = sqlite_body(dir.path(), Path::new(&url), "web", "");
        let err = pipeline(config(&text))
            .extract(&Recorder::default())
            .await
            .unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("the server answered 404"), "{shown}");
        assert!(!shown.contains("FAKEpw"), "{shown}");
    }

    #[tokio::test]
    async fn an_https_url_to_a_plain_http_port_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let base = serve("200 OK", b"a\n1\n".to_vec(), 1).await;
        let url = base.replace("http://", "https://") + "/x.csv";
        let text = sqlite_body(dir.path(), Path::new(&url), "web", "");
        let err = pipeline(config(&text))
            .extract(&Recorder::default())
            .await
            .unwrap_err();
        let hint = err.hint().unwrap_or_default();
        assert!(
            hint.contains("use http:// in the source URL"),
            "{err}: {hint}"
        );
    }

    /// A presigned-style URL: its query values are credentials and appear nowhere.
    #[tokio::test]
    async fn a_query_token_is_in_no_log_line_summary_or_error() {
        let dir = tempfile::tempdir().unwrap();
        let body = std::fs::read(birdstrikes()).unwrap();
        let base = serve("200 OK", body, 1).await;
        let url = base.replace("http://", "http://user:FAKEpass1@")
            + "/ok.csv?X-Amz-Signature=FAKEsig1&X-Amz-Expires=FAKEexp1";
        let text = sqlite_body(dir.path(), Path::new(&url), "web", "");
        let loaded = config(&text);
        let obs = Recorder::default();
        let run = pipeline(loaded.clone());
        let summary = run.run_all(&obs).await.unwrap();
        let logs = obs.all_text();
        assert!(
            logs.contains("?X-Amz-Signature=***&X-Amz-Expires=***"),
            "{logs}"
        );
        let shown = format!(
            "{logs}\n{summary}\n{}\n{loaded:?}\n{run:?}",
            serde_json::to_string(&summary).unwrap()
        );
        for secret in ["FAKEsig1", "FAKEexp1", "FAKEpass1"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }

        let base = serve("404 Not Found", b"gone".to_vec(), 1).await;
        let url = format!("{base}/missing.csv?tok=FAKEtok2");
        let text = sqlite_body(dir.path(), Path::new(&url), "web", "");
        let obs = Recorder::default();
        let err = pipeline(config(&text)).extract(&obs).await.unwrap_err();
        let shown = format!("{err} {err:?} {:?} {}", err.hint(), obs.all_text());
        assert!(shown.contains("missing.csv?tok=*** "), "{shown}");
        assert!(!shown.contains("FAKEtok2"), "the token leaked: {shown}");
        // A 4xx answer means the URL is wrong: a configuration error.
        assert_eq!(err.kind(), EtlErrorKind::Config);
    }

    #[tokio::test]
    async fn a_server_error_is_not_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        let base = serve("503 Service Unavailable", b"busy".to_vec(), 1).await;
        let text = sqlite_body(dir.path(), Path::new(&format!("{base}/x.csv")), "web", "");
        let err = pipeline(config(&text))
            .extract(&Recorder::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), EtlErrorKind::Failed, "{err}");
    }
}

#[tokio::test]
async fn rejects_keep_the_records_bytes_and_name_an_unclosed_quote() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("bytes.csv");
    std::fs::write(
        &source,
        b"a,b,c\n1,x,1\n2,\xff\xfe,2\n\"3\",\"\xc3(\",3\n4,y,\xff\n5,z,5\n\"6,w\n",
    )
    .unwrap();
    let types = "max_rejected = 1.0\ntypes = { b = \"text\", c = \"integer\" }";
    let text = sqlite_body(dir.path(), &source, "bytes", types);
    let summary = pipeline(config(&text))
        .run_all(&Recorder::default())
        .await
        .unwrap();
    assert_eq!((summary.rows_loaded, summary.rows_rejected), (2, 4));
    let rejects = std::fs::read(&summary.rejects).unwrap();
    let mut reader = csv::ReaderBuilder::new().from_reader(&rejects[..]);
    let rows: Vec<csv::ByteRecord> = reader.byte_records().map(Result::unwrap).collect();
    let lines: Vec<&[u8]> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(lines, [&b"3"[..], b"4", b"5", b"7"]);
    assert_eq!(
        &rows[0][2], b"2,\xff\xfe,2",
        "the original bytes, not U+FFFD"
    );
    assert_eq!(&rows[1][2], b"3,\xc3(,3");
    assert_eq!(&rows[2][2], b"4,y,\xff");
    assert_eq!(
        &rows[2][1],
        b"column c (integer): `\\xFF` is not a valid integer"
    );
    let reason = String::from_utf8_lossy(&rows[3][1]).into_owned();
    assert!(reason.contains("not closed"), "{reason}");
    assert!(!rejects.windows(3).any(|w| w == "\u{fffd}".as_bytes()));
}

#[tokio::test]
async fn rejects_that_would_overwrite_the_source_or_the_database_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source = write_file(dir.path(), "src.csv", &["a".into(), "1".into()]);
    let db = dir.path().join("etl.db");
    std::fs::write(&db, b"precious").unwrap();
    for rejects in [&source, &db] {
        let text = format!(
            "source = {}\ntarget = {}\ntable = \"t\"\nrejects = {}",
            toml_str(source.to_string_lossy()),
            toml_str(format!("sqlite://{}", db.display())),
            toml_str(rejects.to_string_lossy()),
        );
        let err = credchain::etl::PipelineConfig::from_toml_str(
            &format!("[pipeline]\n{text}"),
            "test.toml",
            Path::new("."),
        )
        .unwrap_err();
        let err = EtlError::from(err);
        assert_eq!(err.kind(), EtlErrorKind::Config);
        assert!(err.to_string().contains("pipeline.rejects:"), "{err}");
    }
    assert_eq!(std::fs::read(&db).unwrap(), b"precious");
    assert_eq!(std::fs::read_to_string(&source).unwrap(), "a\n1\n");
}

/// `run_all` with types inferred from the first `preview` records, and the same with a full
/// extract first: the table, the rejects file and the summary must be the same.
async fn preview_against_full(
    lines: &[String],
    extra: &str,
    preview: u64,
) -> (Vec<String>, String) {
    preview_against_full_into(lines, extra, preview, "").await
}

/// [`preview_against_full`] into a database made by `setup` (SQL) before each run.
async fn preview_against_full_into(
    lines: &[String],
    extra: &str,
    preview: u64,
    setup: &str,
) -> (Vec<String>, String) {
    let mut outcomes = Vec::new();
    // One directory, so that error messages naming files compare equal.
    let dir = tempfile::tempdir().unwrap();
    let source = write_file(dir.path(), "data.csv", lines);
    let body = sqlite_body(dir.path(), &source, "t", extra);
    for records in [preview, u64::MAX] {
        for file in ["etl.db", "t.rejects.csv"] {
            let _ = std::fs::remove_file(dir.path().join(file));
        }
        if !setup.is_empty() {
            let conn = Connection::open(dir.path().join("etl.db")).unwrap();
            conn.execute_batch(setup).unwrap();
        }
        let obs = Recorder::default();
        let result = pipeline(config(&body))
            .with_preview_records(records)
            .run_all(&obs)
            .await;
        let db = dir.path().join("etl.db");
        let table = table_exists(&db, "t").then(|| dump(&db, "t"));
        let rejects = std::fs::read_to_string(dir.path().join("t.rejects.csv")).unwrap();
        let summary = result.map(|s| (s.rows_read, s.rows_loaded, s.rows_rejected, s.rows_changed));
        let summary = summary.map_err(|e| e.to_string());
        let types = table.is_some().then(|| {
            let conn = Connection::open(&db).unwrap();
            let mut stmt = conn
                .prepare("SELECT type FROM pragma_table_info('t')")
                .unwrap();
            let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
            rows.map(Result::unwrap).collect::<Vec<_>>().join(",")
        });
        outcomes.push((table, rejects, summary, types, obs.all_text()));
    }
    let (full, previewed) = (outcomes.pop().unwrap(), outcomes.pop().unwrap());
    assert_eq!(previewed.0, full.0, "the same table");
    assert_eq!(previewed.1, full.1, "the same rejects file");
    assert_eq!(previewed.2, full.2, "the same summary or error");
    assert_eq!(previewed.3, full.3, "the same column types");
    (previewed.0.unwrap_or_default(), previewed.4)
}

#[tokio::test]
async fn types_of_a_preview_that_hold_load_in_one_pass() {
    let lines = birdstrikes_with_ids(3000);
    let (table, logs) = preview_against_full(&lines, "", 100).await;
    assert_eq!(table.len(), 3000);
    assert!(!logs.contains("transforming again"), "{logs}");
    assert!(logs.contains("3000 records, 15 columns"), "{logs}");
}

#[tokio::test]
async fn types_of_a_preview_that_do_not_hold_are_replaced_by_those_of_the_whole_source() {
    // `code` looks like an integer for 300 records, then is text for 100: the whole source
    // makes it text. `amount` gets a decimal late: real, not integer.
    let mut lines = vec!["id,code,amount".to_string()];
    lines.extend((1..=300).map(|i| format!("{i},{i},{i}")));
    lines.extend((301..=400).map(|i| format!("{i},C{i},{i}.5")));
    let (table, logs) = preview_against_full(&lines, "", 50).await;
    assert_eq!(table.len(), 400);
    assert_eq!(
        table[0], "Integer(1)|Text([49])|Real(1.0)",
        "code is text, amount real"
    );
    assert!(
        logs.contains("the types of the first 50 records do not hold for all 400"),
        "{logs}"
    );
}

#[tokio::test]
async fn rejects_and_their_limit_are_the_same_with_a_preview() {
    // Late values that do not fit are rejected (within max_rejected), or fail the run.
    let mut lines = vec!["id,amount".to_string()];
    lines.extend((1..=500).map(|i| format!("{i},{}", i * 10)));
    lines[450] = "450,lots".into();
    lines[480] = "480,\"unclosed".into();
    let (table, _) = preview_against_full(&lines, "max_rejected = 0.01", 64).await;
    // The unclosed quote runs to the end of the file: lines 481-501 are one rejected record.
    assert_eq!(table.len(), 478);
    let (table, _) = preview_against_full(&lines, "max_rejected = 0.001", 64).await;
    assert!(table.is_empty(), "nothing loaded over the limit");
}

#[tokio::test]
async fn a_column_empty_in_the_preview_is_checked_against_an_existing_table() {
    // `n` has no value in the first 40 records, then text: the whole source does not fit the
    // table's INTEGER column, whichever way the types were found.
    let mut lines = vec!["id,n".to_string()];
    lines.extend((1..=40).map(|i| format!("{i},")));
    lines.extend((41..=60).map(|i| format!("{i},word{i}")));
    let setup = "CREATE TABLE t (id INTEGER, n INTEGER)";
    let (table, _) = preview_against_full_into(&lines, "", 10, setup).await;
    assert!(table.is_empty(), "nothing loaded");
}

#[tokio::test]
async fn rows_with_an_empty_key_take_no_part_in_type_inference() {
    // `n` is an integer in every row that loads; the rows without an `id` (rejected for it)
    // hold decimals there, which would widen `n` to real if they counted.
    let mut lines = vec!["id,n".to_string()];
    lines.extend((1..=4).map(|i| format!("{i},{i}")));
    lines.extend((1..=2).map(|i| format!(",{i}.5")));
    let extra = "key = [\"id\"]\nmax_rejected = 0.5";
    let (table, _) = preview_against_full(&lines, extra, 2).await;
    assert_eq!(table.len(), 4);
    assert_eq!(table[0], "Integer(1)|Integer(1)", "n stays integer");
}
