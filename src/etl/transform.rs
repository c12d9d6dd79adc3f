//! The transform step: name the columns, decide their types from the profile (see
//! [`super::infer`]), then read the source again and sort every record into the staging file
//! (clean rows, typed) or the rejects file (with line and reason). Fails, after writing the
//! rejects file, when more than `max_rejected` of the rows were rejected.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::config::{Format, PipelineConfig};
use super::error::EtlError;
use super::extract::{self, Extracted};
use super::ident;
use super::infer::Profile;
use super::observer::{LogLevel, Reporter};
use super::records::{Record, RecordReader};
use super::rejects::{RejectsWriter, WriteRejectsError};
use super::staging::{Staging, StagingWriter};

use super::value::{self, ColumnType, ParseFailure, Value};

/// How much of a bad value a reject reason quotes.
const QUOTED_VALUE_CHARS: usize = 40;

/// One column of the target table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Column {
    /// The header as the source names it.
    pub header: String,
    /// The SQL identifier (see [`super::ident`]).
    pub name: String,
    /// The type, inferred or from `types`.
    pub ty: ColumnType,
    /// Whether the type came from `types` rather than inference.
    pub declared: bool,
    /// How many records had a value (not NULL) in this column.
    pub values: u64,
}

/// Why transform failed.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// `key` or `types` names a column the source does not have.
    #[error("pipeline.{field}: the source has no column `{name}` (columns: {columns})")]
    FindColumn {
        /// `key` or `types`.
        field: &'static str,
        /// The name given.
        name: String,
        /// The source's column names.
        columns: String,
    },
    /// The rejects file could not be written.
    #[error(transparent)]
    WriteRejects(#[from] WriteRejectsError),
    /// The staging file could not be written.
    #[error("cannot write the staging file in the temp directory")]
    WriteStaging(#[source] std::io::Error),
    /// Too many rows were rejected; the rejects file is written and nothing was loaded.
    #[error(
        "{rejected} of {read} rows rejected, more than max_rejected = {max_rejected}; \
         nothing was loaded; see {} ({hint})",
        rejects.display()
    )]
    RejectTooMany {
        /// Rows rejected.
        rejected: u64,
        /// Rows read.
        read: u64,
        /// The allowed share.
        max_rejected: f64,
        /// The rejects file.
        rejects: PathBuf,
        /// What to do about the most common reason.
        hint: String,
    },
}

/// The result of the transform step, handed to load.
#[derive(Debug)]
pub struct Transformed {
    pub(crate) columns: Vec<Column>,
    pub(crate) keys: Vec<usize>,
    pub(crate) staging: Staging,
    pub(crate) rows_read: u64,
    pub(crate) rows_rejected: u64,
    pub(crate) rejects: PathBuf,
    pub(crate) started: Instant,
}

impl Transformed {
    /// The columns, in source order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Records read.
    pub fn rows_read(&self) -> u64 {
        self.rows_read
    }

    /// Records rejected (written to the rejects file).
    pub fn rows_rejected(&self) -> u64 {
        self.rows_rejected
    }

    /// Records that will be loaded.
    pub fn rows_accepted(&self) -> u64 {
        self.rows_read - self.rows_rejected
    }

    /// The rejects file, written on every run.
    pub fn rejects_path(&self) -> &Path {
        &self.rejects
    }
}

/// Names the columns and decides their types (cheap; runs before the pass).
pub(crate) fn plan_columns(
    config: &PipelineConfig,
    extracted: &Extracted,
) -> Result<(Vec<Column>, Vec<usize>), TransformError> {
    let headers = &extracted.headers;
    let names = ident::column_names(headers);
    let mut declared = vec![None; headers.len()];
    for (wanted, ty) in &config.types {
        declared[find_column("types", wanted, headers, &names)?] = Some(*ty);
    }
    let keys = key_columns(&config.key, headers, &names)?;
    let tallies = extracted.profile.columns();
    let columns = headers
        .iter()
        .zip(names)
        .zip(declared)
        .zip(tallies)
        .map(|(((header, name), declared), tally)| Column {
            header: header.clone(),
            name,
            ty: declared.unwrap_or_else(|| tally.infer(config.max_rejected)),
            declared: declared.is_some(),
            values: tally.non_empty(),
        })
        .collect();
    Ok((columns, keys))
}

/// The columns `key` names, given the source's `headers` and their SQL `names`.
pub(crate) fn key_columns(
    key: &[String],
    headers: &[String],
    names: &[String],
) -> Result<Vec<usize>, TransformError> {
    (key.iter())
        .map(|wanted| find_column("key", wanted, headers, names))
        .collect()
}

/// Finds a column by its header, its SQL name, or the SQL name its text would become.
fn find_column(
    field: &'static str,
    wanted: &str,
    headers: &[String],
    names: &[String],
) -> Result<usize, TransformError> {
    let normalized = ident::normalize(wanted, 0);
    headers
        .iter()
        .position(|h| h == wanted)
        .or_else(|| names.iter().position(|n| n == wanted))
        .or_else(|| names.iter().position(|n| *n == normalized))
        .ok_or_else(|| TransformError::FindColumn {
            field,
            name: wanted.to_string(),
            columns: names.join(", "),
        })
}

/// What the pass needs besides the extracted source.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub columns: Vec<Column>,
    pub keys: Vec<usize>,
    pub rejects: PathBuf,
    pub max_rejected: f64,
}

/// What transform's pass found, besides the staged rows.
#[derive(Debug, Clone)]
pub struct TransformReport {
    /// Records read.
    pub rows_read: u64,
    /// Records rejected (written to the rejects file).
    pub rows_rejected: u64,
    /// The rejects file, written on every run.
    pub rejects: PathBuf,
}

/// Reads every record again and sorts it into staging (through `out`) or rejects (blocking).
/// The staged rows are accepted, for load to read to their end, only when the rejects stay
/// within the threshold.
pub(crate) fn sort_records(
    extracted: Extracted,
    plan: &Plan,
    out: StagingWriter,
    reporter: &Reporter,
) -> Result<TransformReport, EtlError> {
    match sort_pass(extracted, plan, out, reporter, None)? {
        Sorted::Accepted(report) => Ok(report),
        Sorted::TypesChanged(_) => unreachable!("a pass without a preview keeps its types"),
    }
}

/// How a pass over types inferred from a preview ended.
pub(crate) enum Sorted {
    /// The types held for every record: the rows are staged and accepted.
    Accepted(TransformReport),
    /// The whole source infers other types than its first records did: nothing is accepted
    /// (load rolls back), and the source, now profiled whole, must be sorted again.
    TypesChanged(Extracted),
}

/// [`sort_records`], and with `preview` (the configuration) for a plan whose types were
/// inferred from the first records only: the pass then also profiles every record as extract
/// does, and accepts the rows only if the whole profile infers the same columns.
pub(crate) fn sort_pass(
    mut extracted: Extracted,
    plan: &Plan,
    mut out: StagingWriter,
    reporter: &Reporter,
    preview: Option<&PipelineConfig>,
) -> Result<Sorted, EtlError> {
    let input = extracted.source.open()?;
    let mut reader = match extracted.format {
        Format::Csv => RecordReader::csv(input)?.0,
        Format::Jsonl => RecordReader::jsonl(input, extracted.keys.clone(), false),
    };
    let mut rejects = RejectsWriter::create(&plan.rejects).map_err(TransformError::from)?;
    let mut is_key = vec![false; plan.columns.len()];
    plan.keys.iter().for_each(|&k| is_key[k] = true);
    let width = (extracted.format == Format::Csv).then_some(extracted.headers.len());
    let mut profile = Profile::new(extracted.headers.len());

    let mut rec = Record::default();
    let mut read = 0u64;
    let mut tally = RejectTally::default();
    while reader.next(&mut rec)? {
        read += 1;
        if preview.is_some() {
            extract::tally(&mut profile, &rec, width, &plan.keys);
        }
        match stage_row(&rec, &plan.columns, &is_key, &mut out) {
            Ok(()) => out.commit().map_err(TransformError::WriteStaging)?,
            Err(reject) => {
                tally.add(reject.cause);
                let raw = reader.raw(&rec);
                rejects
                    .write(rec.line, &reject.reason, &raw)
                    .map_err(TransformError::from)?;
            }
        }
        reporter.tick(read)?;
    }
    reporter.progress(read);
    let mut plan = std::borrow::Cow::Borrowed(plan);
    if let Some(config) = preview {
        profile.widen(extracted.headers.len());
        extracted.records = read;
        extracted.profile = profile;
        let (columns, _) = plan_columns(config, &extracted)?;
        // What load decided from: the name, the type, and whether the column has values at
        // all (a column without any is not checked against an existing table's type).
        let same = |a: &Column, b: &Column| {
            (&a.name, a.ty, a.values == 0) == (&b.name, b.ty, b.values == 0)
        };
        let held = columns.len() == plan.columns.len()
            && columns.iter().zip(&plan.columns).all(|(a, b)| same(a, b));
        if !held {
            // Dropping the writer fails load's reader, and dropping the rejects writer removes
            // its temp file.
            return Ok(Sorted::TypesChanged(extracted));
        }
        // The counts of the whole source, for the report.
        plan.to_mut().columns = columns;
        let columns = extracted.headers.len();
        reporter.log(
            LogLevel::Info,
            extract::counted(&extracted.label, read, columns),
        );
    }
    out.finish().map_err(TransformError::WriteStaging)?;
    let rejected = rejects.count();
    let rejects_path = rejects.finish().map_err(TransformError::from)?;
    report_outcome(reporter, &plan, read, (rejected, &tally), &rejects_path)?;
    out.accept().map_err(TransformError::WriteStaging)?;
    Ok(Sorted::Accepted(TransformReport {
        rows_read: read,
        rows_rejected: rejected,
        rejects: rejects_path,
    }))
}

/// Logs the column types and the rejects; fails over the threshold.
fn report_outcome(
    reporter: &Reporter,
    plan: &Plan,
    read: u64,
    (rejected, tally): (u64, &RejectTally),
    rejects: &Path,
) -> Result<(), TransformError> {
    for c in &plan.columns {
        let how = if c.declared { "declared" } else { "inferred" };
        let nulls = read.saturating_sub(c.values);
        reporter.log(
            LogLevel::Debug,
            format!("column {}: {} ({how}), {nulls} NULL", c.name, c.ty),
        );
    }
    if rejected as f64 > plan.max_rejected * read as f64 {
        return Err(TransformError::RejectTooMany {
            rejected,
            read,
            max_rejected: plan.max_rejected,
            rejects: rejects.to_path_buf(),
            hint: tally.hint(&plan.columns),
        });
    }
    if rejected > 0 {
        let msg = format!(
            "{rejected} of {read} rows rejected; see {}",
            rejects.display()
        );
        reporter.log(LogLevel::Warning, msg);
    }
    Ok(())
}

/// Why a record was rejected: its reason for the rejects file, and its cause for the tally.
struct Reject {
    reason: String,
    cause: Cause,
}

#[derive(Debug, Clone, Copy)]
enum Cause {
    /// The record is malformed: wrong number of fields, bad quoting, invalid JSON.
    Record,
    /// A key column is empty.
    EmptyKey,
    /// The value in this column did not fit its type.
    Value(usize),
}

impl Reject {
    fn record(reason: String) -> Self {
        Reject {
            reason,
            cause: Cause::Record,
        }
    }
}

/// How many records were rejected for each cause, to name the most common one.
#[derive(Debug, Default)]
struct RejectTally {
    /// Malformed records.
    records: u64,
    /// Records with an empty key column.
    empty_keys: u64,
    /// Values that did not fit their column, per column.
    columns: Vec<u64>,
}

impl RejectTally {
    fn add(&mut self, cause: Cause) {
        match cause {
            Cause::Record => self.records += 1,
            Cause::EmptyKey => self.empty_keys += 1,
            Cause::Value(i) => {
                if self.columns.len() <= i {
                    self.columns.resize(i + 1, 0);
                }
                self.columns[i] += 1;
            }
        }
    }

    /// What to do about the most common cause.
    fn hint(&self, columns: &[Column]) -> String {
        let worst = self
            .columns
            .iter()
            .enumerate()
            .max_by_key(|&(i, n)| (*n, std::cmp::Reverse(i)));
        let other = self.records.max(self.empty_keys);
        match worst {
            Some((i, &n)) if n > other => {
                let c = &columns[i];
                if c.declared {
                    format!(
                        "{n} have a value that is not a valid {} in column {}, whose type is \
                         declared in `types`: fix the data or the declared type",
                        c.ty, c.name
                    )
                } else {
                    format!(
                        "{n} have a value that is not a valid {} in column {}: set \
                         `types = {{ {} = \"text\" }}` if those values are valid",
                        c.ty, c.name, c.name
                    )
                }
            }
            _ if self.empty_keys > self.records => format!(
                "{} have an empty key column: every row needs a value in each `key` column",
                self.empty_keys
            ),
            _ => format!(
                "{} are malformed records (wrong number of fields, bad quoting or invalid \
                 JSON): check the file's format and delimiter",
                self.records
            ),
        }
    }
}

/// Stages one record, or says why it is rejected.
fn stage_row(
    rec: &Record,
    columns: &[Column],
    is_key: &[bool],
    out: &mut StagingWriter,
) -> Result<(), Reject> {
    if let Some(problem) = &rec.problem {
        return Err(Reject::record(problem.clone()));
    }
    if rec.fields.len() != columns.len() {
        return Err(Reject::record(format!(
            "expected {} fields, found {}",
            columns.len(),
            rec.fields.len()
        )));
    }
    // One check of the whole record spares one per text field; a record that fails it is
    // checked field by field to name the field.
    let clean_text = value::check_text(rec.fields.bytes()).is_ok();
    out.begin(rec.line, columns.len());
    for (i, ((field, column), &key)) in rec.fields.iter().zip(columns).zip(is_key).enumerate() {
        if value::trim(field).is_empty() {
            if key {
                return Err(Reject {
                    reason: format!("key column {} is empty", column.name),
                    cause: Cause::EmptyKey,
                });
            }
            out.null();
            continue;
        }
        let parsed = match column.ty {
            ColumnType::Text if clean_text => Ok(Value::Text(field)),
            ty => value::parse(ty, field),
        };
        match parsed {
            Ok(v) => out.value(v),
            Err(failure) => {
                return Err(Reject {
                    reason: describe(failure, column, field),
                    cause: Cause::Value(i),
                })
            }
        }
    }
    Ok(())
}

fn describe(failure: ParseFailure, column: &Column, field: &[u8]) -> String {
    match failure {
        ParseFailure::InvalidUtf8 => format!("column {}: not valid UTF-8", column.name),
        ParseFailure::NulByte => format!("column {}: holds a NUL byte", column.name),
        ParseFailure::Mismatch => {
            let text = escaped_text(value::trim(field));
            let mut quoted: String = text.chars().take(QUOTED_VALUE_CHARS).collect();
            if text.chars().count() > QUOTED_VALUE_CHARS {
                quoted.push('…');
            }
            format!(
                "column {} ({}): `{quoted}` is not a valid {}",
                column.name, column.ty, column.ty
            )
        }
    }
}

/// `bytes` as text for a reason: valid UTF-8 as it is, control characters (a NUL, a tab) and
/// bytes that are not UTF-8 as `\xNN`, so the reason names the bytes the source holds (no
/// U+FFFD in their place, no raw control byte in the rejects file).
fn escaped_text(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_ascii_control() {
                text.push_str(&format!("\\x{:02X}", c as u32));
            } else {
                text.push(c);
            }
        }
        for b in chunk.invalid() {
            text.push_str(&format!("\\x{b:02X}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_quotes_invalid_utf8_as_escapes() {
        assert_eq!(escaped_text(b"a\xff\xfe\xc3\xa9b"), "a\\xFF\\xFEéb");
        assert_eq!(escaped_text(b"7\0\t"), "7\\x00\\x09");
    }

    fn column(name: &str, ty: ColumnType, declared: bool) -> Column {
        Column {
            header: name.into(),
            name: name.into(),
            ty,
            declared,
            values: 0,
        }
    }

    #[test]
    fn the_hint_names_the_most_common_cause() {
        let columns = [
            column("id", ColumnType::Integer, false),
            column("amount", ColumnType::Real, true),
        ];
        let mut tally = RejectTally::default();
        tally.add(Cause::Record);
        assert!(tally.hint(&columns).contains("1 are malformed records"));
        tally.add(Cause::Value(0));
        tally.add(Cause::Value(0));
        let hint = tally.hint(&columns);
        assert!(
            hint.contains("2 have a value that is not a valid integer in column id")
                && hint.contains("types = { id = \"text\" }"),
            "{hint}"
        );
        for _ in 0..3 {
            tally.add(Cause::Value(1));
        }
        assert!(tally.hint(&columns).contains("declared in `types`"));
        for _ in 0..4 {
            tally.add(Cause::EmptyKey);
        }
        assert!(tally.hint(&columns).contains("4 have an empty key column"));
    }
}
