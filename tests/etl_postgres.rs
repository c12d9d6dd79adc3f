//! The ETL pipeline against the real PostgreSQL whose URL is in CREDCHAIN_TEST_POSTGRES_URL
//! (started by scripts/test). Each test uses tables of its own, so tests run in parallel.

mod etl_support;

use std::path::{Path, PathBuf};

use credchain::core::Secret;
use credchain::etl::{EtlError, EtlErrorKind, LoadError, Pipeline, ResolvedTarget, Summary};
use etl_support::*;
use tokio_postgres::{Client, NoTls};

const URL_VAR: &str = "CREDCHAIN_TEST_POSTGRES_URL";

fn pg_url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| {
        panic!("{URL_VAR} is not set: run the tests through scripts/test, which starts PostgreSQL")
    })
}

/// The password in the test URL, which must never appear in any output.
fn pg_password() -> String {
    let url = url::Url::parse(&pg_url()).expect("a valid postgres URL");
    url.password()
        .expect("the test URL carries a password")
        .to_string()
}

fn assert_no_password(text: &str) {
    assert!(
        !text.contains(&pg_password()),
        "the database password leaked: {text}"
    );
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

async fn client() -> Client {
    let (client, connection) = tokio_postgres::connect(&pg_url(), NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

struct Case {
    dir: tempfile::TempDir,
    table: String,
}

impl Case {
    fn new(prefix: &str) -> Case {
        Case {
            dir: tempfile::tempdir().unwrap(),
            table: unique(prefix),
        }
    }

    fn body(&self, source: &Path, extra: &str) -> String {
        format!(
            "source = {}\ntarget_key = \"DATABASE_URL\"\ntable = \"{}\"\nrejects = {}\n{extra}",
            toml_str(source.to_string_lossy()),
            self.table,
            toml_str(self.rejects().to_string_lossy()),
        )
    }

    fn rejects(&self) -> PathBuf {
        self.dir.path().join("rejects.csv")
    }

    /// The pipeline with DATABASE_URL resolved to the test URL.
    fn pipeline(&self, source: &Path, extra: &str) -> Pipeline {
        let config = config(&self.body(source, extra));
        let target = ResolvedTarget::resolve(&config, |key| {
            (key == "DATABASE_URL").then(|| Secret::new(pg_url()))
        })
        .unwrap();
        Pipeline::new(config, target).unwrap()
    }

    async fn run(&self, source: &Path, extra: &str) -> Result<Summary, EtlError> {
        let obs = Recorder::default();
        let result = self.pipeline(source, extra).run_all(&obs).await;
        assert_no_password(&obs.all_text());
        if let Err(e) = &result {
            assert_no_password(&format!("{e} {e:?} {:?}", std::error::Error::source(e)));
        }
        if let Ok(summary) = &result {
            assert_no_password(&format!("{summary} {summary:?}"));
        }
        result
    }

    async fn count(&self) -> i64 {
        let sql = format!("SELECT count(*) FROM \"{}\"", self.table);
        client().await.query_one(&sql, &[]).await.unwrap().get(0)
    }

    /// Every row as text, in a stable order.
    async fn dump(&self) -> Vec<String> {
        let sql = format!("SELECT t::text FROM \"{}\" t ORDER BY 1", self.table);
        let rows = client().await.query(&sql, &[]).await.unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    async fn exists(&self) -> bool {
        let sql = "SELECT to_regclass($1) IS NOT NULL";
        let quoted = format!("\"{}\"", self.table);
        client()
            .await
            .query_one(sql, &[&quoted])
            .await
            .unwrap()
            .get(0)
    }

    async fn column_types(&self) -> Vec<(String, String)> {
        let sql = "SELECT column_name::text, data_type::text FROM information_schema.columns \
                   WHERE table_name = $1 ORDER BY ordinal_position";
        let rows = client().await.query(sql, &[&self.table]).await.unwrap();
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    }
}

#[tokio::test]
async fn birdstrikes_load_with_postgres_types() {
    let case = Case::new("birds");
    let summary = case.run(&birdstrikes(), "").await.unwrap();
    assert_eq!((summary.rows_loaded, summary.rows_rejected), (10_000, 0));
    assert!(
        summary.target.starts_with("postgres://"),
        "{}",
        summary.target
    );
    assert_eq!(case.count().await, 10_000);

    let types = case.column_types().await;
    for (name, ty) in [
        ("flight_date", "date"),
        ("cost_total", "bigint"),
        ("speed_ias_in_knots", "bigint"),
        ("airport_name", "text"),
    ] {
        assert!(
            types.contains(&(name.into(), ty.into())),
            "{name} {ty}: {types:?}"
        );
    }
    let sql = format!(
        "SELECT count(*) FROM \"{}\" WHERE speed_ias_in_knots IS NULL",
        case.table
    );
    let nulls: i64 = client().await.query_one(&sql, &[]).await.unwrap().get(0);
    assert_eq!(nulls, 2_836);
}

#[tokio::test]
async fn every_type_round_trips() {
    let case = Case::new("types");
    let lines = [
        "id,ok,ratio,day,at,note",
        "1,true,1.5,2024-02-29,2024-05-01T10:30:00.25+02:00,plain",
        "2,no,-2,1999-12-31,2024-05-01 23:59,\"quoted, with comma\"",
        "3,,,,,",
    ]
    .map(String::from);
    let source = write_file(case.dir.path(), "t.csv", &lines);
    case.run(&source, "").await.unwrap();
    let types: Vec<String> = case
        .column_types()
        .await
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(
        types,
        [
            "bigint",
            "boolean",
            "double precision",
            "date",
            "timestamp without time zone",
            "text"
        ]
    );
    assert_eq!(
        case.dump().await,
        [
            "(1,t,1.5,2024-02-29,\"2024-05-01 08:30:00.25\",plain)",
            "(2,f,-2,1999-12-31,\"2024-05-01 23:59:00\",\"quoted, with comma\")",
            "(3,,,,,)",
        ]
    );
}

#[tokio::test]
async fn rerun_with_key_changes_nothing() {
    let case = Case::new("keyed");
    let source = write_file(case.dir.path(), "ids.csv", &birdstrikes_with_ids(500));
    let first = case.run(&source, "key = [\"id\"]").await.unwrap();
    assert_eq!(first.rows_changed, 500);
    let before = case.dump().await;
    let second = case.run(&source, "key = [\"id\"]").await.unwrap();
    assert_eq!((second.rows_loaded, second.rows_changed), (500, 0));
    assert_eq!(case.dump().await, before);

    let mut lines = birdstrikes_with_ids(500);
    lines[7] = lines[7].replacen(",0,0,0,", ",1,0,1,", 1);
    lines.push(lines[3].clone().replacen(",0,0,0,", ",5,0,5,", 1));
    write_file(case.dir.path(), "ids.csv", &lines);
    let third = case.run(&source, "key = [\"id\"]").await.unwrap();
    assert_eq!(
        (third.rows_changed, case.count().await),
        (2, 500),
        "the later line of id 3 wins"
    );
}

/// 40 good rows; line 5 has a missing field, line 9 text in the integer column.
fn bad_rows(dir: &Path) -> PathBuf {
    let mut lines = vec!["id,name,amount".to_string()];
    lines.extend((1..=40).map(|i| format!("{i},name {i},{}", i * 10)));
    lines[4] = "4,only two".into();
    lines[8] = "8,eight,lots".into();
    write_file(dir, "bad.csv", &lines)
}

#[tokio::test]
async fn rejects_are_written_and_over_the_threshold_nothing_is_loaded() {
    let case = Case::new("rejects");
    let source = bad_rows(case.dir.path());

    // Over the threshold on a table that does not exist: it is not created.
    let err = case.run(&source, "max_rejected = 0.03").await.unwrap_err();
    assert_eq!(err.kind(), EtlErrorKind::Failed);
    assert!(!case.exists().await);
    let rejects = std::fs::read_to_string(case.rejects()).unwrap();
    assert!(
        rejects.contains("\n5,\"expected 3 fields, found 2\""),
        "{rejects}"
    );
    assert!(
        rejects.contains("\n9,column amount (integer): `lots`"),
        "{rejects}"
    );

    // Within the threshold the good rows load.
    let summary = case.run(&source, "max_rejected = 0.1").await.unwrap();
    assert_eq!((summary.rows_loaded, summary.rows_rejected), (38, 2));
    let before = case.dump().await;

    // Over the threshold on the existing table: untouched.
    assert!(case.run(&source, "max_rejected = 0.03").await.is_err());
    assert_eq!(case.dump().await, before);
}

#[tokio::test]
async fn a_load_that_fails_midway_leaves_the_table_exactly_as_before() {
    let case = Case::new("strict");
    let create = format!(
        "CREATE TABLE \"{0}\" (id bigint UNIQUE, name text NOT NULL, amount bigint);
         INSERT INTO \"{0}\" VALUES (1000, 'kept', 1), (1001, 'also kept', 2);",
        case.table
    );
    client().await.batch_execute(&create).await.unwrap();
    let before = case.dump().await;

    let mut lines = vec!["id,name,amount".to_string()];
    lines.extend((1..=2000).map(|i| format!("{i},n{i},{i}")));
    lines.push("2001,,5".into());
    let source = write_file(case.dir.path(), "late.csv", &lines);
    let err = case.run(&source, "").await.unwrap_err();
    assert!(
        matches!(err, EtlError::Load(LoadError::RunPostgres { .. })),
        "{err:?}"
    );
    assert_eq!(case.dump().await, before);

    let mut lines = vec!["id,name,amount".to_string()];
    lines.extend((1..=50).map(|i| format!("{i},n{i},{i}")));
    lines.push("1000,dup,7".into());
    let source = write_file(case.dir.path(), "dup.csv", &lines);
    assert!(case.run(&source, "").await.is_err());
    assert_eq!(case.dump().await, before);
}

#[tokio::test]
async fn an_existing_table_that_does_not_match_is_a_clear_error() {
    let case = Case::new("mismatch");
    let create = format!("CREATE TABLE \"{}\" (id bigint, name date)", case.table);
    client().await.batch_execute(&create).await.unwrap();
    let source = write_file(
        case.dir.path(),
        "m.csv",
        &["id,name", "1,abc"].map(String::from),
    );
    let err = case.run(&source, "").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("column name is date in the table but the source has text values"),
        "{err}"
    );
}

#[tokio::test]
async fn the_password_can_come_from_its_own_key() {
    let case = Case::new("pwkey");
    let mut url = url::Url::parse(&pg_url()).unwrap();
    url.set_password(None).unwrap();
    let source = write_file(case.dir.path(), "p.csv", &["id", "1"].map(String::from));
    let body = case.body(&source, "password_key = \"DB_PASSWORD\"");
    let config = config(&body);
    let resolve = |password: String| {
        let url = url.to_string();
        ResolvedTarget::resolve(&config, move |key| match key {
            "DATABASE_URL" => Some(Secret::new(url.clone())),
            "DB_PASSWORD" => Some(Secret::new(password.clone())),
            _ => None,
        })
        .unwrap()
    };
    let pipeline = Pipeline::new(config.clone(), resolve(pg_password())).unwrap();
    assert_eq!(
        pipeline
            .run_all(&Recorder::default())
            .await
            .unwrap()
            .rows_loaded,
        1
    );

    let wrong = "FAKEwrongPassword";
    let pipeline = Pipeline::new(config.clone(), resolve(wrong.into())).unwrap();
    let err = pipeline.run_all(&Recorder::default()).await.unwrap_err();
    assert_eq!(err.kind(), EtlErrorKind::Unauthorized, "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains(wrong) && !shown.contains(&pg_password()),
        "{shown}"
    );
}

#[tokio::test]
async fn sslmode_require_fails_clearly_against_a_server_without_tls() {
    let case = Case::new("tls");
    let url = format!("{}?sslmode=require", pg_url());
    let source = write_file(case.dir.path(), "s.csv", &["id", "1"].map(String::from));
    let config = config(&case.body(&source, ""));
    let target = ResolvedTarget::resolve(&config, |_| Some(Secret::new(url.clone()))).unwrap();
    let err = Pipeline::new(config, target)
        .unwrap()
        .run_all(&Recorder::default())
        .await
        .unwrap_err();
    let shown = format!("{err} {:?}", std::error::Error::source(&err));
    assert!(
        shown.contains("cannot connect to PostgreSQL at postgres://etl:***@"),
        "{shown}"
    );
    assert_no_password(&shown);
    assert!(!case.exists().await);
}

#[tokio::test]
async fn json_lines_load_into_postgres() {
    let case = Case::new("jsonl");
    let lines = [
        r#"{"id": 1, "score": 2.5, "ok": true}"#,
        r#"{"id": 2, "ok": false}"#,
    ]
    .map(String::from);
    let source = write_file(case.dir.path(), "j.jsonl", &lines);
    let summary = case.run(&source, "key = \"id\"").await.unwrap();
    assert_eq!(summary.rows_loaded, 2);
    let types = case.column_types().await;
    assert_eq!(types[1], ("score".into(), "double precision".into()));
    assert_eq!(types[2], ("ok".into(), "boolean".into()));
}

/// Runs a one-row load of `case` into the target `url`; returns its error.
async fn fail_with_url(case: &Case, url: &str, table: Option<&str>) -> EtlError {
    let source = write_file(case.dir.path(), "one.csv", &["id", "1"].map(String::from));
    let mut body = case.body(&source, "");
    if let Some(table) = table {
        body = body.replace(
            &format!("table = \"{}\"", case.table),
            &format!("table = \"{table}\""),
        );
    }
    let config = config(&body);
    let target = ResolvedTarget::resolve(&config, |_| Some(Secret::new(url.to_string()))).unwrap();
    let obs = Recorder::default();
    let err = Pipeline::new(config, target)
        .unwrap()
        .run_all(&obs)
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?} {:?} {}", err.hint(), obs.all_text());
    assert_no_password(&shown);
    err
}

#[tokio::test]
async fn a_url_without_the_password_the_server_needs_is_an_auth_failure() {
    let case = Case::new("nopw");
    let mut url = url::Url::parse(&pg_url()).unwrap();
    url.set_password(None).unwrap();
    let err = fail_with_url(&case, url.as_str(), None).await;
    assert_eq!(err.kind(), EtlErrorKind::Unauthorized, "{err:?}");
}

#[tokio::test]
async fn a_bad_sslmode_port_or_host_is_a_configuration_error() {
    let case = Case::new("badurl");
    let url = url::Url::parse(&pg_url()).unwrap();
    let mut port = url.clone();
    port.set_port(Some(9)).unwrap();
    let port = port.as_str().replace(":9/", ":99999/");
    let host = format!("postgres://etl:{}@bad_host!/etl", url.password().unwrap());
    for bad in [format!("{url}?sslmode=bogus"), port, host] {
        let err = fail_with_url(&case, &bad, None).await;
        assert_eq!(err.kind(), EtlErrorKind::Config, "{err:?}");
    }
    // A server that refuses connections is unreachable, not misconfigured.
    let mut refused = url.clone();
    refused.set_port(Some(1)).unwrap();
    let err = fail_with_url(&case, refused.as_str(), None).await;
    assert_eq!(err.kind(), EtlErrorKind::Unreachable, "{err:?}");
}

#[tokio::test]
async fn a_missing_database_or_schema_is_a_configuration_error_naming_it() {
    let case = Case::new("nodb");
    let mut url = url::Url::parse(&pg_url()).unwrap();
    url.set_path("/nodb_credchain");
    let err = fail_with_url(&case, url.as_str(), None).await;
    assert_eq!(err.kind(), EtlErrorKind::Config, "{err:?}");
    let hint = err.hint().expect("a hint");
    assert!(
        hint.contains("\"nodb_credchain\"") && hint.contains("CREATE DATABASE"),
        "{hint}"
    );

    let schema = unique("noschema");
    let err = fail_with_url(&case, &pg_url(), Some(&format!("{schema}.t"))).await;
    assert_eq!(err.kind(), EtlErrorKind::Config, "{err:?}");
    let hint = err.hint().expect("a hint");
    assert!(
        hint.contains(&format!("CREATE SCHEMA \"{schema}\"")),
        "{hint}"
    );
}
