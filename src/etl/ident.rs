//! Header names turned into SQL identifiers, and identifiers quoted for SQL text.
//!
//! The rules, applied in order to each header:
//! 1. lowercase it; every run of characters that are not letters or digits becomes one `_`;
//!    leading and trailing `_` are dropped (`Cost Total $` becomes `cost_total`);
//! 2. an empty result becomes `column_<n>`, with `n` the 1-based position of the column;
//! 3. a result that starts with a digit gets the prefix `c_` (`2019 Sales` becomes
//!    `c_2019_sales`);
//! 4. the result is cut to [`MAX_IDENT_BYTES`] bytes, PostgreSQL's limit;
//! 5. a name already taken by an earlier column gets `_2`, `_3`, ... (the first free one).
//!
//! Reserved words (`order`, `select`) stay as they are: identifiers are always quoted.

use std::collections::HashSet;

/// PostgreSQL truncates longer identifiers; names are cut here instead, before duplicates are
/// resolved, so two long headers cannot end up with the same name.
pub const MAX_IDENT_BYTES: usize = 63;

/// The prefix of a name that would start with a digit.
const DIGIT_PREFIX: &str = "c_";

/// Turns every header into a distinct SQL identifier (see the module docs for the rules).
pub fn column_names<S: AsRef<str>>(headers: &[S]) -> Vec<String> {
    let mut taken = HashSet::with_capacity(headers.len());
    let mut names = Vec::with_capacity(headers.len());
    for (i, header) in headers.iter().enumerate() {
        let base = normalize(header.as_ref(), i + 1);
        let name = first_free(&base, &taken);
        taken.insert(name.clone());
        names.push(name);
    }
    names
}

/// Rules 1 to 4 for one header at 1-based `position`.
pub fn normalize(header: &str, position: usize) -> String {
    let mut out = String::with_capacity(header.len());
    for c in header.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        out = format!("column_{position}");
    } else if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, DIGIT_PREFIX);
    }
    truncate(&mut out, MAX_IDENT_BYTES);
    out
}

fn first_free(base: &str, taken: &HashSet<String>) -> String {
    if !taken.contains(base) {
        return base.to_string();
    }
    (2..)
        .map(|n| {
            let suffix = format!("_{n}");
            let mut stem = base.to_string();
            truncate(&mut stem, MAX_IDENT_BYTES - suffix.len());
            stem + &suffix
        })
        .find(|candidate| !taken.contains(candidate))
        .expect("an unbounded range always yields a free name")
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Whether `s` is a plain identifier: ASCII letters, digits and `_`, not starting with a digit.
pub fn is_plain(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Quotes an identifier for SQL text: `a"b` becomes `"a""b"`.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a table name that may be `schema.name`, each part on its own.
pub fn quote_table(table: &str) -> String {
    table.split('.').map(quote).collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn birdstrikes_headers_become_snake_case() {
        let names = column_names(&["Cost Total $", "Speed IAS in knots", "Airport Name"]);
        assert_eq!(names, ["cost_total", "speed_ias_in_knots", "airport_name"]);
    }

    #[test]
    fn duplicates_get_the_first_free_suffix() {
        let names = column_names(&["a", "A", "a_2", "a "]);
        assert_eq!(names, ["a", "a_2", "a_2_2", "a_3"]);
    }

    #[test]
    fn leading_digit_gets_a_prefix() {
        assert_eq!(normalize("2019 Sales", 1), "c_2019_sales");
        assert_eq!(normalize("  9", 1), "c_9");
    }

    #[test]
    fn empty_and_symbol_only_headers_get_their_position() {
        assert_eq!(
            column_names(&["", "$$$", "x"]),
            ["column_1", "column_2", "x"]
        );
    }

    #[test]
    fn reserved_words_stay_and_are_quoted() {
        assert_eq!(normalize("Order", 1), "order");
        assert_eq!(quote("order"), "\"order\"");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_table("etl.order"), "\"etl\".\"order\"");
    }

    #[test]
    fn non_ascii_letters_are_kept_lowercased() {
        assert_eq!(normalize("Größe (cm)", 1), "größe_cm");
    }

    #[test]
    fn long_names_are_cut_and_stay_distinct() {
        let long = "x".repeat(80);
        let names = column_names(&[long.as_str(), long.as_str()]);
        assert_eq!(names[0].len(), MAX_IDENT_BYTES);
        assert_eq!(names[1].len(), MAX_IDENT_BYTES);
        assert!(names[1].ends_with("_2"));
    }

    #[test]
    fn plain_identifiers() {
        assert!(is_plain("birdstrikes_2"));
        assert!(!is_plain("2x") && !is_plain("a-b") && !is_plain(""));
    }
}
