//! Unit tests of the `.env` parser, one rule per test.

use credchain_core::MapEnv;
use rand::{Rng, SeedableRng};

use super::*;

fn parse_with(text: &str, env: &MapEnv) -> Result<Parsed, ParseError> {
    parse(".env", text.as_bytes(), env)
}

fn parse_ok(text: &str) -> Parsed {
    parse_with(text, &MapEnv::default()).expect("the text parses")
}

fn value(parsed: &Parsed, key: &str) -> String {
    parsed.entries[key].value.expose().to_owned()
}

fn parse_err(text: &str) -> ParseError {
    parse_with(text, &MapEnv::default()).expect_err("the text must not parse")
}

#[test]
fn unquoted_value_ends_at_comment_after_whitespace() {
    let p = parse_ok("PREFECT_API_URL=http://127.0.0.1:4200/api # local\n");
    assert_eq!(value(&p, "PREFECT_API_URL"), "http://127.0.0.1:4200/api");
}

#[test]
fn hash_without_whitespace_before_it_is_part_of_the_value() {
    let p = parse_ok("PREFECT_API_KEY=pnu_FAKE#a1b2\nB=#lead\n");
    assert_eq!(value(&p, "PREFECT_API_KEY"), "pnu_FAKE#a1b2");
    assert_eq!(value(&p, "B"), "#lead");
}

#[test]
fn hash_after_whitespace_following_equals_leaves_an_empty_value() {
    let p = parse_ok("A= # only a comment\n");
    assert_eq!(value(&p, "A"), "");
}

#[test]
fn hash_inside_double_quotes_is_part_of_the_value() {
    let p = parse_ok("DB_PASSWORD=\"p#ss word\"\n");
    assert_eq!(value(&p, "DB_PASSWORD"), "p#ss word");
}

#[test]
fn export_prefix_is_only_the_word_export_and_whitespace() {
    let p = parse_ok(
        "export PREFECT_API_KEY=pnu_FAKE_KEY_001\nexport\tport_token=tok_fake\nexporter=1\n",
    );
    let keys: Vec<&str> = p.entries.keys().map(String::as_str).collect();
    assert_eq!(keys, ["PREFECT_API_KEY", "exporter", "port_token"]);
    assert_eq!(value(&p, "exporter"), "1");
}

#[test]
fn a_key_named_export_is_allowed() {
    let p = parse_ok("export=1\nexport = 2\n");
    assert_eq!(value(&p, "export"), "2");
}

#[test]
fn key_with_spaces_is_malformed_and_the_error_hides_the_value() {
    let err = parse_err("A=1\nPREFECT API KEY=oops\n");
    assert_eq!(err.line, 2);
    assert_eq!(err.kind, ParseErrorKind::ReadAssignment);
    let text = format!("{err} {err:?}");
    assert!(text.contains(".env:2"), "{text}");
    assert!(!text.contains("oops"), "{text}");
}

#[test]
fn line_without_equals_is_malformed() {
    assert_eq!(
        parse_err("JUST_A_NAME\n").kind,
        ParseErrorKind::ReadAssignment
    );
    assert_eq!(parse_err("1KEY=x\n").kind, ParseErrorKind::ReadAssignment);
    assert_eq!(parse_err("=x\n").kind, ParseErrorKind::ReadAssignment);
}

#[test]
fn whitespace_around_equals_and_unquoted_values_is_trimmed() {
    let p = parse_ok("  KEY  =   spaced value \t \n");
    assert_eq!(value(&p, "KEY"), "spaced value");
}

#[test]
fn dotted_keys_are_allowed() {
    let p = parse_ok("api.key=x\n");
    assert_eq!(value(&p, "api.key"), "x");
}

#[test]
fn single_quotes_are_literal_and_may_span_lines() {
    let p = parse_ok("A='x\\n${HOME} \"q\"'\nB='line1\nline2'\n");
    assert_eq!(value(&p, "A"), "x\\n${HOME} \"q\"");
    assert_eq!(value(&p, "B"), "line1\nline2");
    assert_eq!(p.entries["B"].quote, Quote::Single);
}

#[test]
fn double_quote_escapes_are_decoded() {
    let p = parse_ok(r#"A="a\nb\tc\rd\"e\\f\$g\qh""#);
    assert_eq!(value(&p, "A"), "a\nb\tc\rd\"e\\f$g\\qh");
}

#[test]
fn pem_block_in_double_quotes_keeps_its_lines() {
    let text = "TLS_KEY=\"-----BEGIN PRIVATE KEY-----\nMIIFAKE\nFAKE==\n-----END PRIVATE KEY-----\n\"\nNEXT=1\n";
    let p = parse_ok(text);
    assert_eq!(
        value(&p, "TLS_KEY"),
        "-----BEGIN PRIVATE KEY-----\nMIIFAKE\nFAKE==\n-----END PRIVATE KEY-----\n"
    );
    assert_eq!(p.entries["TLS_KEY"].line, 1);
    assert_eq!(p.entries["NEXT"].line, 6);
}

#[test]
fn comment_after_closing_quote_is_allowed() {
    let p = parse_ok("A=\"x\" # note\nB='y'# note\n");
    assert_eq!(value(&p, "A"), "x");
    assert_eq!(value(&p, "B"), "y");
}

#[test]
fn text_after_closing_quote_is_an_error_without_the_value() {
    let err = parse_err("A=\"pnu_FAKE_x\"tail\n");
    assert_eq!(err.kind, ParseErrorKind::EndAfterQuote);
    assert!(!format!("{err} {err:?}").contains("pnu_FAKE_x"));
}

#[test]
fn unterminated_quote_names_its_line_and_hides_the_value() {
    for text in [
        "A=1\nB=\"pnu_FAKE_open\nC=2\n",
        "A=1\nB='pnu_FAKE_open\nC=2\n",
    ] {
        let err = parse_err(text);
        assert_eq!(err.line, 2);
        let shown = format!("{err} {err:?}");
        assert!(shown.contains(".env:2"), "{shown}");
        assert!(!shown.contains("pnu_FAKE_open"), "{shown}");
        assert!(!shown.contains("C=2"), "{shown}");
    }
}

#[test]
fn bom_at_start_is_ignored() {
    let p = parse_ok("\u{feff}PREFECT_API_KEY=pnu_FAKE_KEY_001\n");
    assert_eq!(value(&p, "PREFECT_API_KEY"), "pnu_FAKE_KEY_001");
}

#[test]
fn crlf_endings_leave_no_cr() {
    let text = "A=1\r\nB=\"two\r\nlines\"\r\nC='x'\r\n# c\r\nD=4 # c\r\nE=5";
    let p = parse_ok(text);
    for entry in p.entries.values() {
        assert!(!entry.value.expose().contains('\r'));
    }
    assert_eq!(value(&p, "B"), "two\nlines");
    assert_eq!(value(&p, "D"), "4");
    assert_eq!(p.entries["E"].line, 7);
}

#[test]
fn bare_dollar_is_literal() {
    let p = parse_ok("PREFECT_API_KEY=pnu_ab$cdEF@gh\nB=\"$x $ {y}\"\n");
    assert_eq!(value(&p, "PREFECT_API_KEY"), "pnu_ab$cdEF@gh");
    assert_eq!(value(&p, "B"), "$x $ {y}");
}

#[test]
fn braced_reference_expands_from_earlier_lines_then_the_environment() {
    let env = MapEnv::new([("PREFECT_HOST", "http://from-env"), ("ONLY_ENV", "e")]);
    let text = "PREFECT_HOST=http://127.0.0.1:4200\nPREFECT_API_URL=${PREFECT_HOST}/api\nQ=\"${ONLY_ENV}-x\"\n";
    let p = parse_with(text, &env).unwrap();
    assert_eq!(value(&p, "PREFECT_API_URL"), "http://127.0.0.1:4200/api");
    assert_eq!(value(&p, "Q"), "e-x");
}

#[test]
fn later_lines_are_not_visible_to_earlier_references() {
    let err = parse_err("A=${B}\nB=1\n");
    assert_eq!(err.kind, ParseErrorKind::ResolveVariable("B".into()));
    assert_eq!(err.line, 1);
}

#[test]
fn default_is_used_when_unset_or_empty() {
    let p = parse_ok("E=\nA=${UNSET:-fallback}\nB=${E:-other}\nC=\"${UNSET:-in quotes}\"\n");
    assert_eq!(value(&p, "A"), "fallback");
    assert_eq!(value(&p, "B"), "other");
    assert_eq!(value(&p, "C"), "in quotes");
}

#[test]
fn single_quoted_and_escaped_references_do_not_expand() {
    let p = parse_ok("A='${NOPE}'\nB=\"\\${NOPE}\"\n");
    assert_eq!(value(&p, "A"), "${NOPE}");
    assert_eq!(value(&p, "B"), "${NOPE}");
}

#[test]
fn undefined_reference_names_its_line() {
    let err = parse_err("A=1\n\nBAD=${NOT_DEFINED}\n");
    assert_eq!(err.line, 3);
    assert!(err.to_string().starts_with(".env:3: "), "{err}");
}

#[test]
fn malformed_references_are_errors() {
    for text in [
        "A=${\n",
        "A=${1X}\n",
        "A=${X\n",
        "A=${X-y}\n",
        "A=\"${X:-a\"b}\"\n",
    ] {
        assert_eq!(
            parse_err(text).kind,
            ParseErrorKind::ParseReference,
            "{text:?}"
        );
    }
}

#[test]
fn key_defined_twice_takes_the_last_value_and_records_both_lines() {
    let p = parse_ok("K=first\nOTHER=x\nK=second\n");
    assert_eq!(value(&p, "K"), "second");
    assert_eq!(
        p.duplicates,
        [Duplicate {
            key: "K".into(),
            first_line: 1,
            line: 3
        }]
    );
}

#[test]
fn blank_and_comment_lines_are_skipped() {
    let p = parse_ok("\n   \n# comment\n  # indented comment\n\tA=1\n");
    assert_eq!(p.entries.len(), 1);
    assert_eq!(p.entries["A"].line, 5);
}

#[test]
fn non_utf8_names_its_line() {
    let err = parse(".env", b"A=1\nB=\xff\n", &MapEnv::default()).unwrap_err();
    assert_eq!((err.line, err.kind), (2, ParseErrorKind::DecodeText));
}

#[test]
fn empty_file_has_no_entries() {
    assert!(parse_ok("").entries.is_empty());
}

/// Characters that exercise every branch of the parser.
const ALPHABET: &[char] = &[
    'A', 'b', 'Z', '_', '.', '1', '=', ' ', '\t', '\n', '\r', '#', '"', '\'', '\\', '$', '{', '}',
    ':', '-', 'x', '\u{7}', '\u{feff}', 'é',
];

fn random_text(rng: &mut impl Rng) -> String {
    let len = rng.random_range(0..60);
    let mut text: String = (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
        .collect();
    if rng.random_bool(0.5) {
        text.insert_str(
            0,
            ["export ", "K=", "K=\"", "K='", "K=${"][rng.random_range(0..5)],
        );
    }
    text
}

#[test]
fn random_lines_never_panic_the_parser() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_c0de);
    let env = MapEnv::new([("x", "1")]);
    for _ in 0..20_000 {
        let text = random_text(&mut rng);
        if let Err(err) = parse_with(&text, &env) {
            assert!(err.to_string().starts_with(".env:"), "{err}");
            assert!(err.line >= 1 && err.line <= text.matches('\n').count() + 1);
        }
    }
}

#[test]
fn random_plain_values_round_trip() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..2_000 {
        let raw: String = (0..rng.random_range(1..40))
            .map(|_| char::from(rng.random_range(b'!'..=b'~')))
            .filter(|c| !matches!(c, '"' | '\'' | '\\' | '$' | '#'))
            .collect();
        let p = parse_ok(&format!("K=\"{raw}\"\n"));
        assert_eq!(value(&p, "K"), raw);
    }
}
