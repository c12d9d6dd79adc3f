//! Loading into SQLite: one `BEGIN IMMEDIATE` transaction; prepared statements reused for
//! every row, each inserting up to 64 rows, with parameters bound by position straight from
//! the staging file. A failed statement is replayed row by row to name the failing line.
//!
//! Storage: integer and boolean (0/1) as INTEGER, real as REAL, date (`YYYY-MM-DD`) and
//! timestamp (`YYYY-MM-DD HH:MM:SS[.ffffff]`, UTC) as TEXT, which sorts and compares like the
//! values and is what SQLite's date functions read. The journal mode is left as the file has
//! it: the default rollback journal only copies pages that existed before, so a bulk insert
//! into a new table journals almost nothing.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::{Null, ToSqlOutput, ValueRef};
use rusqlite::{Connection, Statement, Transaction, TransactionBehavior};

use super::{self as load, check_columns, ExistingColumn, LoadError, LoadPlan, Outcome};
use crate::etl::error::EtlError;
use crate::etl::ident;
use crate::etl::observer::{LogLevel, Reporter};
use crate::etl::staging::{Field, Follower, Layout, StagingReader};
use crate::etl::value::{write_date, write_timestamp, ColumnType};

/// How long to wait for another writer to release the database.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Page cache for an upsert, in KiB (negative `cache_size` means KiB): the key index is
/// looked up in every row.
const CACHE_KIB: i64 = 16 * 1024;
/// Page cache for a load without keys, which only appends: the pages on the right edge of
/// the table's B-tree are all it revisits.
const APPEND_CACHE_KIB: i64 = 4 * 1024;
/// The page size of a database file the load creates. With 16 KiB pages instead of SQLite's
/// 4 KiB, a bulk load splits and writes a quarter as many pages (about 10 % faster into a new
/// file); an existing file keeps the page size it has.
const NEW_FILE_PAGE_SIZE: i64 = 16 * 1024;
/// Parameters one statement may have in every SQLite since 3.0 (newer ones allow 32766).
const MAX_PARAMS: usize = 999;
/// More rows per statement gains little past this.
const MAX_ROWS_PER_INSERT: usize = 64;

/// Loads the staging file into the SQLite file `path` (blocking). If the file did not exist
/// and the load fails, the empty file is removed again.
pub(crate) fn load(
    path: &Path,
    plan: &LoadPlan,
    staging: Follower,
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
    staging: Follower,
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
    // A no-op unless the file is new (empty).
    conn.pragma_update(None, "page_size", NEW_FILE_PAGE_SIZE)
        .map_err(run("set the page size"))?;
    let cache_kib = if plan.keys.is_empty() {
        APPEND_CACHE_KIB
    } else {
        CACHE_KIB
    };
    conn.pragma_update(None, "cache_size", -cache_kib)
        .map_err(run("set the cache size"))?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(run("begin a transaction"))?;
    let existing = prepare_table(&tx, plan, reporter)?;
    let created = existing.is_empty();
    let count = ChangeCount::choose(plan, created);
    count
        .prepare(&tx, plan, &existing)
        .map_err(run("track the changed rows"))?;
    let inserted = insert_rows(&tx, plan, staging, reporter)?;
    let changed = (count.finish(&tx, plan, inserted)).map_err(run("count the changed rows"))?;
    reporter.check()?;
    if !plan.gate.begin_commit() {
        return Err(EtlError::Cancelled {
            step: crate::etl::observer::Step::Load,
        });
    }
    tx.commit().map_err(run("commit"))?;
    Ok(Outcome { created, changed })
}

/// The temp table holding each touched key's row as it was before the load.
const BEFORE_TABLE: &str = "credchain_before";

/// How the rows a load changed are counted. SQLite counts every row a statement writes, so a
/// key that appears twice in the input would count twice, even when its row ends as it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChangeCount {
    /// Every row written is a change: no key, or only key columns (a duplicate does nothing).
    Written,
    /// The table was empty before: the changed rows are the rows in it now.
    RowsInTable,
    /// Triggers keep each touched key's old row; the rows that differ from it at the end count.
    Compared,
}

impl ChangeCount {
    fn choose(plan: &LoadPlan, created: bool) -> Self {
        if plan.keys.is_empty() || plan.value_columns().is_empty() {
            ChangeCount::Written
        } else if created || plan.replace {
            ChangeCount::RowsInTable
        } else {
            ChangeCount::Compared
        }
    }

    /// Installs the triggers of [`ChangeCount::Compared`], on the table that has `existing`.
    fn prepare(
        self,
        tx: &Transaction<'_>,
        plan: &LoadPlan,
        existing: &[ExistingColumn],
    ) -> rusqlite::Result<()> {
        if self != ChangeCount::Compared {
            return Ok(());
        }
        let (keys, values) = key_and_value_names(plan);
        // Each slot is declared with its column's type in the table: the triggers look a key
        // up by `k0 = OLD.id`, and SQLite uses the primary key's index only when both sides
        // have the same affinity. Untyped slots made every lookup a scan of the whole temp
        // table, and an upsert quadratic in the rows it touched.
        let typed = |prefix: &str, columns: Vec<usize>| {
            (columns.iter().enumerate())
                .map(|(slot, &c)| {
                    let name = &plan.columns[c].name;
                    let theirs = existing.iter().find(|e| e.name.eq_ignore_ascii_case(name));
                    let ty = theirs.map_or("", |e| affinity_name(&e.declared));
                    format!("{prefix}{slot} {ty}")
                })
                .collect::<Vec<_>>()
        };
        let value_indexes = (0..plan.columns.len()).filter(|i| !plan.keys.contains(i));
        let (k_typed, v_typed) = (
            typed("k", plan.keys.clone()),
            typed("v", value_indexes.collect()),
        );
        let slots =
            |prefix: &str, n: usize| (0..n).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>();
        let k = slots("k", keys.len());
        let of = |row: &str, names: &[String]| {
            names
                .iter()
                .map(|n| format!("{row}.{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // Only the first write of a key is kept. `INSERT OR IGNORE` cannot say so: inside a
        // trigger, the upsert's own conflict handling (abort) overrides the trigger's.
        let seen = |row: &str| {
            keys.iter()
                .enumerate()
                .map(|(i, n)| format!("k{i} = {row}.{n}"))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        let table = plan.quoted_table();
        tx.execute_batch(&format!(
            "CREATE TEMP TABLE {BEFORE_TABLE} ({k_typed}, existed, {v_typed}, PRIMARY KEY ({k}));
             CREATE TEMP TRIGGER {BEFORE_TABLE}_update BEFORE UPDATE ON {table}
             WHEN NOT EXISTS (SELECT 1 FROM {BEFORE_TABLE} WHERE {old_seen}) BEGIN
               INSERT INTO {BEFORE_TABLE} VALUES ({old_keys}, 1, {old_values}); END;
             CREATE TEMP TRIGGER {BEFORE_TABLE}_insert AFTER INSERT ON {table}
             WHEN NOT EXISTS (SELECT 1 FROM {BEFORE_TABLE} WHERE {new_seen}) BEGIN
               INSERT INTO {BEFORE_TABLE} ({k}, existed) VALUES ({new_keys}, 0); END;",
            k = k.join(", "),
            k_typed = k_typed.join(", "),
            v_typed = v_typed.join(", "),
            old_keys = of("OLD", &keys),
            old_values = of("OLD", &values),
            new_keys = of("NEW", &keys),
            old_seen = seen("OLD"),
            new_seen = seen("NEW"),
        ))
    }

    /// The rows changed, given the rows the statements wrote; removes the triggers.
    fn finish(self, tx: &Transaction<'_>, plan: &LoadPlan, written: u64) -> rusqlite::Result<u64> {
        let count = |sql: &str| tx.query_row(sql, [], |row| row.get::<_, i64>(0));
        let table = plan.quoted_table();
        match self {
            ChangeCount::Written => Ok(written),
            ChangeCount::RowsInTable => Ok(count(&format!("SELECT count(*) FROM {table}"))? as u64),
            ChangeCount::Compared => {
                let (keys, values) = key_and_value_names(plan);
                let same_key: Vec<String> = keys
                    .iter()
                    .enumerate()
                    .map(|(i, n)| format!("t.{n} = b.k{i}"))
                    .collect();
                let differs: Vec<String> = values
                    .iter()
                    .enumerate()
                    .map(|(i, n)| format!("t.{n} IS NOT b.v{i}"))
                    .collect();
                let changed = count(&format!(
                    "SELECT (SELECT count(*) FROM temp.{BEFORE_TABLE} WHERE existed = 0)
                       + (SELECT count(*) FROM temp.{BEFORE_TABLE} b JOIN {table} t ON {}
                          WHERE b.existed = 1 AND ({}))",
                    same_key.join(" AND "),
                    differs.join(" OR ")
                ))?;
                tx.execute_batch(&format!(
                    "DROP TRIGGER temp.{BEFORE_TABLE}_update; DROP TRIGGER temp.{BEFORE_TABLE}_insert;
                     DROP TABLE temp.{BEFORE_TABLE};"
                ))?;
                Ok(changed as u64)
            }
        }
    }
}

/// A type name with the affinity SQLite gives `declared` (its rules, in order: INT, then
/// CHAR/CLOB/TEXT, then BLOB or none, then REAL/FLOA/DOUB, else NUMERIC). `INT`, not
/// `INTEGER`: a primary key declared `INTEGER` would become the rowid and refuse the text
/// values an integer column may hold.
fn affinity_name(declared: &str) -> &'static str {
    let upper = declared.to_ascii_uppercase();
    let has = |s: &str| upper.contains(s);
    if has("INT") {
        "INT"
    } else if has("CHAR") || has("CLOB") || has("TEXT") {
        "TEXT"
    } else if has("BLOB") || upper.trim().is_empty() {
        ""
    } else if has("REAL") || has("FLOA") || has("DOUB") {
        "REAL"
    } else {
        "NUMERIC"
    }
}

/// The key columns and the other columns, quoted.
fn key_and_value_names(plan: &LoadPlan) -> (Vec<String>, Vec<String>) {
    let keys = plan
        .keys
        .iter()
        .map(|&k| ident::quote(&plan.columns[k].name));
    (keys.collect(), plan.value_columns())
}

/// Creates the table, or checks the one that exists. Returns the columns the table had:
/// none when it was created.
fn prepare_table(
    tx: &Transaction<'_>,
    plan: &LoadPlan,
    reporter: &Reporter,
) -> Result<Vec<ExistingColumn>, LoadError> {
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
        return Ok(existing);
    }
    check_columns(plan, &existing, holds, true)?;
    if plan.replace {
        let deleted = tx
            .execute(&plan.delete_sql(), [])
            .map_err(run("delete the old rows"))?;
        reporter.log(
            LogLevel::Info,
            format!("replacing the {deleted} rows of {}", plan.table),
        );
    }
    Ok(existing)
}

/// Whether a column of the table holds values of type `ours`: SQLite must store them in it
/// (`load::holds` on the storage types), and, since SQLite stores dates, timestamps and
/// booleans as text and integers, the declared names are all that says what a column holds,
/// so they are taken at their word: a BOOLEAN column takes only booleans, a DATE column only
/// dates, a DATETIME or TIMESTAMP column dates and timestamps.
fn holds(ours: ColumnType, theirs: &ExistingColumn) -> bool {
    use ColumnType::{Boolean, Date, Timestamp};
    let declared = theirs.declared.to_ascii_uppercase();
    let named = if declared.contains("BOOL") {
        ours == Boolean
    } else if declared.contains("DATETIME") || declared.contains("TIMESTAMP") {
        matches!(ours, Date | Timestamp)
    } else if declared.contains("DATE") {
        ours == Date
    } else {
        true
    };
    named && load::holds(stored_type(ours), theirs)
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
            declared,
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
    staging: Follower,
    reporter: &Reporter,
) -> Result<u64, EtlError> {
    let width = plan.columns.len();
    let per_insert = rows_per_insert(width);
    let prepare = |rows| {
        tx.prepare(&insert_sql(plan, rows))
            .map_err(|e| prepare_error(plan, e))
    };
    let (mut many, mut one) = (prepare(per_insert)?, prepare(1)?);
    // Transform wrote dates and timestamps as text (`Layout::Sqlite`).
    let types: Vec<ColumnType> = (plan.columns.iter())
        .map(|c| Layout::Sqlite.stored(c.ty))
        .collect();
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

/// A failed insert: the row's fault (a constraint, a type) names its line; the database's
/// (read-only, full disk, I/O) does not, since no row would have fared better.
fn insert_error(plan: &LoadPlan, line: u64, source: rusqlite::Error) -> LoadError {
    if is_database_fault(&source) {
        return LoadError::RunSqlite {
            action: "write rows",
            table: plan.table.clone(),
            source,
        };
    }
    LoadError::InsertRow {
        line,
        table: plan.table.clone(),
        source,
    }
}

/// Whether SQLite failed for a reason of the database file rather than of the row.
fn is_database_fault(error: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    matches!(
        error.sqlite_error_code(),
        Some(
            C::ReadOnly
                | C::CannotOpen
                | C::PermissionDenied
                | C::DiskFull
                | C::SystemIoFailure
                | C::DatabaseCorrupt
                | C::NotADatabase
                | C::DatabaseBusy
                | C::DatabaseLocked
        )
    )
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
// TODO(perf): SQLite copies every bound text (rusqlite binds with SQLITE_TRANSIENT); binding
// with SQLITE_STATIC would spare a malloc and a copy per text field, the largest cost left in
// the load besides SQLite's own B-tree work. rusqlite's safe API does not offer it, and this
// crate forbids unsafe code.
fn text(bytes: &[u8]) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etl::load::tests::{column, plan};

    #[test]
    fn a_read_only_database_is_not_blamed_on_a_row() {
        let plan = plan(vec![column("id", ColumnType::Integer, 1)], vec![]);
        let code = |c| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(c), None);
        let err = insert_error(&plan, 7, code(rusqlite::ffi::SQLITE_READONLY));
        assert!(matches!(err, LoadError::RunSqlite { .. }), "{err:?}");
        assert!(!err.to_string().contains("line 7"));
        assert_eq!(err.kind(), crate::etl::EtlErrorKind::Config);
        let err = insert_error(&plan, 7, code(rusqlite::ffi::SQLITE_CONSTRAINT));
        assert!(err.to_string().contains("line 7"), "{err}");
        assert_eq!(err.kind(), crate::etl::EtlErrorKind::Failed);
    }

    #[test]
    fn the_change_count_looks_keys_up_by_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "ATTACH ':memory:' AS etl;
             CREATE TABLE etl.t (id INTEGER, code VARCHAR(8), v REAL, PRIMARY KEY (id, code));",
        )
        .unwrap();
        let columns = vec![
            column("id", ColumnType::Integer, 1),
            column("code", ColumnType::Text, 1),
            column("v", ColumnType::Real, 1),
        ];
        let plan = plan(columns, vec![0, 1]);
        let tx = conn.transaction().unwrap();
        let existing = existing_columns(&tx, &plan.table).unwrap();
        ChangeCount::Compared
            .prepare(&tx, &plan, &existing)
            .unwrap();
        // The lookup the triggers make, correlated with a row of the table.
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT (SELECT 1 FROM temp.{BEFORE_TABLE} \
             WHERE k0 = t.id AND k1 = t.code) FROM etl.t AS t"
        );
        let mut stmt = tx.prepare(&sql).unwrap();
        let steps: Vec<String> = stmt
            .query_map([], |row| row.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let lookup = steps.iter().find(|s| s.contains(BEFORE_TABLE)).unwrap();
        assert!(lookup.starts_with("SEARCH"), "{steps:?}");
        assert_eq!(affinity_name("VARCHAR(8)"), "TEXT");
        assert_eq!(affinity_name("INTEGER"), "INT");
        assert_eq!(affinity_name(""), "");
        assert_eq!(affinity_name("DECIMAL(10,2)"), "NUMERIC");
    }

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
