//! The staging file between transform and load: the clean rows, already typed, in
//! PostgreSQL's binary COPY format.
//!
//! Each row's first field is the source line (int8); then one field per column: int8, float8,
//! bool, date (days since 2000-01-01), timestamp (microseconds since 2000-01-01 00:00) or text
//! (UTF-8), or NULL. PostgreSQL takes the file as it is (`COPY ... FROM STDIN (FORMAT binary)`);
//! SQLite reads it back with [`StagingReader`]. For SQLite, dates and timestamps are written as
//! the text SQLite stores ([`Layout::Sqlite`]): transform formats them on its core, and load,
//! the slower of the two, binds them as they are. Rows are written and read one at a time.
//! The file has no name ([`Staging`]): the kernel reclaims it however the process ends.
//!
//! Load can read the file while transform still writes it ([`Staging::follow`]): the writer
//! publishes how far whole, flushed rows reach, and the stream's trailer only once transform
//! has accepted the whole input. A reader therefore never sees the end of a stream that
//! transform then rejects (too many rejected rows); it gets an error instead, and the load
//! rolls back.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};

use super::value::{write_date, write_timestamp, ColumnType, Value};

/// The fixed start of a binary COPY stream: signature, flags, header extension length.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// The field count that ends the stream.
const TRAILER: i16 = -1;
/// Buffer of the staging writer and reader.
const BUFFER: usize = 1024 * 1024;

/// The start of a stream: signature, flags (none), header extension length (none).
pub(crate) fn stream_header() -> Vec<u8> {
    let mut head = SIGNATURE.to_vec();
    head.extend_from_slice(&[0; 8]);
    head
}

/// The end of a stream.
pub(crate) fn stream_trailer() -> [u8; 2] {
    TRAILER.to_be_bytes()
}

/// Bytes of a row before its first column: the field count and the line field.
const LINE_PREFIX: usize = 2 + 4 + 8;

/// PostgreSQL's epoch for dates and timestamps.
fn pg_epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(2000, 1, 1).expect("2000-01-01 is a date")
}

/// How the staging file holds dates and timestamps: as PostgreSQL's binary values, or as the
/// text SQLite stores (`YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS[.ffffff]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    Postgres,
    Sqlite,
}

impl Layout {
    /// The type a column's fields are read back as.
    pub(crate) fn stored(self, ty: ColumnType) -> ColumnType {
        match (self, ty) {
            (Layout::Sqlite, ColumnType::Date | ColumnType::Timestamp) => ColumnType::Text,
            _ => ty,
        }
    }
}

/// The staging file: anonymous (unlinked at once), so an interrupted run leaves nothing
/// behind. It is written through a [`StagingWriter`] and read through [`Staging::follow`].
#[derive(Debug, Clone)]
pub(crate) struct Staging {
    file: Arc<File>,
    shared: Arc<Shared>,
}

/// How far the writer has got, shared with the readers that follow it.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<Published>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Published {
    /// Bytes that readers may read: whole rows, written to the file.
    bytes: u64,
    /// `None` while transform runs; `Ok` once the stream is whole and accepted; `Err` with the
    /// reason when transform stopped without accepting it.
    end: Option<Result<(), String>>,
}

impl Shared {
    fn update(&self, change: impl FnOnce(&mut Published)) {
        change(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
        self.changed.notify_all();
    }
}

impl Staging {
    /// Creates the file in the temp directory, and the writer that fills it.
    pub(crate) fn create(layout: Layout) -> io::Result<(Self, StagingWriter)> {
        let file = tempfile::tempfile_in(std::env::temp_dir())?;
        let staging = Staging {
            file: Arc::new(file.try_clone()?),
            shared: Arc::default(),
        };
        let writer = StagingWriter::new(file, staging.shared.clone(), layout)?;
        Ok((staging, writer))
    }

    /// Whether transform stopped without accepting the rows.
    pub(crate) fn stopped(&self) -> bool {
        let state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        matches!(state.end, Some(Err(_)))
    }

    /// A reader from the start of the file that follows the writer: it waits for rows not
    /// written yet, ends where the accepted stream ends, and fails if transform stops without
    /// accepting it. Each reader has its own position.
    pub(crate) fn follow(&self) -> Follower {
        Follower {
            staging: self.clone(),
            offset: 0,
        }
    }
}

/// A reader of the staging file that follows its writer (see [`Staging::follow`]).
pub(crate) struct Follower {
    staging: Staging,
    offset: u64,
}

/// How long a follower waits between looks at the writer's progress; the writer wakes it
/// sooner whenever it publishes.
const FOLLOW_WAIT: Duration = Duration::from_millis(200);

impl Read for Follower {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let shared = &self.staging.shared;
        let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        let readable = loop {
            let readable = state.bytes.saturating_sub(self.offset);
            match &state.end {
                _ if readable > 0 => break readable,
                Some(Ok(())) => return Ok(0),
                Some(Err(reason)) => return Err(io::Error::other(reason.clone())),
                None => {
                    state = shared
                        .changed
                        .wait_timeout(state, FOLLOW_WAIT)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        };
        drop(state);
        let want = buf
            .len()
            .min(usize::try_from(readable).unwrap_or(usize::MAX));
        let n = self.staging.file.read_at(&mut buf[..want], self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Writes rows of the staging file and publishes them to its followers.
pub(crate) struct StagingWriter {
    out: BufWriter<File>,
    layout: Layout,
    row: Vec<u8>,
    /// Where a date or timestamp is formatted as text.
    scratch: Vec<u8>,
    /// Bytes written, including the buffered ones.
    bytes: u64,
    shared: Arc<Shared>,
    /// Whether [`StagingWriter::accept`] ended the stream.
    accepted: bool,
}

impl StagingWriter {
    /// Starts the stream in `file`.
    fn new(file: File, shared: Arc<Shared>, layout: Layout) -> io::Result<Self> {
        let mut out = BufWriter::with_capacity(BUFFER, file);
        out.write_all(SIGNATURE)?;
        out.write_all(&0i32.to_be_bytes())?;
        out.write_all(&0i32.to_be_bytes())?;
        Ok(StagingWriter {
            out,
            layout,
            row: Vec::with_capacity(1024),
            scratch: Vec::with_capacity(32),
            bytes: SIGNATURE.len() as u64 + 8,
            shared,
            accepted: false,
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
            Value::Date(d) if self.layout == Layout::Sqlite => {
                self.text_field(|text| write_date(text, d));
            }
            Value::Timestamp(ts) if self.layout == Layout::Sqlite => {
                self.text_field(|text| write_timestamp(text, ts));
            }
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
            Value::Text(t) => self.field(t),
        }
    }

    /// Adds a field of the text `format` writes.
    fn text_field(&mut self, format: impl FnOnce(&mut Vec<u8>)) {
        let mut text = std::mem::take(&mut self.scratch);
        text.clear();
        format(&mut text);
        self.field(&text);
        self.scratch = text;
    }

    fn field(&mut self, bytes: &[u8]) {
        self.row
            .extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        self.row.extend_from_slice(bytes);
    }

    /// Writes the row begun last. When the buffer is full, the rows before it go to the file
    /// and are published.
    pub(crate) fn commit(&mut self) -> io::Result<()> {
        if self.out.buffer().len() + self.row.len() > self.out.capacity() {
            self.out.flush()?;
            let written = self.bytes;
            self.shared.update(|p| p.bytes = written);
        }
        self.bytes += self.row.len() as u64;
        self.out.write_all(&self.row)
    }

    /// Writes every row to the file and publishes them, without ending the stream; returns
    /// the bytes written.
    pub(crate) fn finish(&mut self) -> io::Result<u64> {
        self.out.flush()?;
        let written = self.bytes;
        self.shared.update(|p| p.bytes = written);
        Ok(written)
    }

    /// Ends the stream: transform accepted the input, so followers may read to its end.
    pub(crate) fn accept(mut self) -> io::Result<u64> {
        self.out.write_all(&TRAILER.to_be_bytes())?;
        self.out.flush()?;
        self.bytes += 2;
        self.accepted = true;
        let written = self.bytes;
        self.shared.update(|p| {
            p.bytes = written;
            p.end = Some(Ok(()));
        });
        Ok(written)
    }
}

impl Drop for StagingWriter {
    /// A writer dropped without [`StagingWriter::accept`] (an error, too many rejects, a
    /// cancelled run) fails its followers.
    fn drop(&mut self) {
        if !self.accepted {
            self.shared.update(|p| {
                p.end
                    .get_or_insert(Err("transform stopped before the input was accepted".into()));
            });
        }
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

/// Reads the staging file back, row by row, parsing rows in place in a large buffer.
pub(crate) struct StagingReader {
    input: Box<dyn Read + Send>,
    types: Vec<ColumnType>,
    buf: Vec<u8>,
    /// The next row starts at `pos`; `len` bytes of `buf` are filled.
    pos: usize,
    len: usize,
    /// Where the current row starts.
    row_start: usize,
    spans: Vec<Option<(usize, usize)>>,
}

/// Not enough bytes in the buffer for the whole row.
struct Short;

impl StagingReader {
    /// Reads `input` from its start, whose columns have `types`, and checks the signature.
    pub(crate) fn open(
        mut input: impl Read + Send + 'static,
        types: Vec<ColumnType>,
    ) -> io::Result<Self> {
        let mut head = [0u8; 19];
        input.read_exact(&mut head)?;
        if &head[..11] != SIGNATURE {
            return Err(invalid("not a staging file"));
        }
        Ok(Self::over(Box::new(input), types, BUFFER))
    }

    /// Reads rows copied with [`StagingReader::row_bytes`] (no header, no trailer).
    pub(crate) fn from_rows(mut rows: Vec<u8>, types: Vec<ColumnType>) -> Self {
        rows.extend_from_slice(&TRAILER.to_be_bytes());
        let size = rows.len();
        Self::over(Box::new(io::Cursor::new(rows)), types, size.max(16))
    }

    fn over(input: Box<dyn Read + Send>, types: Vec<ColumnType>, buffer: usize) -> Self {
        StagingReader {
            input,
            spans: Vec::with_capacity(types.len() + 1),
            types,
            buf: vec![0; buffer],
            pos: 0,
            len: 0,
            row_start: 0,
        }
    }

    /// Appends the current row without its line field: a row of the table's columns only.
    pub(crate) fn write_row_without_line(&self, out: &mut Vec<u8>) {
        let row = self.row_bytes();
        let count = i16::from_be_bytes([row[0], row[1]]) - 1;
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&row[LINE_PREFIX..]);
    }

    /// The current row as stored, to be read again with [`StagingReader::from_rows`].
    pub(crate) fn row_bytes(&self) -> &[u8] {
        &self.buf[self.row_start..self.pos]
    }

    /// Moves to the next row and returns its source line; `None` at the end. The row's fields
    /// are then read with [`StagingReader::field`].
    pub(crate) fn advance(&mut self) -> io::Result<Option<u64>> {
        loop {
            match self.parse_row() {
                Ok(Some(end)) => {
                    let line = match self.decode(0, ColumnType::Integer) {
                        Field::Integer(line) => line as u64,
                        _ => return Err(invalid("staging row without line")),
                    };
                    // The row stays readable until the next call.
                    self.row_start = self.pos;
                    self.pos = end;
                    return Ok(Some(line));
                }
                Ok(None) => return Ok(None),
                Err(Short) => self.refill()?,
            }
        }
    }

    /// Parses the row at `pos` into `spans`; returns where it ends, or `None` at the trailer.
    fn parse_row(&mut self) -> Result<Option<usize>, Short> {
        let mut at = self.pos;
        let count = i16::from_be_bytes(self.take(&mut at)?);
        if count == TRAILER {
            return Ok(None);
        }
        self.spans.clear();
        for _ in 0..count.max(0) {
            let len = i32::from_be_bytes(self.take(&mut at)?);
            if len < 0 {
                self.spans.push(None);
                continue;
            }
            let end = at + len as usize;
            if end > self.len {
                return Err(Short);
            }
            self.spans.push(Some((at, end)));
            at = end;
        }
        Ok(Some(at))
    }

    fn take<const N: usize>(&self, at: &mut usize) -> Result<[u8; N], Short> {
        let bytes = self
            .buf
            .get(*at..*at + N)
            .filter(|_| *at + N <= self.len)
            .ok_or(Short)?;
        *at += N;
        Ok(bytes.try_into().expect("N bytes"))
    }

    /// Moves the unread bytes to the front and reads more; grows the buffer for a row larger
    /// than it. A file that ends inside a row is an error.
    fn refill(&mut self) -> io::Result<()> {
        self.buf.copy_within(self.pos..self.len, 0);
        self.len -= self.pos;
        self.pos = 0;
        if self.len == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = loop {
            match self.input.read(&mut self.buf[self.len..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "staging file cut short",
            ));
        }
        self.len += n;
        Ok(())
    }

    /// Field `column` (0-based, not counting the line) of the current row.
    pub(crate) fn field(&self, column: usize) -> Field<'_> {
        self.decode(column + 1, self.types[column])
    }

    fn decode(&self, index: usize, ty: ColumnType) -> Field<'_> {
        let Some((start, end)) = self.spans.get(index).copied().flatten() else {
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

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip() {
        let (staging, mut w) = Staging::create(Layout::Postgres).unwrap();
        assert_eq!(stream_header().len(), 19);
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
        let size = w.accept().unwrap();
        assert_eq!(size, staging.file.metadata().unwrap().len());

        let types = [
            ColumnType::Integer,
            ColumnType::Real,
            ColumnType::Boolean,
            ColumnType::Date,
            ColumnType::Timestamp,
            ColumnType::Text,
        ];
        let mut r = StagingReader::open(staging.follow(), types.to_vec()).unwrap();
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

    #[test]
    fn the_sqlite_layout_stages_dates_and_timestamps_as_the_text_sqlite_stores() {
        let (staging, mut w) = Staging::create(Layout::Sqlite).unwrap();
        let date = NaiveDate::from_ymd_opt(1990, 1, 8).unwrap();
        let ts = date.and_hms_micro_opt(1, 2, 3, 4).unwrap();
        w.begin(7, 3);
        w.value(Value::Date(date));
        w.value(Value::Timestamp(ts));
        w.value(Value::Integer(3));
        w.commit().unwrap();
        w.accept().unwrap();

        let types = [ColumnType::Date, ColumnType::Timestamp, ColumnType::Integer]
            .map(|ty| Layout::Sqlite.stored(ty));
        assert_eq!(types[..2], [ColumnType::Text, ColumnType::Text]);
        let mut r = StagingReader::open(staging.follow(), types.to_vec()).unwrap();
        assert_eq!(r.advance().unwrap(), Some(7));
        let fields: Vec<Field> = (0..3).map(|i| r.field(i)).collect();
        let expected = [
            Field::Text(b"1990-01-08"),
            Field::Text(b"1990-01-08 01:02:03.000004"),
            Field::Integer(3),
        ];
        assert_eq!(fields, expected);
    }

    fn write_rows(w: &mut StagingWriter, from: u64, to: u64) {
        for line in from..to {
            w.begin(line, 1);
            w.value(Value::Text(
                b"a text value long enough to fill a few buffers",
            ));
            w.commit().unwrap();
        }
    }

    /// Reads every row of `input`; the lines read, or the error that stopped the reader.
    fn read_all(input: Follower) -> (Vec<u64>, Option<io::Error>) {
        let mut lines = Vec::new();
        let mut reader = match StagingReader::open(input, vec![ColumnType::Text]) {
            Ok(reader) => reader,
            Err(e) => return (lines, Some(e)),
        };
        loop {
            match reader.advance() {
                Ok(Some(line)) => lines.push(line),
                Ok(None) => return (lines, None),
                Err(e) => return (lines, Some(e)),
            }
        }
    }

    #[test]
    fn a_follower_reads_rows_while_they_are_written_and_ends_when_accepted() {
        let (staging, mut w) = Staging::create(Layout::Postgres).unwrap();
        let reader = std::thread::spawn({
            let input = staging.follow();
            move || read_all(input)
        });
        write_rows(&mut w, 1, 40_001);
        w.finish().unwrap();
        assert!(!reader.is_finished(), "no end before the rows are accepted");
        w.accept().unwrap();
        let (lines, error) = reader.join().unwrap();
        assert!(error.is_none(), "{error:?}");
        assert_eq!(lines, (1..40_001).collect::<Vec<_>>());
        // A second follower reads the whole file on its own.
        assert_eq!(read_all(staging.follow()).0.len(), 40_000);
        assert!(!staging.stopped());
    }

    #[test]
    fn a_writer_dropped_before_accepting_fails_its_followers() {
        let (staging, mut w) = Staging::create(Layout::Postgres).unwrap();
        let reader = std::thread::spawn({
            let input = staging.follow();
            move || read_all(input)
        });
        write_rows(&mut w, 1, 30_001);
        w.finish().unwrap();
        drop(w);
        let (lines, error) = reader.join().unwrap();
        assert_eq!(lines.len(), 30_000, "every published row was read");
        let error = error.expect("the reader fails");
        assert!(error.to_string().contains("transform stopped"), "{error}");
        assert!(staging.stopped());
    }
}
