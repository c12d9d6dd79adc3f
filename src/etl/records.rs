//! Reading records one at a time from CSV or JSON Lines, each with the line it starts on.
//!
//! A record is a row of byte fields; nothing is kept from one record to the next, so memory
//! does not grow with the file. JSON Lines values become fields as follows: a string is its
//! text, a number its literal, a boolean `true`/`false`, `null` or a missing key an empty field
//! (NULL), and an array or object its JSON text.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read};

use csv_core::ReadRecordResult;

use super::source::ReadError;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
const READ_BUFFER: usize = 256 * 1024;

/// The fields of one record, stored end to end.
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    data: Vec<u8>,
    ends: Vec<usize>,
    len: usize,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            data: vec![0; 1024],
            ends: vec![0; 64],
            len: 0,
        }
    }
}

impl Fields {
    /// Number of fields.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The fields in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let ends = &self.ends[..self.len];
        ends.iter().scan(0, move |start, &end| {
            let field = &self.data[*start..end];
            *start = end;
            Some(field)
        })
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    fn push_field(&mut self, field: &[u8]) {
        let start = if self.len == 0 {
            0
        } else {
            self.ends[self.len - 1]
        };
        let end = start + field.len();
        if self.data.len() < end {
            self.data.resize(end.max(self.data.len() * 2), 0);
        }
        self.data[start..end].copy_from_slice(field);
        if self.ends.len() == self.len {
            self.ends.resize(self.len * 2 + 1, 0);
        }
        self.ends[self.len] = end;
        self.len += 1;
    }
}

/// One record of the source.
#[derive(Debug, Default)]
pub(crate) struct Record {
    /// The fields, in column order.
    pub fields: Fields,
    /// 1-based line of the source where the record starts (the header is line 1).
    pub line: u64,
    /// Why the record cannot be used at all (a JSON Lines line that is not an object).
    pub problem: Option<String>,
}

/// The column names of a JSON Lines source, in the order the keys were first seen.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyIndex {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl KeyIndex {
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    fn get_or_add(&mut self, key: &str, add: bool) -> Option<usize> {
        if let Some(&i) = self.index.get(key) {
            return Some(i);
        }
        if !add {
            return None;
        }
        self.names.push(key.to_string());
        self.index.insert(key.to_string(), self.names.len() - 1);
        Some(self.names.len() - 1)
    }
}

/// Reads a CSV or JSON Lines source.
pub(crate) enum RecordReader {
    Csv(CsvReader),
    Jsonl(JsonlReader),
}

impl RecordReader {
    /// A CSV reader, and the header row (a UTF-8 byte order mark is dropped).
    pub(crate) fn csv(input: Box<dyn Read + Send>) -> Result<(Self, Vec<String>), ReadError> {
        let mut reader = CsvReader {
            input,
            core: Box::new(csv_core::Reader::new()),
            buf: vec![0; READ_BUFFER],
            pos: 0,
            len: 0,
            eof: false,
            line: 1,
        };
        let mut header = Record::default();
        if !reader.next(&mut header)? {
            return Ok((RecordReader::Csv(reader), Vec::new()));
        }
        let names = header
            .fields
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let field = if i == 0 {
                    field.strip_prefix(UTF8_BOM).unwrap_or(field)
                } else {
                    field
                };
                String::from_utf8_lossy(field).into_owned()
            })
            .collect();
        Ok((RecordReader::Csv(reader), names))
    }

    /// A JSON Lines reader. With `learn`, keys not in `keys` become new columns; without it,
    /// a record with such a key is a problem record.
    pub(crate) fn jsonl(input: Box<dyn Read + Send>, keys: KeyIndex, learn: bool) -> Self {
        RecordReader::Jsonl(JsonlReader {
            input: BufReader::with_capacity(READ_BUFFER, input),
            line: Vec::new(),
            line_no: 0,
            keys,
            learn,
            values: Vec::new(),
        })
    }

    /// Reads the next record into `rec`; false at the end.
    pub(crate) fn next(&mut self, rec: &mut Record) -> Result<bool, ReadError> {
        match self {
            RecordReader::Csv(reader) => reader.next(rec),
            RecordReader::Jsonl(reader) => reader.next(rec),
        }
    }

    /// The record as it stood in the source, for the rejects file (CSV records are written
    /// back as CSV, which may quote differently from the original).
    pub(crate) fn raw(&self, rec: &Record) -> Vec<u8> {
        match self {
            RecordReader::Csv(_) => {
                let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
                let _ = writer.write_record(rec.fields.iter());
                let mut out = writer.into_inner().unwrap_or_default();
                while out.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
                    out.pop();
                }
                out
            }
            RecordReader::Jsonl(reader) => reader.line.trim_ascii_end().to_vec(),
        }
    }

    /// The keys of a JSON Lines source (empty for CSV).
    pub(crate) fn into_keys(self) -> KeyIndex {
        match self {
            RecordReader::Csv(_) => KeyIndex::default(),
            RecordReader::Jsonl(reader) => reader.keys,
        }
    }
}

/// Reads CSV with `csv_core`, counting lines itself: blank lines between records are skipped
/// here, so each record's line is the line its first field is on.
pub(crate) struct CsvReader {
    input: Box<dyn Read + Send>,
    core: Box<csv_core::Reader>,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    eof: bool,
    /// The line of the next unread byte.
    line: u64,
}

impl CsvReader {
    fn next(&mut self, rec: &mut Record) -> Result<bool, ReadError> {
        let at = self.line;
        self.read(rec)
            .map_err(|source| ReadError::ReadRecord { line: at, source })
    }

    fn read(&mut self, rec: &mut Record) -> io::Result<bool> {
        if !self.skip_blank_lines()? {
            return Ok(false);
        }
        rec.line = self.line;
        rec.problem = None;
        let fields = &mut rec.fields;
        let (mut out_len, mut ends_len) = (0, 0);
        loop {
            self.fill()?;
            let input = &self.buf[self.pos..self.len];
            let (result, n_in, n_out, n_ends) = self.core.read_record(
                input,
                &mut fields.data[out_len..],
                &mut fields.ends[ends_len..],
            );
            self.line += count_newlines(&input[..n_in]);
            self.pos += n_in;
            out_len += n_out;
            ends_len += n_ends;
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => fields.data.resize(fields.data.len() * 2, 0),
                ReadRecordResult::OutputEndsFull => fields.ends.resize(fields.ends.len() * 2, 0),
                ReadRecordResult::Record => {
                    fields.len = ends_len;
                    return Ok(true);
                }
                ReadRecordResult::End => return Ok(false),
            }
        }
    }

    /// Refills the buffer when it is used up; an empty buffer afterwards means the end.
    fn fill(&mut self) -> io::Result<()> {
        if self.pos < self.len || self.eof {
            return Ok(());
        }
        self.pos = 0;
        self.len = loop {
            match self.input.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.eof = self.len == 0;
        Ok(())
    }

    /// Consumes line ends before the next record; false at the end of the input.
    fn skip_blank_lines(&mut self) -> io::Result<bool> {
        loop {
            self.fill()?;
            if self.pos == self.len {
                return Ok(false);
            }
            let rest = &self.buf[self.pos..self.len];
            let blank = rest
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            self.line += count_newlines(&rest[..blank]);
            self.pos += blank;
            if self.pos < self.len {
                return Ok(true);
            }
        }
    }
}

fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Reads JSON Lines, one object per line; blank lines are skipped.
pub(crate) struct JsonlReader {
    input: BufReader<Box<dyn Read + Send>>,
    line: Vec<u8>,
    line_no: u64,
    keys: KeyIndex,
    learn: bool,
    values: Vec<Option<Vec<u8>>>,
}

impl JsonlReader {
    fn next(&mut self, rec: &mut Record) -> Result<bool, ReadError> {
        loop {
            self.line.clear();
            let n = self
                .input
                .read_until(b'\n', &mut self.line)
                .map_err(|source| ReadError::ReadRecord {
                    line: self.line_no + 1,
                    source,
                })?;
            if n == 0 {
                return Ok(false);
            }
            self.line_no += 1;
            if !self.line.trim_ascii().is_empty() {
                break;
            }
        }
        rec.line = self.line_no;
        rec.fields.clear();
        rec.problem = self.parse_line().err();
        if rec.problem.is_none() {
            for value in &self.values {
                rec.fields.push_field(value.as_deref().unwrap_or_default());
            }
        }
        Ok(true)
    }

    /// Fills `values` from the current line, one slot per known key.
    fn parse_line(&mut self) -> Result<(), String> {
        let Entries(entries) =
            serde_json::from_slice(&self.line).map_err(|e| match e.classify() {
                serde_json::error::Category::Data => "the line is not a JSON object".to_string(),
                _ => format!("invalid JSON: {e}"),
            })?;
        self.values.clear();
        for (key, value) in entries {
            let index = self
                .keys
                .get_or_add(&key, self.learn)
                .ok_or_else(|| format!("unexpected key `{key}`"))?;
            if self.values.len() <= index {
                self.values.resize(index + 1, None);
            }
            self.values[index] = field_text(value);
        }
        self.values.resize(self.keys.names.len(), None);
        Ok(())
    }
}

/// The entries of one JSON object in the order they are written (a later duplicate wins when
/// the values are placed).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EntriesVisitor)
    }
}

struct EntriesVisitor;

impl<'de> serde::de::Visitor<'de> for EntriesVisitor {
    type Value = Entries;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Entries(entries))
    }
}

fn field_text(value: serde_json::Value) -> Option<Vec<u8>> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.into_bytes()),
        serde_json::Value::Bool(b) => Some(if b {
            b"true".to_vec()
        } else {
            b"false".to_vec()
        }),
        serde_json::Value::Number(n) => Some(n.to_string().into_bytes()),
        other => Some(other.to_string().into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(mut reader: RecordReader) -> Vec<(u64, Vec<String>, Option<String>)> {
        let mut rec = Record::default();
        let mut out = Vec::new();
        while reader.next(&mut rec).unwrap() {
            let fields = rec
                .fields
                .iter()
                .map(|f| String::from_utf8_lossy(f).into_owned());
            out.push((rec.line, fields.collect(), rec.problem.clone()));
        }
        out
    }

    #[test]
    fn csv_records_carry_their_start_line() {
        let data = "\u{feff}a,b\n1,\"x\ny\"\n\n2,3\n";
        let (reader, header) = RecordReader::csv(Box::new(data.as_bytes())).unwrap();
        assert_eq!(header, ["a", "b"]);
        let rows = read_all(reader);
        assert_eq!(rows[0].0, 2);
        assert_eq!(rows[0].1, ["1", "x\ny"]);
        assert_eq!(rows[1].0, 5);
    }

    #[test]
    fn csv_raw_record_is_re_encoded() {
        let (mut reader, _) = RecordReader::csv(Box::new(&b"a,b\n1,\"x,y\"\n"[..])).unwrap();
        let mut rec = Record::default();
        assert!(reader.next(&mut rec).unwrap());
        assert_eq!(reader.raw(&rec), b"1,\"x,y\"");
    }

    #[test]
    fn jsonl_learns_keys_and_maps_values() {
        let data = "{\"a\": 1, \"b\": \"x\"}\n\n{\"b\": null, \"d\": [1,2], \"c\": 0, \"a\": true}\nnope\n7\n";
        let mut reader = RecordReader::jsonl(Box::new(data.as_bytes()), KeyIndex::default(), true);
        let mut rec = Record::default();
        let mut rows = Vec::new();
        while reader.next(&mut rec).unwrap() {
            let fields: Vec<String> = rec
                .fields
                .iter()
                .map(|f| String::from_utf8_lossy(f).into())
                .collect();
            rows.push((rec.line, fields, rec.problem.clone()));
        }
        assert_eq!(rows[0], (1, vec!["1".into(), "x".into()], None));
        let second = vec!["true".into(), "".into(), "[1,2]".into(), "0".into()];
        assert_eq!(rows[1], (3, second, None));
        assert_eq!(rows[2].0, 4);
        assert!(rows[2].2.as_deref().unwrap().starts_with("invalid JSON"));
        assert_eq!(rows[3].2.as_deref(), Some("the line is not a JSON object"));
        assert_eq!(reader.into_keys().names(), ["a", "b", "d", "c"]);
    }

    #[test]
    fn jsonl_without_learning_flags_unknown_keys() {
        let mut keys = KeyIndex::default();
        keys.get_or_add("a", true);
        let reader = RecordReader::jsonl(Box::new(&b"{\"a\":1,\"z\":2}\n"[..]), keys, false);
        let rows = read_all(reader);
        assert_eq!(rows[0].2.as_deref(), Some("unexpected key `z`"));
    }
}
