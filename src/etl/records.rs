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

/// The fields of one record: their bytes in `data`, each at a span.
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    /// The fields' bytes (for CSV read by the fast path, with the commas between them).
    data: Vec<u8>,
    /// How much of `data` the record uses.
    used: usize,
    spans: Vec<(usize, usize)>,
    /// Scratch for `csv_core`'s field ends.
    ends: Vec<usize>,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            data: vec![0; 1024],
            used: 0,
            spans: Vec::with_capacity(64),
            ends: vec![0; 64],
        }
    }
}

impl Fields {
    /// Number of fields.
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Field `index`, if the record has that many.
    pub(crate) fn get(&self, index: usize) -> Option<&[u8]> {
        let &(start, end) = self.spans.get(index)?;
        Some(&self.data[start..end])
    }

    /// The fields in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.spans
            .iter()
            .map(|&(start, end)| &self.data[start..end])
    }

    /// Every byte of the record's fields (and, from the fast path, the commas between them):
    /// one UTF-8 check here covers every field, since field bounds are ASCII.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.data[..self.used]
    }

    fn clear(&mut self) {
        self.used = 0;
        self.spans.clear();
    }

    fn push_field(&mut self, field: &[u8]) {
        let start = self.used;
        let end = start + field.len();
        if self.data.len() < end {
            self.data.resize(end.max(self.data.len() * 2), 0);
        }
        self.data[start..end].copy_from_slice(field);
        self.spans.push((start, end));
        self.used = end;
    }

    /// Takes a line without quotes: copies it and splits it at every comma.
    fn set_split(&mut self, line: &[u8]) {
        if self.data.len() < line.len() {
            self.data.resize(line.len().max(self.data.len() * 2), 0);
        }
        self.data[..line.len()].copy_from_slice(line);
        self.used = line.len();
        self.spans.clear();
        let mut start = 0;
        for comma in memchr::memchr_iter(b',', line) {
            self.spans.push((start, comma));
            start = comma + 1;
        }
        self.spans.push((start, line.len()));
    }

    /// Takes `count` fields that `csv_core` wrote end to end.
    fn set_from_ends(&mut self, used: usize, count: usize) {
        self.used = used;
        self.spans.clear();
        let mut start = 0;
        for &end in &self.ends[..count] {
            self.spans.push((start, end));
            start = end;
        }
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
        Self::csv_buffered(input, READ_BUFFER)
    }

    fn csv_buffered(
        input: Box<dyn Read + Send>,
        buffer: usize,
    ) -> Result<(Self, Vec<String>), ReadError> {
        let mut reader = CsvReader {
            input,
            core: Box::new(csv_core::Reader::new()),
            buf: vec![0; buffer],
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

/// Reads CSV and counts lines itself, so each record's line is the line its first field is
/// on, also after blank lines (which are skipped). A line without quotes or bare CRs that lies
/// whole in the buffer is split with `memchr`; any other record goes through `csv_core`.
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
        if self.read_plain_line(&mut rec.fields) {
            return Ok(true);
        }
        self.read_with_core(rec)
    }

    /// The fast path; false when the next record needs the full parser.
    fn read_plain_line(&mut self, fields: &mut Fields) -> bool {
        let rest = &self.buf[self.pos..self.len];
        let Some(newline) = memchr::memchr(b'\n', rest) else {
            return false;
        };
        let line = &rest[..newline];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if memchr::memchr2(b'"', b'\r', line).is_some() {
            return false;
        }
        fields.set_split(line);
        self.pos += newline + 1;
        self.line += 1;
        true
    }

    /// The full parser. A record that ends at the end of the input inside a quoted field gets
    /// a problem saying so (`csv_core` returns it as a record of whatever fields it has).
    fn read_with_core(&mut self, rec: &mut Record) -> io::Result<bool> {
        let fields = &mut rec.fields;
        let (mut used, mut count) = (0, 0);
        let mut quoting = Quoting::FieldStart;
        loop {
            self.fill()?;
            let input = &self.buf[self.pos..self.len];
            let (result, n_in, n_out, n_ends) =
                self.core
                    .read_record(input, &mut fields.data[used..], &mut fields.ends[count..]);
            quoting = quoting.after(&input[..n_in]);
            self.line += count_newlines(&input[..n_in]);
            self.pos += n_in;
            used += n_out;
            count += n_ends;
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => fields.data.resize(fields.data.len() * 2, 0),
                ReadRecordResult::OutputEndsFull => fields.ends.resize(fields.ends.len() * 2, 0),
                ReadRecordResult::Record => {
                    fields.set_from_ends(used, count);
                    // An empty input is the end: the record was not ended by a line end.
                    if input.is_empty() && quoting == Quoting::Quoted {
                        rec.problem = Some(UNCLOSED_QUOTE.to_string());
                    }
                    return Ok(true);
                }
                ReadRecordResult::End => return Ok(false),
            }
        }
    }

    /// Refills the buffer when it is used up; an empty buffer afterwards means the end. A
    /// partial line at the end of the buffer is moved to the front first, so the fast path
    /// sees whole lines.
    fn fill(&mut self) -> io::Result<()> {
        if self.pos < self.len || self.eof {
            return Ok(());
        }
        self.pos = 0;
        self.len = read_retrying(&mut self.input, &mut self.buf)?;
        self.eof = self.len == 0;
        Ok(())
    }

    /// Moves the unread bytes to the front and reads more after them, so a line cut by the
    /// buffer's end is whole again. No-op at the end of the input.
    fn refill_keeping_rest(&mut self) -> io::Result<()> {
        if self.eof {
            return Ok(());
        }
        self.buf.copy_within(self.pos..self.len, 0);
        self.len -= self.pos;
        self.pos = 0;
        let n = read_retrying(&mut self.input, &mut self.buf[self.len..])?;
        self.len += n;
        self.eof = n == 0;
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
            if self.pos == self.len {
                continue;
            }
            // Keep a whole line in view for the fast path when one fits in the buffer.
            let rest = &self.buf[self.pos..self.len];
            if memchr::memchr(b'\n', rest).is_none() && self.pos > 0 {
                self.refill_keeping_rest()?;
            }
            return Ok(true);
        }
    }
}

/// The reason of a record whose quoted field runs to the end of the input.
pub(crate) const UNCLOSED_QUOTE: &str =
    "a quoted field is not closed: the file ends before its closing `\"`";

/// Where the CSV parser stands within a record, mirrored from the bytes it consumed (RFC 4180
/// quoting, as `csv_core` reads it: a `"` opens a quoted field only at a field's start, `""`
/// inside one is a quote, and a `"` elsewhere is an ordinary byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

impl Quoting {
    fn after(mut self, bytes: &[u8]) -> Quoting {
        let mut rest = bytes;
        while let Some((&b, tail)) = rest.split_first() {
            if self == Quoting::Quoted {
                // Inside quotes only the next `"` matters.
                let Some(at) = memchr::memchr(b'"', rest) else {
                    return self;
                };
                rest = &rest[at + 1..];
                self = Quoting::QuoteInQuoted;
                continue;
            }
            let ends_field = matches!(b, b',' | b'\n' | b'\r');
            self = match self {
                Quoting::FieldStart if b == b'"' => Quoting::Quoted,
                Quoting::QuoteInQuoted if b == b'"' => Quoting::Quoted,
                _ if ends_field => Quoting::FieldStart,
                _ => Quoting::Unquoted,
            };
            rest = tail;
        }
        self
    }
}

fn read_retrying(input: &mut Box<dyn Read + Send>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match input.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn count_newlines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
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
    use std::io;

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

    /// Hands out at most 7 bytes per read, to cut lines and quoted fields everywhere.
    struct Trickle(&'static [u8]);

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(7).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn fast_and_full_parsers_agree_across_buffer_cuts() {
        let data: &'static [u8] =
            b"h1,h2,h3\r\nplain,row,one\r\n\r\n\"quoted, comma\",\"two\nlines\",x\n\
            a,,\"\"\"\"\nlonger plain line here,with,three\n\"q\",z,end";
        let expected: Vec<Vec<String>> = csv::ReaderBuilder::new()
            .from_reader(data)
            .records()
            .map(|r| r.unwrap().iter().map(String::from).collect())
            .collect();
        for buffer in [16, 64, 1024] {
            let (mut reader, header) =
                RecordReader::csv_buffered(Box::new(Trickle(data)), buffer).unwrap();
            assert_eq!(header, ["h1", "h2", "h3"]);
            let mut rec = Record::default();
            let mut rows = Vec::new();
            let mut lines = Vec::new();
            while reader.next(&mut rec).unwrap() {
                rows.push(
                    rec.fields
                        .iter()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect::<Vec<_>>(),
                );
                lines.push(rec.line);
            }
            assert_eq!(rows, expected, "buffer {buffer}");
            assert_eq!(lines, [2, 4, 6, 7, 8], "buffer {buffer}");
        }
    }

    #[test]
    fn an_unclosed_quote_at_the_end_is_the_records_problem() {
        for data in [
            &b"a,b\n1,x\n\"2,y\n"[..],
            b"a,b\n1,x\n2,\"y\n3,z",
            b"a,b\n1,\"x\"\"\n",
        ] {
            for buffer in [4, 1024] {
                let (reader, _) =
                    RecordReader::csv_buffered(Box::new(Trickle(data)), buffer).unwrap();
                let rows = read_all(reader);
                let (last, before) = rows.split_last().unwrap();
                assert!(before.iter().all(|r| r.2.is_none()), "{data:?}");
                assert_eq!(last.2.as_deref(), Some(UNCLOSED_QUOTE), "{data:?}");
            }
        }
    }

    #[test]
    fn closed_and_literal_quotes_are_no_problem() {
        for data in [
            &b"a,b\n1,\"x\"\n2,\"y\""[..],
            b"a,b\n1,x\"y\n2,\"\"\"\"",
            b"a,b\n1,\"x\"z\n2,\"\"",
            b"a,b\n1,x\"",
        ] {
            let (reader, _) = RecordReader::csv_buffered(Box::new(Trickle(data)), 4).unwrap();
            let rows = read_all(reader);
            assert!(rows.iter().all(|r| r.2.is_none()), "{data:?}: {rows:?}");
        }
    }

    #[test]
    fn csv_raw_record_keeps_invalid_utf8_bytes() {
        let data = &b"a,b\n1,\xff\xfe\n\"2\",\"\xc3(\"\n"[..];
        let (mut reader, _) = RecordReader::csv(Box::new(data)).unwrap();
        let mut rec = Record::default();
        assert!(reader.next(&mut rec).unwrap());
        assert_eq!(reader.raw(&rec), b"1,\xff\xfe");
        assert!(reader.next(&mut rec).unwrap());
        assert_eq!(reader.raw(&rec), b"2,\xc3(");
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
