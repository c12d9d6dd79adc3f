//! Loading into PostgreSQL: one transaction; the staging file goes through
//! `COPY ... FROM STDIN (FORMAT binary)`. Without key columns, into a table whose column types
//! are exactly the staged ones (always so for a table the load creates), the rows are copied
//! straight in (`FREEZE` for a new table). Otherwise they are copied into a temp table and one
//! `INSERT ... SELECT` (with `ON CONFLICT` when there are key columns) moves them into the
//! table, converting types where the table's differ.
//!
//! Types: bigint, double precision, date, timestamp (UTC; the transaction sets `TimeZone` to
//! UTC so a `timestamptz` column reads them right), boolean, text. TLS: `sslmode=require`
//! connects with rustls and verifies the server against the system's trusted roots
//! (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured), which is stricter than libpq's
//! `require`; `prefer` (the default) and `disable` connect without TLS.

use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use credchain_core::{redact_url, Secret};
use futures::SinkExt;
use tokio::sync::mpsc;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls, Transaction};

use super::{check_columns, holds, ExistingColumn, LoadError, LoadPlan, Outcome};
use crate::etl::error::EtlError;
use crate::etl::ident;
use crate::etl::observer::{LogLevel, PipelineObserver, Step};
use crate::etl::staging::{self, Follower, Staging, StagingReader};
use crate::etl::value::ColumnType;

/// How long to wait for the server when the URL sets no `connect_timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of the staging file sent per COPY message.
const COPY_CHUNK: usize = 256 * 1024;
/// Chunks read ahead of the connection.
const CHUNKS_AHEAD: usize = 4;
/// The column of the temp table that holds the source line.
const LINE_COLUMN: &str = "__credchain_line";
/// SQLSTATE of "no unique or exclusion constraint matching the ON CONFLICT specification".
const NO_MATCHING_CONSTRAINT: &str = "42P10";

/// Loads the staging file into PostgreSQL.
pub(crate) async fn load(
    url: &Secret,
    password: Option<&Secret>,
    plan: &LoadPlan,
    staging: &Staging,
    obs: &dyn PipelineObserver,
) -> Result<Outcome, EtlError> {
    let target = redact_url(url.expose());
    let mut client = connect(url, password, &target).await?;
    let run = |action| move |source| run_error(plan, action, source);
    let tx = client
        .transaction()
        .await
        .map_err(run("begin a transaction"))?;
    tx.batch_execute("SET LOCAL TimeZone = 'UTC'")
        .await
        .map_err(run("set the time zone"))?;
    let table = prepare_table(&tx, plan, obs).await?;
    let changed = if plan.keys.is_empty() && table.exact_types {
        // Straight into the table; FREEZE spares vacuuming rows of a table made just now.
        let freeze = if table.created { ", FREEZE" } else { "" };
        let copy = format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary{freeze})",
            plan.quoted_table(),
            plan.column_list()
        );
        copy_staging(&tx, plan, &copy, staging, true, obs).await?
    } else {
        let stage = format!("credchain_stage_{}", uuid::Uuid::new_v4().simple());
        tx.batch_execute(&temp_table_sql(plan, &stage))
            .await
            .map_err(run("create the staging table"))?;
        let copy = format!("COPY {} FROM STDIN (FORMAT binary)", ident::quote(&stage));
        copy_staging(&tx, plan, &copy, staging, false, obs).await?;
        let message = format!("moving {} rows into {}", plan.rows, plan.table);
        obs.log(Step::Load, LogLevel::Debug, &message);
        tx.execute(&insert_sql(plan, &stage, table.created), &[])
            .await
            .map_err(run("insert the rows"))?
    };
    if !plan.gate.begin_commit() {
        return Err(EtlError::Cancelled { step: Step::Load });
    }
    tx.commit().await.map_err(run("commit"))?;
    Ok(Outcome {
        created: table.created,
        changed,
    })
}

async fn connect(
    url: &Secret,
    password: Option<&Secret>,
    target: &str,
) -> Result<Client, LoadError> {
    let connect_error = |source| LoadError::ConnectPostgres {
        target: target.to_string(),
        source,
    };
    let mut config: tokio_postgres::Config = url.expose().parse().map_err(connect_error)?;
    // A malformed host would only fail at the DNS lookup, as if the server were unreachable.
    for host in config.get_hosts() {
        if let tokio_postgres::config::Host::Tcp(host) = host {
            if !is_host_name(host) {
                return Err(LoadError::ParseHost {
                    target: target.to_string(),
                    host: host.clone(),
                });
            }
        }
    }
    if let Some(password) = password {
        config.password(password.expose());
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.application_name("credchain");
    if config.get_ssl_mode() == SslMode::Require {
        let tls = rustls_connector(target)?;
        let (client, connection) = config.connect(tls).await.map_err(connect_error)?;
        tokio::spawn(connection);
        return Ok(client);
    }
    let (client, connection) = config.connect(NoTls).await.map_err(connect_error)?;
    tokio::spawn(connection);
    Ok(client)
}

/// Whether `host` is an IP address or a well-formed host name: dot-separated labels of ASCII
/// letters, digits, `-` (not at a label's ends) and `_` (as in container names), not all
/// labels numeric (that would be a malformed IPv4 address).
fn is_host_name(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let labels_ok = host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    labels_ok && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

fn rustls_connector(target: &str) -> Result<tokio_postgres_rustls::MakeRustlsConnect, LoadError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_platform_verifier())
        .map_err(|e| LoadError::SetupTls {
            target: target.to_string(),
            reason: e.to_string(),
        })?
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn run_error(plan: &LoadPlan, action: &'static str, source: tokio_postgres::Error) -> LoadError {
    if source
        .code()
        .is_some_and(|c| c.code() == NO_MATCHING_CONSTRAINT)
        && !plan.keys.is_empty()
    {
        return LoadError::FindUniqueKey {
            table: plan.table.clone(),
            keys: plan.key_list(),
        };
    }
    LoadError::RunPostgres {
        action,
        table: plan.table.clone(),
        source,
    }
}

/// What the load found of the table.
struct TableState {
    /// The load created it.
    created: bool,
    /// Every source column has exactly the type the staging file holds, so binary COPY can
    /// write into it directly.
    exact_types: bool,
}

/// Creates the table, or checks the one that exists.
async fn prepare_table(
    tx: &Transaction<'_>,
    plan: &LoadPlan,
    obs: &dyn PipelineObserver,
) -> Result<TableState, LoadError> {
    let run = |action| move |source| run_error(plan, action, source);
    let rows = tx
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a WHERE a.attrelid = to_regclass($1) \
             AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&plan.quoted_table()],
        )
        .await
        .map_err(run("read the columns"))?;
    if rows.is_empty() {
        tx.batch_execute(&plan.create_table_sql(sql_type))
            .await
            .map_err(run("create the table"))?;
        obs.log(
            Step::Load,
            LogLevel::Info,
            &format!("created table {}", plan.table),
        );
        return Ok(TableState {
            created: true,
            exact_types: true,
        });
    }
    let existing: Vec<ExistingColumn> = rows
        .iter()
        .map(|row| {
            let declared: String = row.get(1);
            ExistingColumn {
                name: row.get(0),
                ty: column_type(&declared),
                declared,
            }
        })
        .collect();
    check_columns(plan, &existing, holds, false)?;
    if plan.replace {
        let deleted = tx
            .execute(&plan.delete_sql(), &[])
            .await
            .map_err(run("delete the old rows"))?;
        let message = format!("replacing the {deleted} rows of {}", plan.table);
        obs.log(Step::Load, LogLevel::Info, &message);
    }
    let exact_types = plan.columns.iter().all(|c| {
        existing
            .iter()
            .any(|e| e.name == c.name && e.declared == sql_type(c.ty))
    });
    Ok(TableState {
        created: false,
        exact_types,
    })
}

fn sql_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Boolean => "boolean",
        ColumnType::Integer => "bigint",
        ColumnType::Real => "double precision",
        ColumnType::Date => "date",
        ColumnType::Timestamp => "timestamp",
        ColumnType::Text => "text",
    }
}

/// Our type for a column type as `format_type` prints it; `None` for types we do not write.
fn column_type(declared: &str) -> Option<ColumnType> {
    let base = declared.split('(').next().unwrap_or(declared).trim();
    Some(match base {
        "bigint" | "integer" | "smallint" => ColumnType::Integer,
        "double precision" | "real" | "numeric" => ColumnType::Real,
        "date" => ColumnType::Date,
        "timestamp without time zone" | "timestamp with time zone" => ColumnType::Timestamp,
        "boolean" => ColumnType::Boolean,
        "text" | "character varying" | "character" => ColumnType::Text,
        _ if base.starts_with("timestamp") => ColumnType::Timestamp,
        _ => return None,
    })
}

fn temp_table_sql(plan: &LoadPlan, stage: &str) -> String {
    let columns = plan
        .columns
        .iter()
        .map(|c| format!(", {} {}", ident::quote(&c.name), sql_type(c.ty)));
    format!(
        "CREATE TEMP TABLE {} ({} bigint{}) ON COMMIT DROP",
        ident::quote(stage),
        ident::quote(LINE_COLUMN),
        columns.collect::<String>()
    )
}

/// Streams the staging file through `copy` (as stored, or without the line column); returns
/// the rows copied. A blocking thread reads the file, following transform while it still
/// writes it, while the rows go out.
async fn copy_staging(
    tx: &Transaction<'_>,
    plan: &LoadPlan,
    copy: &str,
    staging: &Staging,
    without_line: bool,
    obs: &dyn PipelineObserver,
) -> Result<u64, LoadError> {
    let run = |action| move |source| run_error(plan, action, source);
    let (chunks_tx, mut chunks) = mpsc::channel(CHUNKS_AHEAD);
    let (input, types) = (
        staging.follow(),
        plan.columns.iter().map(|c| c.ty).collect(),
    );
    let reader = tokio::task::spawn_blocking(move || {
        if let Err(e) = read_chunks(input, types, without_line, &chunks_tx) {
            let _ = chunks_tx.blocking_send(Err(e));
        }
    });
    let sink = tx.copy_in(copy).await.map_err(run("start the copy"))?;
    let mut sink = pin!(sink);
    let mut done = 0u64;
    while let Some(chunk) = chunks.recv().await {
        let (chunk, rows) = chunk.map_err(LoadError::ReadStaging)?;
        sink.send(chunk).await.map_err(run("copy the rows"))?;
        done += rows;
        obs.progress(Step::Load, done, Some(plan.rows.max(done)));
    }
    let _ = reader.await;
    let rows = sink.as_mut().finish().await.map_err(run("copy the rows"))?;
    obs.progress(Step::Load, done, Some(done));
    Ok(rows)
}

/// Sends the staging file's rows in chunks of about [`COPY_CHUNK`] bytes, each with its row
/// count (blocking).
fn read_chunks(
    input: Follower,
    types: Vec<ColumnType>,
    without_line: bool,
    out: &mpsc::Sender<std::io::Result<(Bytes, u64)>>,
) -> std::io::Result<()> {
    let send = |chunk: Vec<u8>, rows| out.blocking_send(Ok((Bytes::from(chunk), rows))).is_ok();
    let mut reader = StagingReader::open(input, types)?;
    let mut chunk = staging::stream_header();
    let mut rows = 0;
    while reader.advance()?.is_some() {
        if without_line {
            reader.write_row_without_line(&mut chunk);
        } else {
            chunk.extend_from_slice(reader.row_bytes());
        }
        rows += 1;
        if chunk.len() >= COPY_CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(COPY_CHUNK + 4096));
            if !send(full, std::mem::take(&mut rows)) {
                return Ok(());
            }
        }
    }
    chunk.extend_from_slice(&staging::stream_trailer());
    send(chunk, rows);
    Ok(())
}

/// `INSERT ... SELECT` from the temp table. `empty_table`: the load created the table, so no
/// row can conflict and the upsert clause (costly per row) is left out.
fn insert_sql(plan: &LoadPlan, stage: &str, empty_table: bool) -> String {
    let columns = plan.column_list();
    let mut sql = format!("INSERT INTO {} AS dst ({columns}) ", plan.quoted_table());
    if plan.keys.is_empty() {
        sql += &format!("SELECT {columns} FROM {}", ident::quote(stage));
        return sql;
    }
    // The later line wins when a key appears twice in the input; ON CONFLICT refuses to
    // touch one row twice in a statement.
    let keys = plan.key_list();
    sql += &format!(
        "SELECT DISTINCT ON ({keys}) {columns} FROM {} ORDER BY {keys}, {} DESC",
        ident::quote(stage),
        ident::quote(LINE_COLUMN)
    );
    if empty_table {
        return sql;
    }
    sql += &format!(" ON CONFLICT ({keys}) ");
    let values = plan.value_columns();
    if values.is_empty() {
        return sql + "DO NOTHING";
    }
    let set: Vec<String> = values
        .iter()
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    let old: Vec<String> = values.iter().map(|c| format!("dst.{c}")).collect();
    let new: Vec<String> = values.iter().map(|c| format!("EXCLUDED.{c}")).collect();
    sql + &format!(
        "DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})",
        set.join(", "),
        old.join(", "),
        new.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etl::load::tests::{column, plan};

    #[test]
    fn host_names_and_addresses_are_told_from_malformed_hosts() {
        for good in [
            "db",
            "db.example.com",
            "my_db",
            "127.0.0.1",
            "::1",
            "db-1.local.",
        ] {
            assert!(is_host_name(good), "{good}");
        }
        for bad in [
            "ho st",
            "bad_host!",
            "-x-",
            "999.999.1.1",
            "a..b",
            "db/x",
            "é.example",
        ] {
            assert!(!is_host_name(bad), "{bad}");
        }
    }

    #[test]
    fn format_type_names_map_to_ours() {
        assert_eq!(column_type("bigint"), Some(ColumnType::Integer));
        assert_eq!(column_type("numeric(10,2)"), Some(ColumnType::Real));
        assert_eq!(column_type("character varying(20)"), Some(ColumnType::Text));
        assert_eq!(
            column_type("timestamp(3) with time zone"),
            Some(ColumnType::Timestamp)
        );
        assert_eq!(column_type("jsonb"), None);
    }

    #[test]
    fn upsert_keeps_the_last_line_per_key() {
        let ty = ColumnType::Text;
        let plan = plan(vec![column("id", ty, 1), column("v", ty, 1)], vec![0]);
        assert!(!insert_sql(&plan, "s", true).contains("ON CONFLICT"));
        let sql = insert_sql(&plan, "s", false);
        assert!(sql.contains("SELECT DISTINCT ON (\"id\") \"id\", \"v\" FROM \"s\" ORDER BY \"id\", \"__credchain_line\" DESC"), "{sql}");
        assert!(
            sql.ends_with("WHERE (dst.\"v\") IS DISTINCT FROM (EXCLUDED.\"v\")"),
            "{sql}"
        );
    }
}
