//! The `.env` parser: turns the bytes of a `.env` file into keys, values and line numbers.
//!
//! The rules are listed in `docs/sources.md`. Two promises matter most: an error names the file
//! and line but never the value or any part of it, and no line is dropped silently (a line is
//! blank, a comment, an assignment, or an error).

use std::collections::BTreeMap;

use credchain_core::{Environment, Secret};
use thiserror::Error;
use zeroize::Zeroizing;

/// The byte-order mark some editors put at the start of a UTF-8 file.
const BOM: char = '\u{feff}';

/// How a value was written, which decides how it is cleaned when it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quote {
    /// `KEY=value`: trimmed, comments cut, `${NAME}` expanded, then normalized.
    None,
    /// `KEY='value'`: taken literally; may span lines.
    Single,
    /// `KEY="value"`: escapes decoded, `${NAME}` expanded; may span lines.
    Double,
}

/// One parsed assignment.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The value after unquoting, unescaping and expansion.
    pub value: Secret,
    /// The line the assignment starts on (1-based).
    pub line: usize,
    /// How the value was written.
    pub quote: Quote,
}

/// A key assigned more than once; the later assignment wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// The key.
    pub key: String,
    /// The line of the assignment that lost.
    pub first_line: usize,
    /// The line of the assignment that won.
    pub line: usize,
}

impl Duplicate {
    /// The warning for it, naming the file (`path`, as configured), the key and both lines.
    pub fn warning(&self, path: &str) -> String {
        format!(
            "{path}: {} is set on line {} and again on line {}; line {} wins",
            self.key, self.first_line, self.line, self.line
        )
    }
}

/// The result of parsing one file.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Every key with its last assignment.
    pub entries: BTreeMap<String, Entry>,
    /// Keys assigned more than once, in file order.
    pub duplicates: Vec<Duplicate>,
}

/// Why a `.env` file could not be parsed. Never holds any part of a value.
#[derive(Debug, Error)]
#[error("{path}:{line}: {kind}")]
pub struct ParseError {
    /// The file as the user configured it.
    pub path: String,
    /// The 1-based line the problem is on.
    pub line: usize,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

/// What is wrong with a line.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The file is not UTF-8.
    #[error("the file is not valid UTF-8")]
    DecodeText,
    /// The line is not blank, a comment, or `KEY=value`.
    #[error(
        "expected `KEY=value` (a key is letters, digits, `_` and `.`, not starting with a digit); \
         the line is not shown"
    )]
    ReadAssignment,
    /// A quote is opened and never closed.
    #[error("the {0} quote opened on this line is never closed; the value is not shown")]
    CloseQuote(&'static str),
    /// Something other than a comment follows a closing quote.
    #[error("unexpected text after the closing quote; the line is not shown")]
    EndAfterQuote,
    /// A `${` that is not `${NAME}` or `${NAME:-default}`.
    #[error("malformed `${{...}}` reference (expected `${{NAME}}` or `${{NAME:-default}}`)")]
    ParseReference,
    /// `${NAME}` names nothing defined earlier in the file or in the environment.
    #[error("`${{{0}}}` is not defined on an earlier line or in the environment")]
    ResolveVariable(String),
}

/// Parses a `.env` file. `path` is the file as the user configured it, used in errors; `env`
/// supplies `${NAME}` references not defined earlier in the file.
pub fn parse(path: &str, bytes: &[u8], env: &dyn Environment) -> Result<Parsed, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ParseError {
        path: path.to_owned(),
        line: 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
        kind: ParseErrorKind::DecodeText,
    })?;
    let mut parser = Parser {
        path,
        src: text.strip_prefix(BOM).unwrap_or(text),
        pos: 0,
        line: 1,
        env,
        parsed: Parsed::default(),
    };
    while parser.peek().is_some() {
        parser.statement()?;
    }
    Ok(parser.parsed)
}

/// A cursor over the text. `\r\n` reads as one `\n`, so no value keeps a CR from a line ending.
struct Parser<'a> {
    path: &'a str,
    src: &'a str,
    pos: usize,
    line: usize,
    env: &'a dyn Environment,
    parsed: Parsed,
}

impl<'a> Parser<'a> {
    /// Parses one blank line, comment line or assignment, with its line ending.
    fn statement(&mut self) -> Result<(), ParseError> {
        self.skip_blanks();
        match self.peek() {
            None => return Ok(()),
            Some('\n') => {
                self.bump();
                return Ok(());
            }
            Some('#') => {
                self.skip_comment();
                self.bump();
                return Ok(());
            }
            Some(_) => {}
        }
        let line = self.line;
        let key = self
            .key()
            .ok_or_else(|| self.error(line, ParseErrorKind::ReadAssignment))?;
        self.skip_blanks();
        if !self.eat('=') {
            return Err(self.error(line, ParseErrorKind::ReadAssignment));
        }
        self.skip_blanks();
        let (value, quote) = match self.peek() {
            Some('\'') => (self.single_quoted(line)?, Quote::Single),
            Some('"') => (self.double_quoted(line)?, Quote::Double),
            _ => (self.unquoted()?, Quote::None),
        };
        if quote != Quote::None {
            self.end_after_quote()?;
        }
        self.bump(); // the line ending, if any
        self.insert(
            key,
            Entry {
                value: Secret::new(value),
                line,
                quote,
            },
        );
        Ok(())
    }

    /// Reads the key, after an optional `export ` prefix. `None` when the line has no valid key.
    fn key(&mut self) -> Option<String> {
        let first = self.name()?;
        // `export` is a prefix only when whitespace and then another key follow it.
        if first == "export" && matches!(self.peek(), Some(' ' | '\t')) {
            let before = (self.pos, self.line);
            self.skip_blanks();
            if let Some(key) = self.name() {
                return Some(key.to_owned());
            }
            (self.pos, self.line) = before;
        }
        Some(first.to_owned())
    }

    /// Reads `[A-Za-z_][A-Za-z0-9_.]*`.
    fn name(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let rest = &self.src[start..];
        if !rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            return None;
        }
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        self.pos += len;
        Some(&self.src[start..start + len])
    }

    /// Reads an unquoted value up to the end of the line or a comment, trimmed, with `${NAME}`
    /// expanded. A `#` starts a comment only after whitespace.
    fn unquoted(&mut self) -> Result<String, ParseError> {
        let mut out = String::with_capacity(self.room_until('\n'));
        let mut after_blank = self.src[..self.pos].ends_with([' ', '\t']);
        loop {
            match self.peek() {
                None | Some('\n') => break,
                Some('#') if after_blank => {
                    self.skip_comment();
                    break;
                }
                Some('$') if self.src[self.pos..].starts_with("${") => {
                    self.bump();
                    self.reference(&mut out, false)?;
                    after_blank = false;
                }
                Some(c) => {
                    self.bump();
                    out.push(c);
                    after_blank = c == ' ' || c == '\t';
                }
            }
        }
        out.truncate(out.trim_end_matches([' ', '\t']).len());
        Ok(out)
    }

    /// Reads `'...'` literally; it may span lines.
    fn single_quoted(&mut self, line: usize) -> Result<String, ParseError> {
        self.bump();
        let mut out = String::with_capacity(self.room_until('\''));
        loop {
            match self.bump() {
                None => return Err(self.error(line, ParseErrorKind::CloseQuote("single"))),
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    /// Reads `"..."`, decoding `\n \t \r \" \\ \$` and expanding `${NAME}`; it may span lines.
    fn double_quoted(&mut self, line: usize) -> Result<String, ParseError> {
        self.bump();
        let mut out = String::with_capacity(self.room_until('"'));
        let unterminated = ParseErrorKind::CloseQuote("double");
        loop {
            match self.bump() {
                None => return Err(self.error(line, unterminated)),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    None => return Err(self.error(line, unterminated)),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some(c @ ('"' | '\\' | '$')) => out.push(c),
                    // Unknown escapes are kept as written.
                    Some(c) => out.extend(['\\', c]),
                },
                Some('$') if self.peek() == Some('{') => self.reference(&mut out, true)?,
                Some(c) => out.push(c),
            }
        }
    }

    /// Expands `{NAME}` or `{NAME:-default}` (the `$` is already read) into `out`. The default is
    /// literal text and is used when NAME is unset or empty.
    fn reference(&mut self, out: &mut String, in_quotes: bool) -> Result<(), ParseError> {
        let malformed = |p: &Self| p.error(p.line, ParseErrorKind::ParseReference);
        self.bump(); // `{`
        let name = self.name().ok_or_else(|| malformed(self))?;
        let default = if self.eat('}') {
            None
        } else if self.src[self.pos..].starts_with(":-") {
            self.pos += 2;
            let rest = &self.src[self.pos..];
            let end = rest
                .find(['}', '\n', '\r'])
                .ok_or_else(|| malformed(self))?;
            if !rest[end..].starts_with('}') || (in_quotes && rest[..end].contains('"')) {
                return Err(malformed(self));
            }
            self.pos += end + 1;
            Some(&rest[..end])
        } else {
            return Err(malformed(self));
        };
        match (self.lookup(name), default) {
            (Some(value), Some(default)) if value.is_empty() => out.push_str(default),
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(self.error(self.line, ParseErrorKind::ResolveVariable(name.to_owned())));
            }
        }
        Ok(())
    }

    /// The value of `name` from an earlier line, else from the environment.
    fn lookup(&self, name: &str) -> Option<Zeroizing<String>> {
        match self.parsed.entries.get(name) {
            Some(entry) => Some(Zeroizing::new(entry.value.expose().to_owned())),
            None => self.env.var(name).map(Zeroizing::new),
        }
    }

    /// After a closing quote: only blanks and an optional comment may follow on the line.
    fn end_after_quote(&mut self) -> Result<(), ParseError> {
        self.skip_blanks();
        match self.peek() {
            None | Some('\n') => Ok(()),
            Some('#') => {
                self.skip_comment();
                Ok(())
            }
            Some(_) => Err(self.error(self.line, ParseErrorKind::EndAfterQuote)),
        }
    }

    /// Records an assignment; a later one replaces an earlier one and is remembered.
    fn insert(&mut self, key: String, entry: Entry) {
        let line = entry.line;
        if let Some(old) = self.parsed.entries.insert(key.clone(), entry) {
            self.parsed.duplicates.push(Duplicate {
                key,
                first_line: old.line,
                line,
            });
        }
    }

    /// The next character; `\r\n` reads as `\n`.
    fn peek(&self) -> Option<char> {
        let rest = &self.src[self.pos..];
        if rest.starts_with("\r\n") {
            return Some('\n');
        }
        rest.chars().next()
    }

    /// Consumes the next character, counting lines.
    fn bump(&mut self) -> Option<char> {
        let rest = &self.src[self.pos..];
        let (c, len) = if rest.starts_with("\r\n") {
            ('\n', 2)
        } else {
            let c = rest.chars().next()?;
            (c, c.len_utf8())
        };
        self.pos += len;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    /// Consumes `c` if it is next.
    fn eat(&mut self, c: char) -> bool {
        let next = self.peek() == Some(c);
        if next {
            self.bump();
        }
        next
    }

    /// Skips spaces and tabs.
    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
    }

    /// Skips to the end of the line, leaving the line ending.
    fn skip_comment(&mut self) {
        while !matches!(self.peek(), None | Some('\n')) {
            self.bump();
        }
    }

    /// Bytes up to the next `stop`, so a value's buffer is sized once and not left behind in
    /// freed memory by reallocation (expansions may still grow it).
    fn room_until(&self, stop: char) -> usize {
        let rest = &self.src[self.pos..];
        rest.find(stop).unwrap_or(rest.len())
    }

    fn error(&self, line: usize, kind: ParseErrorKind) -> ParseError {
        ParseError {
            path: self.path.to_owned(),
            line,
            kind,
        }
    }
}

#[cfg(test)]
mod tests;
