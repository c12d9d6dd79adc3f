//! The server's error text from an answer body. Prefect uses two envelopes: `detail` (FastAPI
//! and route errors) and `exception_message` (its own handlers and middleware), the latter with
//! `exception_detail` for validation errors.

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use serde_json::Value;

/// The longest error text kept from a body.
const MAX_DETAIL_CHARS: usize = 300;
/// The most validation errors listed.
const MAX_VALIDATION_ERRORS: usize = 3;

/// The error text of a body: `detail`, else `exception_message` (with the first validation
/// errors), else a JSON string, else the first line of the text; `""` for an empty body.
pub(crate) fn error_detail(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        if let Some(text) = json_detail(&value) {
            return shorten(&text);
        }
    }
    let text = String::from_utf8_lossy(body);
    if looks_like_html(&text) {
        return "an HTML page".to_string();
    }
    shorten(
        text.lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or(""),
    )
}

fn json_detail(value: &Value) -> Option<String> {
    if let Some(detail) = value.get("detail") {
        return Some(as_text(detail));
    }
    if let Some(message) = value.get("exception_message") {
        let mut text = as_text(message);
        if let Some(Value::Array(errors)) = value.get("exception_detail") {
            let listed: Vec<String> = errors
                .iter()
                .take(MAX_VALIDATION_ERRORS)
                .filter_map(validation_error)
                .collect();
            if !listed.is_empty() {
                text = format!("{text} ({})", listed.join("; "));
            }
        }
        return Some(text);
    }
    match value {
        Value::String(text) => Some(text.clone()),
        _ => None,
    }
}

fn validation_error(error: &Value) -> Option<String> {
    let msg = error.get("msg")?.as_str()?;
    let loc = error
        .get("loc")
        .and_then(Value::as_array)
        .map(|parts| parts.iter().map(as_text).collect::<Vec<_>>().join("."))
        .unwrap_or_default();
    Some(if loc.is_empty() {
        msg.to_string()
    } else {
        format!("{loc}: {msg}")
    })
}

fn as_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn shorten(text: &str) -> String {
    let one_line = text.replace(['\r', '\n'], " ");
    match one_line.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

fn looks_like_html(text: &str) -> bool {
    let start: String = text
        .trim_start()
        .chars()
        .take(15)
        .collect::<String>()
        .to_ascii_lowercase();
    start.starts_with("<!doctype html") || start.starts_with("<html")
}

/// Whether an answer is an HTML page (Prefect's UI, a proxy's error page).
pub(crate) fn is_html(headers: &HeaderMap, body: &[u8]) -> bool {
    let typed = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    typed || looks_like_html(&String::from_utf8_lossy(&body[..body.len().min(64)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_envelopes_are_read() {
        assert_eq!(
            error_detail(br#"{"detail":"Flow not found"}"#),
            "Flow not found"
        );
        assert_eq!(
            error_detail(br#"{"exception_message":"Unauthorized"}"#),
            "Unauthorized"
        );
        let validation = br#"{"exception_message":"Invalid request received.",
            "exception_detail":[{"type":"x","loc":["body","name"],"msg":"bad name"}]}"#;
        assert_eq!(
            error_detail(validation),
            "Invalid request received. (body.name: bad name)"
        );
        assert_eq!(
            error_detail(br#"{"detail":[{"msg":"m"}]}"#),
            r#"[{"msg":"m"}]"#
        );
    }

    #[test]
    fn text_and_html_bodies() {
        assert_eq!(error_detail(b""), "");
        assert_eq!(error_detail(b"\n  bad gateway\nmore"), "bad gateway");
        assert_eq!(error_detail(b"<!DOCTYPE html><html>..."), "an HTML page");
        assert!(is_html(&HeaderMap::new(), b"<html><body>"));
        let long = "x".repeat(1000);
        assert!(error_detail(long.as_bytes()).chars().count() <= MAX_DETAIL_CHARS + 1);
    }
}
