//! Column types, and how one field's text is classified and parsed for each type.
//!
//! What each type accepts (surrounding ASCII whitespace is ignored; a field that is empty after
//! that is NULL):
//! - `boolean`: `true`/`false`, `t`/`f`, `yes`/`no`, `y`/`n`, in any case;
//! - `integer`: an optional sign and digits without a leading zero (`007` is text, so codes
//!   keep their zeros), within the 64-bit range (longer digit strings are text, not rounded);
//! - `real`: an integer, or a decimal with `.` and an optional exponent (`1.5`, `-.5`,
//!   `2e10`); no `inf` or `nan`;
//! - `date`: `YYYY-MM-DD`, a real calendar date;
//! - `timestamp`: `YYYY-MM-DD` then `T` or a space, `HH:MM`, optional `:SS` and fraction (kept
//!   to the microsecond), optional `Z` or `+HH:MM` offset (converted to UTC); a plain date is
//!   midnight;
//! - `text`: anything that is valid UTF-8 and holds no NUL byte, kept as written.

use std::fmt;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use serde::Deserialize;

/// The type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// true or false.
    Boolean,
    /// A 64-bit signed integer.
    Integer,
    /// A 64-bit float.
    Real,
    /// A calendar date.
    Date,
    /// A date and time of day, without time zone (UTC when the source had an offset).
    Timestamp,
    /// UTF-8 text.
    Text,
}

impl ColumnType {
    /// The lowercase name used in the config and in messages.
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Boolean => "boolean",
            ColumnType::Integer => "integer",
            ColumnType::Real => "real",
            ColumnType::Date => "date",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Text => "text",
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The narrowest type one non-empty field parses as, or `Empty`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Empty,
    Boolean,
    Integer,
    Real,
    Date,
    Timestamp,
    Text,
}

impl Class {
    /// Number of classes, for tally arrays indexed by `class as usize`.
    pub(crate) const COUNT: usize = 7;
}

/// A parsed, non-NULL value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Boolean(bool),
    Integer(i64),
    Real(f64),
    Date(NaiveDate),
    Timestamp(NaiveDateTime),
    Text(&'a [u8]),
}

/// Why a field does not parse as its column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParseFailure {
    /// Not of the column's type.
    Mismatch,
    /// Not valid UTF-8.
    InvalidUtf8,
    /// Holds a NUL byte, which databases refuse in text.
    NulByte,
}

/// Removes ASCII whitespace on both ends.
pub(crate) fn trim(raw: &[u8]) -> &[u8] {
    raw.trim_ascii()
}

/// The narrowest type `raw` parses as.
pub(crate) fn classify(raw: &[u8]) -> Class {
    let b = trim(raw);
    let Some(&first) = b.first() else {
        return Class::Empty;
    };
    if first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.') {
        if parse_integer(b).is_some() {
            return Class::Integer;
        }
        // Digits past the 64-bit range are an identifier, not a number to round.
        if plain_digits(split_sign(b).1) {
            return Class::Text;
        }
        if parse_real(b).is_some() {
            return Class::Real;
        }
        if parse_date(b).is_some() {
            return Class::Date;
        }
        if parse_timestamp(b).is_some() {
            return Class::Timestamp;
        }
    } else if parse_bool(b).is_some() {
        return Class::Boolean;
    }
    Class::Text
}

/// Parses a non-empty field as `ty`.
pub(crate) fn parse(ty: ColumnType, raw: &[u8]) -> Result<Value<'_>, ParseFailure> {
    let b = trim(raw);
    let parsed = match ty {
        ColumnType::Boolean => parse_bool(b).map(Value::Boolean),
        ColumnType::Integer => parse_integer(b).map(Value::Integer),
        ColumnType::Real => parse_real(b).map(Value::Real),
        ColumnType::Date => parse_date(b).map(Value::Date),
        ColumnType::Timestamp => parse_timestamp(b)
            .or_else(|| parse_date(b).map(|d| d.and_time(NaiveTime::MIN)))
            .map(Value::Timestamp),
        ColumnType::Text => return check_text(raw).map(|()| Value::Text(raw)),
    };
    parsed.ok_or(ParseFailure::Mismatch)
}

/// Checks that `raw` can be stored as text: valid UTF-8 without NUL bytes.
pub(crate) fn check_text(raw: &[u8]) -> Result<(), ParseFailure> {
    std::str::from_utf8(raw).map_err(|_| ParseFailure::InvalidUtf8)?;
    if memchr::memchr(0, raw).is_some() {
        return Err(ParseFailure::NulByte);
    }
    Ok(())
}

fn parse_bool(b: &[u8]) -> Option<bool> {
    const TRUE: [&[u8]; 4] = [b"true", b"t", b"yes", b"y"];
    const FALSE: [&[u8]; 4] = [b"false", b"f", b"no", b"n"];
    if TRUE.iter().any(|w| w.eq_ignore_ascii_case(b)) {
        Some(true)
    } else if FALSE.iter().any(|w| w.eq_ignore_ascii_case(b)) {
        Some(false)
    } else {
        None
    }
}

/// Splits an optional sign off `b`: (negative, rest).
fn split_sign(b: &[u8]) -> (bool, &[u8]) {
    match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    }
}

/// Whether `digits` is a run of ASCII digits without a leading zero (a lone `0` is fine).
fn plain_digits(digits: &[u8]) -> bool {
    !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || digits.len() == 1)
}

fn parse_integer(b: &[u8]) -> Option<i64> {
    let (negative, digits) = split_sign(b);
    if !plain_digits(digits) || digits.len() > 19 {
        return None;
    }
    // Accumulate towards the negative side, which holds i64::MIN.
    let mut value: i64 = 0;
    for &d in digits {
        value = value.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

fn parse_real(b: &[u8]) -> Option<f64> {
    let (_, unsigned) = split_sign(b);
    let (mantissa, exponent) = match unsigned.iter().position(|&c| c == b'e' || c == b'E') {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (int_part, frac_part) = match mantissa.iter().position(|&c| c == b'.') {
        Some(at) => (&mantissa[..at], Some(&mantissa[at + 1..])),
        None => (mantissa, None),
    };
    let int_ok = int_part.is_empty() || plain_digits(int_part);
    let frac_ok = frac_part.is_none_or(|f| f.iter().all(u8::is_ascii_digit));
    let has_digits = !int_part.is_empty() || frac_part.is_some_and(|f| !f.is_empty());
    let exp_ok = exponent.is_none_or(|e| {
        let (_, digits) = split_sign(e);
        !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
    });
    if !(int_ok && frac_ok && has_digits && exp_ok) {
        return None;
    }
    let value: f64 = std::str::from_utf8(b).ok()?.parse().ok()?;
    value.is_finite().then_some(value)
}

/// Reads `N` ASCII digits at `at` as a number.
fn digits_at(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let slice = b.get(at..at + n)?;
    slice.iter().try_fold(0u32, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
    })
}

fn parse_date(b: &[u8]) -> Option<NaiveDate> {
    if b.len() != 10 {
        return None;
    }
    date_prefix(b)
}

fn date_prefix(b: &[u8]) -> Option<NaiveDate> {
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let year = digits_at(b, 0, 4)?;
    NaiveDate::from_ymd_opt(year as i32, digits_at(b, 5, 2)?, digits_at(b, 8, 2)?)
}

fn parse_timestamp(b: &[u8]) -> Option<NaiveDateTime> {
    let date = date_prefix(b)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
        return None;
    }
    let (hour, minute) = (digits_at(b, 11, 2)?, digits_at(b, 14, 2)?);
    let mut at = 16;
    let mut second = 0;
    let mut micros = 0;
    if b.get(at) == Some(&b':') {
        second = digits_at(b, at + 1, 2)?;
        at += 3;
        if b.get(at) == Some(&b'.') {
            let frac_len = b[at + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if frac_len == 0 || frac_len > 9 {
                return None;
            }
            let kept = frac_len.min(6);
            micros = digits_at(b, at + 1, kept)? * 10u32.pow(6 - kept as u32);
            at += 1 + frac_len;
        }
    }
    let time = NaiveTime::from_hms_micro_opt(hour, minute, second, micros)?;
    let offset_secs = parse_offset(&b[at..])?;
    Some(date.and_time(time) - chrono::TimeDelta::seconds(offset_secs))
}

/// Parses a trailing UTC offset: nothing, `Z`, `+HH`, `+HHMM` or `+HH:MM`; returns seconds.
fn parse_offset(b: &[u8]) -> Option<i64> {
    let sign = match b.first() {
        None => return Some(0),
        Some(b'Z' | b'z') if b.len() == 1 => return Some(0),
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return None,
    };
    let rest = &b[1..];
    let (hours, minutes) = match rest.len() {
        2 => (digits_at(rest, 0, 2)?, 0),
        4 => (digits_at(rest, 0, 2)?, digits_at(rest, 2, 2)?),
        5 if rest[2] == b':' => (digits_at(rest, 0, 2)?, digits_at(rest, 3, 2)?),
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * i64::from(hours * 3600 + minutes * 60))
}

/// Writes a date as `YYYY-MM-DD` (the text SQLite stores).
pub(crate) fn write_date(out: &mut Vec<u8>, date: NaiveDate) {
    write_padded(out, date.year() as u32, 4);
    out.push(b'-');
    write_padded(out, date.month(), 2);
    out.push(b'-');
    write_padded(out, date.day(), 2);
}

/// Writes a timestamp as `YYYY-MM-DD HH:MM:SS[.ffffff]` (the text SQLite stores).
pub(crate) fn write_timestamp(out: &mut Vec<u8>, ts: NaiveDateTime) {
    write_date(out, ts.date());
    out.push(b' ');
    write_padded(out, ts.hour(), 2);
    out.push(b':');
    write_padded(out, ts.minute(), 2);
    out.push(b':');
    write_padded(out, ts.second(), 2);
    let micros = ts.and_utc().timestamp_subsec_micros();
    if micros != 0 {
        out.push(b'.');
        write_padded(out, micros, 6);
    }
}

fn write_padded(out: &mut Vec<u8>, value: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    while div > 0 {
        out.push(b'0' + ((value / div) % 10) as u8);
        div /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_picks_the_narrowest_type() {
        let cases: [(&str, Class); 16] = [
            ("", Class::Empty),
            ("   ", Class::Empty),
            ("42", Class::Integer),
            (" -7 ", Class::Integer),
            ("007", Class::Text),
            ("1.5", Class::Real),
            ("-.5e3", Class::Real),
            ("1990-01-08", Class::Date),
            ("1990-02-30", Class::Text),
            ("2024-05-01T10:30:00Z", Class::Timestamp),
            ("2024-05-01 10:30", Class::Timestamp),
            ("TRUE", Class::Boolean),
            ("n", Class::Boolean),
            ("inf", Class::Text),
            ("99999999999999999999", Class::Text),
            ("B-737-300", Class::Text),
        ];
        for (input, class) in cases {
            assert_eq!(classify(input.as_bytes()), class, "{input:?}");
        }
    }

    #[test]
    fn integers_cover_the_whole_range() {
        assert_eq!(parse_integer(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_integer(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_integer(b"9223372036854775808"), None);
        assert_eq!(parse_integer(b"+0"), Some(0));
    }

    #[test]
    fn reals_accept_integers_and_reject_words() {
        assert_eq!(parse(ColumnType::Real, b"3"), Ok(Value::Real(3.0)));
        assert_eq!(
            parse(ColumnType::Real, b"1e999"),
            Err(ParseFailure::Mismatch)
        );
        assert_eq!(parse(ColumnType::Real, b"."), Err(ParseFailure::Mismatch));
        assert_eq!(
            parse(ColumnType::Real, b"1.5.2"),
            Err(ParseFailure::Mismatch)
        );
    }

    #[test]
    fn timestamps_are_normalized_to_utc_microseconds() {
        let Ok(Value::Timestamp(ts)) =
            parse(ColumnType::Timestamp, b"2024-05-01T10:30:00.1234567+02:00")
        else {
            panic!("no timestamp");
        };
        let mut out = Vec::new();
        write_timestamp(&mut out, ts);
        assert_eq!(out, b"2024-05-01 08:30:00.123456");
    }

    #[test]
    fn a_date_is_a_timestamp_at_midnight() {
        let Ok(Value::Timestamp(ts)) = parse(ColumnType::Timestamp, b"1990-01-08") else {
            panic!("no timestamp");
        };
        let mut out = Vec::new();
        write_timestamp(&mut out, ts);
        assert_eq!(out, b"1990-01-08 00:00:00");
    }

    #[test]
    fn text_must_be_utf8_without_nul() {
        assert_eq!(
            parse(ColumnType::Text, b"a\xff"),
            Err(ParseFailure::InvalidUtf8)
        );
        assert_eq!(parse(ColumnType::Text, b"a\0b"), Err(ParseFailure::NulByte));
        assert_eq!(
            parse(ColumnType::Text, b" kept "),
            Ok(Value::Text(b" kept "))
        );
    }

    #[test]
    fn dates_print_zero_padded() {
        let mut out = Vec::new();
        write_date(&mut out, NaiveDate::from_ymd_opt(7, 3, 9).unwrap());
        assert_eq!(out, b"0007-03-09");
    }
}
