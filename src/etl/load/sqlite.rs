//! Loading into SQLite: one `BEGIN IMMEDIATE` transaction; prepared statements reused for
//! every row, each inserting up to 64 rows, with parameters bound by position straight from
//! the staging file. A failed statement is replayed row by row to name the failing line.
//!
//! Storage: integer and boolean (0/1) as INTEGER, real as REAL, date (`YYYY-MM-DD`) and
//! timestamp (`YYYY-MM-DD HH:MM:SS[.ffffff]`, UTC) as TEXT, which sorts and compares like the
//! values and is what SQLite's date functions read. The journal mode is left as the file has
//! it: the default rollback journal only copies pages that existed before, so a bulk insert
//! into a new table journals almost nothing.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use rusqlite::types::{Null, ToSqlOutput, ValueRef};
use rusqlite::{Connection, Statement, Transaction, TransactionBehavior};

use super::{check_columns, ExistingColumn, LoadError, LoadPlan, Outcome};
use crate::etl::error::EtlError;
use crate::etl::observer::{LogLevel, Reporter};
use crate::etl::staging::{Field, StagingReader};
use crate::etl::value::{write_date, write_timestamp, ColumnType};

/// How long to wait for another writer to release the database.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Page cache for the load, in KiB (negative `cache_size` means KiB).
const CACHE_KIB: i64 = 16 * 1024;
/// Parameters one statement may have in every SQLite since 3.0 (newer ones allow 32766).
const MAX_PARAMS: usize = 999;
/// More rows per statement gains little past this.
const MAX_ROWS_PER_INSERT: usize = 64;

/// Loads the staging file into the SQLite file `path` (blocking). If the file did not exist
/// and the load fails, the empty file is removed again.
pub(crate) fn load(
    path: &Path,
    plan: &LoadPlan,
    staging: File,
    reporter: &Reporter,
) -> Result<Outcome, EtlError> {
    let existed = path.exists();
    let result = load_in_transaction(path, plan, staging, reporter);
    if result.is_err() && !existed {
        let _ = std::fs::remove_file(path);
    }
    result
}

fn load_in_transaction(
    path: &Path,
    plan: &LoadPlan,
    staging: File,
    reporter: &Reporter,
) -> Result<Outcome, EtlError> {
    let mut conn = Connection::open(path).map_err(|source| LoadError::OpenSqlite {
        path: path.display().to_string(),
        source,
    })?;
    let run = |action| {
        move |source| LoadError::RunSqlite {
            action,
            table: plan.table.clone(),
            source,
        }
    };
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(run("set the busy timeout"))?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)
        .map_err(run("set the cache size"))?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(run("begin a transaction"))?;
    let created = prepare_table(&tx, plan, reporter)?;
    let changed = insert_rows(&tx, plan, staging, reporter)?;
    reporter.check()?;
    tx.commit().map_err(run("commit"))?;
    Ok(Outcome { created, changed })
}

/// Creates the table, or checks the one that exists. True if created.
fn prepare_table(
    tx: &Transaction<'_>,
    plan: &LoadPlan,
    reporter: &Reporter,
) -> Result<bool, LoadError> {
    let run = |action| {
        move |source| LoadError::RunSqlite {
            action,
            table: plan.table.clone(),
            source,
        }
    };
    let existing = existing_columns(tx, &plan.table).map_err(run("read the columns"))?;
    if existing.is_empty() {
        tx.execute_batch(&plan.create_table_sql(sql_type))
            .map_err(run("create the table"))?;
        reporter.log(LogLevel::Info, format!("created table {}", plan.table));
        return Ok(true);
    }
    check_columns(plan, &existing, stored_type, true)?;
    if plan.replace {
        let deleted = tx
            .execute(&plan.delete_sql(), [])
            .map_err(run("delete the old rows"))?;
        reporter.log(
            LogLevel::Info,
            format!("replacing the {deleted} rows of {}", plan.table),
        );
    }
    Ok(false)
}

fn existing_columns(tx: &Transaction<'_>, table: &str) -> rusqlite::Result<Vec<ExistingColumn>> {
    let (schema, name) = match table.split_once('.') {
        Some((schema, name)) => (schema, name),
        None => ("main", table),
    };
    let mut stmt = tx.prepare("SELECT name, type FROM pragma_table_info(?1, ?2)")?;
    let rows = stmt.query_map([name, schema], |row| {
        let declared: String = row.get(1)?;
        Ok(ExistingColumn {
            name: row.get(0)?,
            ty: Some(affinity(&declared)),
            declared: if declared.is_empty() {
                "untyped".into()
            } else {
                declared
            },
        })
    })?;
    rows.collect()
}

/// The type each column is declared with.
fn sql_type(ty: ColumnType) -> &'static str {
    match stored_type(ty) {
        ColumnType::Integer => "INTEGER",
        ColumnType::Real => "REAL",
        _ => "TEXT",
    }
}

/// How SQLite stores each type.
fn stored_type(ty: ColumnType) -> ColumnType {
    match ty {
        ColumnType::Boolean => ColumnType::Integer,
        ColumnType::Date | ColumnType::Timestamp => ColumnType::Text,
        other => other,
    }
}

/// What a declared type holds, by SQLite's affinity rules, with date, time and boolean
/// names taken at their word. Untyped and BLOB columns hold anything, like text.
fn affinity(declared: &str) -> ColumnType {
    let upper = declared.to_ascii_uppercase();
    let has = |s: &str| upper.contains(s);
    if has("INT") {
        ColumnType::Integer
    } else if has("CHAR") || has("CLOB") || has("TEXT") || has("BLOB") || upper.is_empty() {
        ColumnType::Text
    } else if has("REAL") || has("FLOA") || has("DOUB") {
        ColumnType::Real
    } else if has("DATE") || has("TIME") {
        ColumnType::Text
    } else if has("BOOL") {
        ColumnType::Integer
    } else {
        ColumnType::Real
    }
}

/// How many rows one INSERT statement takes: as many as fit in [`MAX_PARAMS`] parameters, at
/// most [`MAX_ROWS_PER_INSERT`]. Fewer statement runs per row is most of SQLite's bulk speed.
fn rows_per_insert(columns: usize) -> usize {
    (MAX_PARAMS / columns.max(1)).clamp(1, MAX_ROWS_PER_INSERT)
}

/// `INSERT INTO t (cols) VALUES (?, ...), ... (rows times)`, with the upsert clause.
fn insert_sql(plan: &LoadPlan, rows: usize) -> String {
    let width = plan.columns.len();
    let tuples: Vec<String> = (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=width).map(|c| format!("?{}", r * width + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        plan.quoted_table(),
        plan.column_list(),
        tuples.join(", ")
    );
    if plan.keys.is_empty() {
        return sql;
    }
    let values = plan.value_columns();
    if values.is_empty() {
        sql += &format!(" ON CONFLICT ({}) DO NOTHING", plan.key_list());
        return sql;
    }
    let set: Vec<String> = values
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let differs: Vec<String> = values
        .iter()
        .map(|c| format!("{c} IS NOT excluded.{c}"))
        .collect();
    sql += &format!(
        " ON CONFLICT ({}) DO UPDATE SET {} WHERE {}",
        plan.key_list(),
        set.join(", "),
        differs.join(" OR ")
    );
    sql
}

/// The rows bound to the multi-row statement so far, kept as stored so a failed batch can be
/// replayed row by row to name the failing line.
struct Batch {
    rows: usize,
    raw: Vec<u8>,
}

fn insert_rows(
    tx: &Transaction<'_>,
    plan: &LoadPlan,
    staging: File,
    reporter: &Reporter,
) -> Result<u64, EtlError> {
    let width = plan.columns.len();
    let per_insert = rows_per_insert(width);
    let prepare = |rows| {
        tx.prepare(&insert_sql(plan, rows))
            .map_err(|e| prepare_error(plan, e))
    };
    let (mut many, mut one) = (prepare(per_insert)?, prepare(1)?);
    let types: Vec<ColumnType> = plan.columns.iter().map(|c| c.ty).collect();
    let mut reader = StagingReader::open(staging, types.clone()).map_err(LoadError::ReadStaging)?;
    let mut batch = Batch {
        rows: 0,
        raw: Vec::with_capacity(64 * 1024),
    };
    let mut scratch = Vec::with_capacity(32);
    let (mut done, mut changed) = (0u64, 0u64);
    while let Some(line) = reader.advance().map_err(LoadError::ReadStaging)? {
        batch.raw.extend_from_slice(reader.row_bytes());
        for i in 0..width {
            let index = batch.rows * width + i + 1;
            bind(&mut many, index, reader.field(i), &mut scratch)
                .map_err(|source| insert_error(plan, line, source))?;
        }
        batch.rows += 1;
        if batch.rows == per_insert {
            changed += run_batch(&mut many, &mut one, plan, &types, &mut batch)?;
        }
        done += 1;
        reporter.tick(done)?;
    }
    // The last, partial batch goes row by row.
    changed += insert_one_by_one(&mut one, plan, &types, std::mem::take(&mut batch.raw))?;
    reporter.progress(done);
    Ok(changed)
}

/// Runs the full multi-row statement. When it fails, SQLite has undone the statement; the
/// batch is replayed row by row, which stops at the failing row and names its line.
fn run_batch(
    many: &mut Statement<'_>,
    one: &mut Statement<'_>,
    plan: &LoadPlan,
    types: &[ColumnType],
    batch: &mut Batch,
) -> Result<u64, LoadError> {
    let raw = std::mem::take(&mut batch.raw);
    batch.rows = 0;
    match many.raw_execute() {
        Ok(changed) => {
            batch.raw = raw;
            batch.raw.clear();
            Ok(changed as u64)
        }
        Err(source) => {
            insert_one_by_one(one, plan, types, raw)?;
            Err(LoadError::RunSqlite {
                action: "insert a batch of rows",
                table: plan.table.clone(),
                source,
            })
        }
    }
}

/// Inserts stored rows one statement each.
fn insert_one_by_one(
    one: &mut Statement<'_>,
    plan: &LoadPlan,
    types: &[ColumnType],
    raw: Vec<u8>,
) -> Result<u64, LoadError> {
    let mut reader = StagingReader::from_rows(raw, types.to_vec());
    let mut scratch = Vec::new();
    let mut changed = 0;
    while let Some(line) = reader.advance().map_err(LoadError::ReadStaging)? {
        let fail = |source| insert_error(plan, line, source);
        for i in 0..types.len() {
            bind(one, i + 1, reader.field(i), &mut scratch).map_err(fail)?;
        }
        changed += one.raw_execute().map_err(fail)? as u64;
    }
    Ok(changed)
}

fn insert_error(plan: &LoadPlan, line: u64, source: rusqlite::Error) -> LoadError {
    LoadError::InsertRow {
        line,
        table: plan.table.clone(),
        source,
    }
}

fn prepare_error(plan: &LoadPlan, source: rusqlite::Error) -> LoadError {
    let text = source.to_string();
    if !plan.keys.is_empty() && text.contains("ON CONFLICT clause does not match") {
        return LoadError::FindUniqueKey {
            table: plan.table.clone(),
            keys: plan.key_list(),
        };
    }
    LoadError::RunSqlite {
        action: "prepare the insert",
        table: plan.table.clone(),
        source,
    }
}

/// Binds one field; dates and timestamps are formatted into `scratch` (SQLite copies bound
/// text, so one buffer serves every column).
fn bind(
    stmt: &mut Statement<'_>,
    index: usize,
    field: Field<'_>,
    scratch: &mut Vec<u8>,
) -> rusqlite::Result<()> {
    match field {
        Field::Null => stmt.raw_bind_parameter(index, Null),
        Field::Integer(i) => stmt.raw_bind_parameter(index, i),
        Field::Real(r) => stmt.raw_bind_parameter(index, r),
        Field::Boolean(b) => stmt.raw_bind_parameter(index, i64::from(b)),
        Field::Text(bytes) => stmt.raw_bind_parameter(index, text(bytes)),
        Field::Date(d) => {
            scratch.clear();
            write_date(scratch, d);
            stmt.raw_bind_parameter(index, text(scratch))
        }
        Field::Timestamp(ts) => {
            scratch.clear();
            write_timestamp(scratch, ts);
            stmt.raw_bind_parameter(index, text(scratch))
        }
    }
}

/// Text that transform already checked is UTF-8, bound without checking it again.
fn text(bytes: &[u8]) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etl::load::tests::{column, plan};

    #[test]
    fn affinity_follows_sqlite_rules() {
        assert_eq!(affinity("BIGINT"), ColumnType::Integer);
        assert_eq!(affinity("varchar(20)"), ColumnType::Text);
        assert_eq!(affinity(""), ColumnType::Text);
        assert_eq!(affinity("DOUBLE PRECISION"), ColumnType::Real);
        assert_eq!(affinity("DATE"), ColumnType::Text);
        assert_eq!(affinity("DECIMAL(10,2)"), ColumnType::Real);
    }

    #[test]
    fn upsert_updates_only_changed_rows() {
        let ty = ColumnType::Integer;
        let plan = plan(vec![column("id", ty, 1), column("v", ty, 1)], vec![0]);
        assert_eq!(rows_per_insert(15), 64);
        assert_eq!(rows_per_insert(100), 9);
        assert_eq!(rows_per_insert(2000), 1);
        assert!(insert_sql(&plan, 2).contains("VALUES (?1, ?2), (?3, ?4) ON CONFLICT"));
        assert_eq!(
            insert_sql(&plan, 1),
            "INSERT INTO \"etl\".\"t\" (\"id\", \"v\") VALUES (?1, ?2) ON CONFLICT (\"id\") DO UPDATE \
             SET \"v\" = excluded.\"v\" WHERE \"v\" IS NOT excluded.\"v\""
        );
    }
}
