//! The extract step: make the source readable locally, read its header, and read every record
//! once to count them and to tally what each column's values look like (the profile that
//! transform infers the types from). Memory stays flat: one record at a time.

use std::time::Instant;

use super::config::Format;
use super::error::EtlError;
use super::infer::Profile;
use super::observer::{LogLevel, Reporter};
use super::records::{KeyIndex, Record, RecordReader};
use super::source::{LocalSource, ReadError};
use super::value::{self, classify};
use super::{ident, transform};

/// The result of the extract step, handed to transform.
#[derive(Debug)]
pub struct Extracted {
    pub(crate) source: LocalSource,
    pub(crate) format: Format,
    pub(crate) label: String,
    pub(crate) headers: Vec<String>,
    pub(crate) keys: KeyIndex,
    pub(crate) records: u64,
    pub(crate) profile: Profile,
    pub(crate) started: Instant,
    /// False when extract read only the first records (see `Pipeline::run_all`).
    pub(crate) complete: bool,
}

impl Extracted {
    /// The column headers as the source names them.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// How many records the source holds (the header row is not one).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The source's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The source as it may be printed (URLs redacted).
    pub fn source_label(&self) -> &str {
        &self.label
    }

    /// What each column's values look like.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }
}

/// What one pass over the source found.
pub(crate) struct Scan {
    pub headers: Vec<String>,
    pub keys: KeyIndex,
    pub records: u64,
    pub profile: Profile,
    /// False when the pass stopped at its `limit` before the end of the source.
    pub complete: bool,
}

/// Reads every record once, or the first `limit` of them (blocking). `key` names the key
/// columns (as configured): a CSV record with an empty key will be rejected whole, so its
/// values do not take part in inference.
pub(crate) fn scan(
    source: &LocalSource,
    format: Format,
    label: &str,
    reporter: &Reporter,
    limit: Option<u64>,
    key: &[String],
) -> Result<Scan, EtlError> {
    let input = source.open()?;
    let (mut reader, csv_headers) = match format {
        Format::Csv => {
            let (reader, headers) = RecordReader::csv(input)?;
            (reader, Some(headers))
        }
        Format::Jsonl => (RecordReader::jsonl(input, KeyIndex::default(), true), None),
    };
    let mut profile = Profile::new(csv_headers.as_ref().map_or(0, Vec::len));
    let width = csv_headers.as_ref().map(Vec::len);
    // A key the source lacks fails the run in transform, before any row is sorted.
    // TODO: JSON Lines sources learn their columns as they go, so their records with an empty
    // key still count in inference; resolving the key names per record would remove it.
    let key_columns = csv_headers.as_ref().map_or_else(Vec::new, |headers| {
        let names = ident::column_names(headers);
        transform::key_columns(key, headers, &names).unwrap_or_default()
    });
    let mut rec = Record::default();
    let mut records = 0u64;
    let mut complete = true;
    while reader.next(&mut rec)? {
        records += 1;
        tally(&mut profile, &rec, width, &key_columns);
        reporter.tick(records)?;
        if limit.is_some_and(|limit| records >= limit) {
            // At the end already when nothing follows.
            complete = !reader.next(&mut rec)?;
            break;
        }
    }
    reporter.progress(records);
    let keys = reader.into_keys();
    let headers = csv_headers.unwrap_or_else(|| keys.names().to_vec());
    if headers.is_empty() {
        return Err(ReadError::FindColumns {
            label: label.to_string(),
        }
        .into());
    }
    profile.widen(headers.len());
    if complete {
        reporter.log(LogLevel::Info, counted(label, records, headers.len()));
    }
    Ok(Scan {
        headers,
        keys,
        records,
        profile,
        complete,
    })
}

/// The line that says what a whole pass over the source found.
pub(crate) fn counted(label: &str, records: u64, columns: usize) -> String {
    format!("{label}: {records} records, {columns} columns")
}

/// Counts the record's fields in the profile. Records of the wrong width, with a problem or
/// with an empty field in one of the `key_columns` will be rejected whole, so they do not take
/// part in inference.
pub(crate) fn tally(
    profile: &mut Profile,
    rec: &Record,
    width: Option<usize>,
    key_columns: &[usize],
) {
    if rec.problem.is_some() || width.is_some_and(|w| w != rec.fields.len()) {
        return;
    }
    let empty = |k: usize| rec.fields.get(k).is_none_or(|f| value::trim(f).is_empty());
    if key_columns.iter().any(|&k| empty(k)) {
        return;
    }
    profile.widen(rec.fields.len());
    for (i, field) in rec.fields.iter().enumerate() {
        profile.column_mut(i).add(classify(field));
    }
}
