//! The load step: write the staged rows into SQLite or PostgreSQL in one transaction.
//!
//! Both databases follow the same contract:
//! - the table is created if absent (quoted identifiers, the inferred types, a primary key on
//!   the `key` columns), inside the load's transaction;
//! - an existing table must have every column of the source with a type that can hold its
//!   values (see [`fits`]); extra table columns are left to their defaults;
//! - with `key` columns the load upserts (`INSERT .. ON CONFLICT (keys) DO UPDATE`), updating
//!   only rows whose values differ, so a re-run of the same input changes nothing; when a key
//!   appears twice in the input, the later line wins;
//! - with `replace`, the table's rows are deleted first, in the same transaction;
//! - any failure rolls the transaction back: the table is exactly as it was, or absent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::error::EtlErrorKind;
use super::ident;
use super::transform::Column;
use super::value::ColumnType;

pub(crate) mod postgres;
pub(crate) mod sqlite;

/// Why the load failed. The table is as it was before the load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The SQLite file could not be opened.
    #[error("cannot open SQLite database {path}")]
    OpenSqlite {
        /// The file.
        path: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A SQLite statement failed.
    #[error("cannot {action} in SQLite table {table}")]
    RunSqlite {
        /// What was being done.
        action: &'static str,
        /// The table.
        table: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A row was refused (a constraint, a type); nothing was loaded.
    #[error("cannot insert the row from line {line} into {table}; nothing was loaded")]
    InsertRow {
        /// The row's source line.
        line: u64,
        /// The table.
        table: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The PostgreSQL server could not be reached or refused the login.
    #[error("cannot connect to PostgreSQL at {target}")]
    ConnectPostgres {
        /// The target, redacted.
        target: String,
        /// The client's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The target URL names a host that is neither a host name nor an IP address.
    #[error("cannot connect to PostgreSQL at {target}: `{host}` is not a host name or IP address")]
    ParseHost {
        /// The target, redacted.
        target: String,
        /// The host as the URL gives it.
        host: String,
    },
    /// `sslmode=require` could not be set up.
    #[error("cannot set up TLS for PostgreSQL at {target}: {reason}")]
    SetupTls {
        /// The target, redacted.
        target: String,
        /// What is wrong.
        reason: String,
    },
    /// A PostgreSQL statement failed.
    #[error("cannot {action} in PostgreSQL table {table}; nothing was loaded")]
    RunPostgres {
        /// What was being done.
        action: &'static str,
        /// The table.
        table: String,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The upsert has no unique constraint to work with.
    #[error(
        "cannot upsert into {table}: it needs a primary key or unique constraint on ({keys}); \
         add one, or drop `key`"
    )]
    FindUniqueKey {
        /// The table.
        table: String,
        /// The key columns.
        keys: String,
    },
    /// The existing table does not fit the source.
    #[error(
        "table {table} does not match the source: {}; load into a new table, change the \
         table, or set `types`",
        problems.join("; ")
    )]
    MatchColumns {
        /// The table.
        table: String,
        /// Each mismatch.
        problems: Vec<String>,
    },
    /// The staging file could not be read back.
    #[error("cannot read the staging file")]
    ReadStaging(#[source] std::io::Error),
}

/// SQLSTATE of "database does not exist" (invalid_catalog_name).
const NO_DATABASE: &str = "3D000";
/// SQLSTATE of "schema does not exist" (invalid_schema_name).
const NO_SCHEMA: &str = "3F000";

impl LoadError {
    /// The kind of failure, for the exit code.
    pub fn kind(&self) -> EtlErrorKind {
        match self {
            LoadError::ConnectPostgres { source, .. } => match source.code() {
                Some(code) if code.code().starts_with("28") => EtlErrorKind::Unauthorized,
                Some(code) if code.code() == NO_DATABASE => EtlErrorKind::Config,
                Some(_) => EtlErrorKind::Failed,
                None => client_failure_kind(source),
            },
            LoadError::RunPostgres { source, .. }
                if source.code().is_some_and(|c| c.code() == NO_SCHEMA) =>
            {
                EtlErrorKind::Config
            }
            LoadError::SetupTls { .. } | LoadError::ParseHost { .. } => EtlErrorKind::Config,
            LoadError::OpenSqlite { .. } => EtlErrorKind::Config,
            LoadError::RunSqlite { source, .. }
                if matches!(
                    source.sqlite_error_code(),
                    Some(
                        rusqlite::ErrorCode::ReadOnly
                            | rusqlite::ErrorCode::CannotOpen
                            | rusqlite::ErrorCode::PermissionDenied
                    )
                ) =>
            {
                EtlErrorKind::Config
            }
            _ => EtlErrorKind::Failed,
        }
    }

    /// What to create or fix, for a database or schema that does not exist.
    pub fn hint(&self) -> Option<String> {
        match self {
            LoadError::ConnectPostgres { source, .. }
                if source.code().is_some_and(|c| c.code() == NO_DATABASE) =>
            {
                let name = source
                    .as_db_error()
                    .and_then(|db| quoted_name(db.message()))
                    .map_or_else(String::new, |name| format!(" {name}"));
                Some(format!(
                    "create the database{name} on the server (CREATE DATABASE), or fix the \
                     database name at the end of the target URL"
                ))
            }
            LoadError::RunPostgres { source, table, .. }
                if source.code().is_some_and(|c| c.code() == NO_SCHEMA) =>
            {
                let schema = table.split_once('.').map_or("public", |(schema, _)| schema);
                Some(format!(
                    "create the schema (CREATE SCHEMA {}), or fix the schema in pipeline.table",
                    ident::quote(schema)
                ))
            }
            LoadError::RunSqlite { source, .. } | LoadError::OpenSqlite { source, .. }
                if matches!(
                    source.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) =>
            {
                Some(format!(
                    "another process holds a lock on the database file (waited {} s): let it \
                     finish or stop it, then run again",
                    sqlite::BUSY_TIMEOUT.as_secs()
                ))
            }
            LoadError::RunSqlite { source, .. } | LoadError::OpenSqlite { source, .. } => {
                sqlite_access_hint(source)
            }
            _ => None,
        }
    }
}

/// What to do when SQLite cannot write or create the database file: it needs the file and,
/// for its journal, the directory the file is in.
fn sqlite_access_hint(error: &rusqlite::Error) -> Option<String> {
    let rusqlite::Error::SqliteFailure(failure, _) = error else {
        return None;
    };
    match failure.code {
        _ if failure.extended_code == rusqlite::ffi::SQLITE_READONLY_DIRECTORY => Some(
            "the directory that holds the database file is not writable by this user; SQLite \
             creates its journal beside the file: make the directory writable, or put the \
             database elsewhere"
                .into(),
        ),
        rusqlite::ErrorCode::ReadOnly => Some(
            "the database file is read-only for this user: make it (and its directory, where \
             SQLite creates its journal) writable, or load into another file"
                .into(),
        ),
        rusqlite::ErrorCode::CannotOpen => Some(
            "SQLite cannot open or create the database file: check that its directory exists \
             and is writable by this user"
                .into(),
        ),
        _ => None,
    }
}

/// The kind of a PostgreSQL client error that the server did not send. tokio_postgres keeps its
/// error kinds private, so the kind is read from the error's text, which is the kind alone
/// (the detail is its source): "invalid connection string" (a URL that does not parse: a bad `sslmode`, port or host),
/// "invalid configuration" (no host; or "password missing": the server asked for a password
/// the URL does not hold), "authentication error" (the server's authentication method is
/// refused). Anything else (connect, DNS, TLS, timeout, closed) is the server being
/// unreachable.
fn client_failure_kind(error: &tokio_postgres::Error) -> EtlErrorKind {
    use std::error::Error as _;
    let kind = error.to_string();
    let cause = error.source().map(ToString::to_string).unwrap_or_default();
    match kind.as_str() {
        "invalid configuration" if cause == "password missing" => EtlErrorKind::Unauthorized,
        "authentication error" => EtlErrorKind::Unauthorized,
        "invalid connection string" | "invalid configuration" => EtlErrorKind::Config,
        _ => EtlErrorKind::Unreachable,
    }
}

/// The first `"name"` of a server message, quotes included.
fn quoted_name(message: &str) -> Option<&str> {
    let start = message.find('"')?;
    let end = start + 1 + message[start + 1..].find('"')?;
    Some(&message[start..=end])
}

/// What a load did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    /// The table did not exist and was created.
    pub created: bool,
    /// Rows inserted or updated (rows an upsert found unchanged are not counted).
    pub changed: u64,
}

/// What to load where.
#[derive(Debug, Clone)]
pub(crate) struct LoadPlan {
    /// The table as configured (`name` or `schema.name`).
    pub table: String,
    pub columns: Vec<Column>,
    /// Indexes of the key columns.
    pub keys: Vec<usize>,
    /// Rows in the staging file.
    pub rows: u64,
    /// Delete the table's rows before inserting.
    pub replace: bool,
    /// Asked right before the commit, so that a stopped run never commits (see
    /// [`CommitGate`]).
    pub gate: Arc<CommitGate>,
}

/// The point of no return of a load, shared by the load and whoever may stop its run: either
/// the run is stopped before the load commits, and it never will, or the commit has begun, and
/// the run must be let finish. Without it, a run stopped during the commit would be reported
/// rolled back although its rows were in.
#[derive(Debug, Default)]
pub struct CommitGate {
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    stopped: bool,
    committing: bool,
}

impl CommitGate {
    /// Called by a load right before it commits: false when the run was stopped.
    pub(crate) fn begin_commit(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.committing = !state.stopped;
        state.committing
    }

    /// Stops the run unless its commit has begun: true when the load will not commit.
    pub(crate) fn stop(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.stopped = !state.committing;
        state.stopped
    }
}

impl LoadPlan {
    /// `DELETE FROM` the table, for `replace`.
    pub(crate) fn delete_sql(&self) -> String {
        format!("DELETE FROM {}", self.quoted_table())
    }

    pub(crate) fn quoted_table(&self) -> String {
        ident::quote_table(&self.table)
    }

    /// `"a", "b", ...` for every column.
    pub(crate) fn column_list(&self) -> String {
        let names = self.columns.iter().map(|c| ident::quote(&c.name));
        names.collect::<Vec<_>>().join(", ")
    }

    pub(crate) fn key_list(&self) -> String {
        let names = self
            .keys
            .iter()
            .map(|&k| ident::quote(&self.columns[k].name));
        names.collect::<Vec<_>>().join(", ")
    }

    /// The non-key columns, quoted.
    pub(crate) fn value_columns(&self) -> Vec<String> {
        (0..self.columns.len())
            .filter(|i| !self.keys.contains(i))
            .map(|i| ident::quote(&self.columns[i].name))
            .collect()
    }

    /// `CREATE TABLE` with `sql_type` naming each column's type.
    pub(crate) fn create_table_sql(&self, sql_type: fn(ColumnType) -> &'static str) -> String {
        let mut parts: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let not_null = if self.keys.contains(&i) {
                    " NOT NULL"
                } else {
                    ""
                };
                format!("{} {}{not_null}", ident::quote(&c.name), sql_type(c.ty))
            })
            .collect();
        if !self.keys.is_empty() {
            parts.push(format!("PRIMARY KEY ({})", self.key_list()));
        }
        format!(
            "CREATE TABLE {} ({})",
            self.quoted_table(),
            parts.join(", ")
        )
    }
}

/// Whether values of type `ours` can go into a column of type `theirs`: the same type, or a
/// wider one (integer into real, date into timestamp), or text, which holds anything.
pub(crate) fn fits(ours: ColumnType, theirs: ColumnType) -> bool {
    use ColumnType::*;
    ours == theirs
        || theirs == Text
        || matches!((ours, theirs), (Integer, Real) | (Date, Timestamp))
}

/// A column of an existing table: its name and its type as the database declares it, mapped
/// to ours (`None` for a type we cannot write).
pub(crate) struct ExistingColumn {
    pub name: String,
    /// The type as declared, empty for an untyped SQLite column.
    pub declared: String,
    pub ty: Option<ColumnType>,
}

impl ExistingColumn {
    /// The declared type as messages name it.
    pub(crate) fn shown_type(&self) -> &str {
        if self.declared.is_empty() {
            "untyped"
        } else {
            &self.declared
        }
    }
}

/// Whether `theirs`, by the type its declared type maps to, holds values of type `ours`
/// (see [`fits`]): the rule of a database whose declared types say all there is.
pub(crate) fn holds(ours: ColumnType, theirs: &ExistingColumn) -> bool {
    theirs.ty.is_some_and(|t| fits(ours, t))
}

/// Checks an existing table against the source. `holds` says whether a column of the table can
/// hold values of a type (for most databases, [`holds`]).
pub(crate) fn check_columns(
    plan: &LoadPlan,
    existing: &[ExistingColumn],
    holds: fn(ColumnType, &ExistingColumn) -> bool,
    case_insensitive: bool,
) -> Result<(), LoadError> {
    let key = |name: &str| {
        if case_insensitive {
            name.to_lowercase()
        } else {
            name.to_string()
        }
    };
    let by_name: HashMap<String, &ExistingColumn> =
        existing.iter().map(|c| (key(&c.name), c)).collect();
    let mut problems = Vec::new();
    for column in &plan.columns {
        match by_name.get(&key(&column.name)) {
            None => problems.push(format!("column {} is missing", column.name)),
            // A column without values is all NULL, which any column holds.
            Some(_) if column.values == 0 => {}
            Some(theirs) if holds(column.ty, theirs) => {}
            Some(theirs) => problems.push(format!(
                "column {} is {} in the table but the source has {} values",
                column.name,
                theirs.shown_type(),
                column.ty
            )),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LoadError::MatchColumns {
            table: plan.table.clone(),
            problems,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_database_sqlite_cannot_write_gets_a_hint_about_permissions() {
        let failure = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        let hint = |code| {
            LoadError::RunSqlite {
                action: "write rows",
                table: "t".into(),
                source: failure(code),
            }
            .hint()
            .unwrap_or_default()
        };
        assert!(hint(rusqlite::ffi::SQLITE_READONLY_DIRECTORY).contains("directory"));
        assert!(hint(rusqlite::ffi::SQLITE_READONLY).contains("read-only"));
        let open = LoadError::OpenSqlite {
            path: "/x/etl.db".into(),
            source: failure(rusqlite::ffi::SQLITE_CANTOPEN),
        };
        assert!(open.hint().unwrap().contains("writable"));
    }

    #[test]
    fn a_locked_sqlite_database_gets_a_hint_about_the_lock() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        let err = LoadError::RunSqlite {
            action: "set the cache size",
            table: "t".into(),
            source: busy,
        };
        assert!(err.hint().unwrap().contains("another process holds a lock"));
    }

    #[test]
    fn the_gate_lets_exactly_one_of_stop_and_commit_win() {
        let gate = CommitGate::default();
        assert!(gate.stop());
        assert!(!gate.begin_commit(), "a stopped run never commits");
        let gate = CommitGate::default();
        assert!(gate.begin_commit());
        assert!(!gate.stop(), "a commit under way cannot be stopped");
    }

    /// A column with `values` non-NULL values, named as its header.
    pub(crate) fn column(name: &str, ty: ColumnType, values: u64) -> Column {
        Column {
            header: name.into(),
            name: name.into(),
            ty,
            declared: false,
            values,
        }
    }

    /// A plan for table `etl.t`.
    pub(crate) fn plan(columns: Vec<Column>, keys: Vec<usize>) -> LoadPlan {
        LoadPlan {
            table: "etl.t".into(),
            columns,
            keys,
            rows: 0,
            replace: false,
            gate: Arc::default(),
        }
    }

    #[test]
    fn create_table_quotes_and_keys() {
        let p = plan(
            vec![
                column("id", ColumnType::Integer, 1),
                column("order", ColumnType::Text, 1),
            ],
            vec![0],
        );
        let sql = p.create_table_sql(|t| {
            if t == ColumnType::Integer {
                "bigint"
            } else {
                "text"
            }
        });
        assert_eq!(
            sql,
            "CREATE TABLE \"etl\".\"t\" (\"id\" bigint NOT NULL, \"order\" text, PRIMARY KEY (\"id\"))"
        );
    }

    fn connect_error(url: &str) -> LoadError {
        let source = url.parse::<tokio_postgres::Config>().unwrap_err();
        LoadError::ConnectPostgres {
            target: url.into(),
            source,
        }
    }

    #[test]
    fn a_url_that_does_not_parse_is_a_configuration_error() {
        for url in [
            "postgres://u:FAKEpw@h:99999/d",
            "postgres://u:FAKEpw@h/d?sslmode=bogus",
            "postgres://u:FAKEpw@[::1/d",
        ] {
            assert_eq!(connect_error(url).kind(), EtlErrorKind::Config, "{url}");
        }
        let host = LoadError::ParseHost {
            target: "postgres://h".into(),
            host: "ho st".into(),
        };
        assert_eq!(host.kind(), EtlErrorKind::Config);
    }

    #[test]
    fn widening_fits_narrowing_does_not() {
        assert!(fits(ColumnType::Integer, ColumnType::Real));
        assert!(fits(ColumnType::Date, ColumnType::Text));
        assert!(!fits(ColumnType::Real, ColumnType::Integer));
        assert!(!fits(ColumnType::Text, ColumnType::Date));
    }

    #[test]
    fn mismatches_are_listed_together() {
        let p = plan(
            vec![
                column("a", ColumnType::Real, 5),
                column("b", ColumnType::Text, 5),
                column("c", ColumnType::Date, 0),
            ],
            vec![],
        );
        let existing = [
            ExistingColumn {
                name: "A".into(),
                declared: "INTEGER".into(),
                ty: Some(ColumnType::Integer),
            },
            ExistingColumn {
                name: "c".into(),
                declared: "BLOB".into(),
                ty: None,
            },
        ];
        let err = check_columns(&p, &existing, holds, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("column a is INTEGER in the table but the source has real values"));
        assert!(err.contains("column b is missing"), "{err}");
        assert!(
            !err.contains("column c"),
            "an all-NULL column fits anything: {err}"
        );
    }
}
