//! The staging file between transform and load: the clean rows, already typed, in
//! PostgreSQL's binary COPY format.
//!
//! Each row's first field is the source line (int8); then one field per column: int8, float8,
//! bool, date (days since 2000-01-01), timestamp (microseconds since 2000-01-01 00:00) or text
//! (UTF-8), or NULL. PostgreSQL takes the file as it is (`COPY ... FROM STDIN (FORMAT binary)`);
//! SQLite reads it back with [`StagingReader`]. Rows are written and read one at a time.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};

use super::value::{ColumnType, Value};

/// The fixed start of a binary COPY stream: signature, flags, header extension length.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// The field count that ends the stream.
const TRAILER: i16 = -1;
/// Buffer of the staging writer and reader.
const BUFFER: usize = 1024 * 1024;

/// PostgreSQL's epoch for dates and timestamps.
fn pg_epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(2000, 1, 1).expect("2000-01-01 is a date")
}

/// Writes rows of the staging file.
pub(crate) struct StagingWriter {
    out: BufWriter<File>,
    row: Vec<u8>,
    bytes: u64,
}

impl StagingWriter {
    /// Starts the stream in `file`.
    pub(crate) fn new(file: File) -> io::Result<Self> {
        let mut out = BufWriter::with_capacity(BUFFER, file);
        out.write_all(SIGNATURE)?;
        out.write_all(&0i32.to_be_bytes())?;
        out.write_all(&0i32.to_be_bytes())?;
        Ok(StagingWriter {
            out,
            row: Vec::with_capacity(1024),
            bytes: SIGNATURE.len() as u64 + 8,
        })
    }

    /// Starts a row of `columns` fields after the line number.
    pub(crate) fn begin(&mut self, line: u64, columns: usize) {
        self.row.clear();
        let count = i16::try_from(columns + 1).unwrap_or(i16::MAX);
        self.row.extend_from_slice(&count.to_be_bytes());
        self.field(&(line as i64).to_be_bytes());
    }

    /// Adds a NULL field.
    pub(crate) fn null(&mut self) {
        self.row.extend_from_slice(&(-1i32).to_be_bytes());
    }

    /// Adds a value field.
    pub(crate) fn value(&mut self, value: Value<'_>) {
        match value {
            Value::Boolean(b) => self.field(&[u8::from(b)]),
            Value::Integer(i) => self.field(&i.to_be_bytes()),
            Value::Real(r) => self.field(&r.to_bits().to_be_bytes()),
            Value::Date(d) => {
                let days = (d - pg_epoch()).num_days() as i32;
                self.field(&days.to_be_bytes());
            }
            Value::Timestamp(ts) => {
                let micros = (ts - pg_epoch().and_time(Default::default()))
                    .num_microseconds()
                    .unwrap_or(i64::MAX);
                self.field(&micros.to_be_bytes());
            }
            Value::Text(t) => self.field(t.as_bytes()),
        }
    }

    fn field(&mut self, bytes: &[u8]) {
        self.row
            .extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        self.row.extend_from_slice(bytes);
    }

    /// Writes the row begun last.
    pub(crate) fn commit(&mut self) -> io::Result<()> {
        self.bytes += self.row.len() as u64;
        self.out.write_all(&self.row)
    }

    /// Ends the stream; returns its size in bytes.
    pub(crate) fn finish(mut self) -> io::Result<u64> {
        self.out.write_all(&TRAILER.to_be_bytes())?;
        self.out.flush()?;
        Ok(self.bytes + 2)
    }
}

/// One field of a row read back, borrowed from the reader.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Field<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Boolean(bool),
    Date(NaiveDate),
    Timestamp(NaiveDateTime),
    Text(&'a [u8]),
}

/// Reads the staging file back, row by row.
pub(crate) struct StagingReader {
    input: BufReader<File>,
    types: Vec<ColumnType>,
    buf: Vec<u8>,
    spans: Vec<Option<(usize, usize)>>,
}

impl StagingReader {
    /// Opens `path`, whose columns have `types`, and checks the signature.
    pub(crate) fn open(path: &Path, types: Vec<ColumnType>) -> io::Result<Self> {
        let mut input = BufReader::with_capacity(BUFFER, File::open(path)?);
        let mut head = [0u8; 19];
        input.read_exact(&mut head)?;
        if &head[..11] != SIGNATURE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a staging file",
            ));
        }
        Ok(StagingReader {
            input,
            spans: Vec::with_capacity(types.len() + 1),
            types,
            buf: Vec::with_capacity(1024),
        })
    }

    /// Moves to the next row and returns its source line; `None` at the end. The row's fields
    /// are then read with [`StagingReader::field`].
    pub(crate) fn advance(&mut self) -> io::Result<Option<u64>> {
        let count = i16::from_be_bytes(self.read_array()?);
        if count == TRAILER {
            return Ok(None);
        }
        if count as usize != self.types.len() + 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad staging row width",
            ));
        }
        self.buf.clear();
        self.spans.clear();
        for _ in 0..count {
            let len = i32::from_be_bytes(self.read_array()?);
            if len < 0 {
                self.spans.push(None);
                continue;
            }
            let start = self.buf.len();
            self.buf.resize(start + len as usize, 0);
            self.input.read_exact(&mut self.buf[start..])?;
            self.spans.push(Some((start, start + len as usize)));
        }
        match self.decode(0, ColumnType::Integer) {
            Field::Integer(line) => Ok(Some(line as u64)),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "staging row without line",
            )),
        }
    }

    /// Field `column` (0-based, not counting the line) of the current row.
    pub(crate) fn field(&self, column: usize) -> Field<'_> {
        self.decode(column + 1, self.types[column])
    }

    fn read_array<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut bytes = [0u8; N];
        self.input.read_exact(&mut bytes)?;
        Ok(bytes)
    }

    fn decode(&self, index: usize, ty: ColumnType) -> Field<'_> {
        let Some((start, end)) = self.spans[index] else {
            return Field::Null;
        };
        let bytes = &self.buf[start..end];
        let eight = || bytes.try_into().map(i64::from_be_bytes).unwrap_or_default();
        match ty {
            ColumnType::Integer => Field::Integer(eight()),
            ColumnType::Real => Field::Real(f64::from_bits(eight() as u64)),
            ColumnType::Boolean => Field::Boolean(bytes.first().is_some_and(|b| *b != 0)),
            ColumnType::Date => {
                let days = bytes.try_into().map(i32::from_be_bytes).unwrap_or_default();
                Field::Date(pg_epoch() + TimeDelta::days(days.into()))
            }
            ColumnType::Timestamp => Field::Timestamp(
                pg_epoch().and_time(Default::default()) + TimeDelta::microseconds(eight()),
            ),
            ColumnType::Text => Field::Text(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip() {
        let temp = tempfile::NamedTempFile::new().unwrap();
        let mut w = StagingWriter::new(temp.reopen().unwrap()).unwrap();
        let date = NaiveDate::from_ymd_opt(1990, 1, 8).unwrap();
        let ts = date.and_hms_micro_opt(1, 2, 3, 4).unwrap();
        w.begin(2, 6);
        for v in [Value::Integer(-5), Value::Real(1.5), Value::Boolean(true)] {
            w.value(v);
        }
        w.value(Value::Date(date));
        w.value(Value::Timestamp(ts));
        w.null();
        w.commit().unwrap();
        let size = w.finish().unwrap();
        assert_eq!(size, temp.as_file().metadata().unwrap().len());

        let types = [
            ColumnType::Integer,
            ColumnType::Real,
            ColumnType::Boolean,
            ColumnType::Date,
            ColumnType::Timestamp,
            ColumnType::Text,
        ];
        let mut r = StagingReader::open(temp.path(), types.to_vec()).unwrap();
        assert_eq!(r.advance().unwrap(), Some(2));
        let fields: Vec<Field> = (0..types.len()).map(|i| r.field(i)).collect();
        let expected = [
            Field::Integer(-5),
            Field::Real(1.5),
            Field::Boolean(true),
            Field::Date(date),
            Field::Timestamp(ts),
            Field::Null,
        ];
        assert_eq!(fields, expected);
        assert_eq!(r.advance().unwrap(), None);
    }
}
