//! Unit tests of the source registry and the default chain.

use std::path::Path;
use std::sync::Arc;

use credchain_core::{ErrorKind, MapEnv, SourceSettings};

use super::*;

fn table(text: &str) -> toml::Table {
    text.parse().expect("test options are valid TOML")
}

fn build_err(kind: &str, options: &str) -> SourceError {
    let env = Arc::new(MapEnv::default());
    build(kind, SourceSettings::new("mine"), table(options), env).expect_err("build must fail")
}

#[test]
fn each_builtin_kind_builds_with_its_defaults() {
    let env: Arc<dyn Environment> = Arc::new(MapEnv::default());
    for (kind, options) in [
        ("env", ""),
        ("dotenv", ""),
        ("file", "dir = \"/run/secrets\""),
    ] {
        let source = build(kind, SourceSettings::new(kind), table(options), env.clone()).unwrap();
        assert_eq!(source.name(), kind);
    }
}

#[test]
fn unknown_kind_lists_the_known_kinds() {
    let err = build_err("consul", "");
    assert_eq!(err.kind(), ErrorKind::Invalid);
    let text = err.to_string();
    assert!(text.contains("unknown type `consul`"), "{text}");
    assert!(text.contains("env, dotenv, file"), "{text}");
}

#[test]
fn provider_kind_without_its_feature_names_the_feature() {
    // Called directly: which provider features are on depends on how the tests are built.
    let err = unknown_kind("vault");
    assert!(err.to_string().contains("cargo feature `vault`"), "{err}");
    assert!(err.hint().unwrap().contains("--features vault"));
}

#[test]
fn every_kind_with_a_builder_is_either_builtin_or_a_feature_kind() {
    for kind in known_kinds() {
        assert!(["env", "dotenv", "file"].contains(&kind) || FEATURE_KINDS.contains(&kind));
    }
}

#[test]
fn unknown_option_is_named() {
    let err = build_err("dotenv", "pth = \".env\"");
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.to_string().contains("`pth`"), "{err}");
    assert!(err.to_string().contains("`dotenv` options"), "{err}");
    assert!(build_err("env", "prefix = \"X\"")
        .to_string()
        .contains("`prefix`"));
}

#[test]
fn file_source_requires_dir() {
    let err = build_err("file", "");
    assert!(err.to_string().contains("`dir`"), "{err}");
}

#[test]
fn default_chain_is_env_then_dotenv() {
    let chain = default_chain(Path::new("./.env"), Arc::new(MapEnv::default()));
    let names: Vec<&str> = chain
        .iter()
        .map(|(s, src)| {
            assert_eq!(s.name, src.name());
            src.name()
        })
        .collect();
    assert_eq!(names, ["env", "dotenv"]);
}

#[test]
fn shown_path_drops_a_leading_dot_slash() {
    assert_eq!(shown_path(Path::new("./.env")), ".env");
    assert_eq!(shown_path(Path::new(".env")), ".env");
    assert_eq!(shown_path(Path::new("/srv/.env")), "/srv/.env");
    assert_eq!(shown_path(Path::new(".")), ".");
}
