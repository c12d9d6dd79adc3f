//! Link settings of the `credchain` binary on x86-64 Linux; the code itself is compiled as usual.
//!
//! 1. A position-dependent executable (`-no-pie`). A position-independent one has every pointer
//!    in its read-only data (vtables, static tables) relocated by the loader at start-up: about a
//!    megabyte of relocation entries is read and the pages they touch become private memory of
//!    every process. Linked at a fixed address, the same pages stay shared, clean file pages,
//!    and are read only when used: `credchain check` peaks about 1.8 MB lower. (Position-
//!    independent code links into a fixed-address executable unchanged.)
//! 2. In release builds linked by LLD (Rust's default linker on x86_64-unknown-linux-gnu since
//!    1.90), the functions the common commands run are laid out first and side by side, in the
//!    order of `scripts/link/symbol-order.txt`. The kernel maps code in 64 KiB windows around
//!    every page touched; spread over 13 MB, a short command's functions kept about 7 MB of code
//!    resident, packed they keep about 1 MB (`credchain check` peaks at about 4.7 MB instead of
//!    10.4 MB). `scripts/symbol-order` regenerates the file; names the linker does not find are
//!    ignored, so a stale file only costs memory. `CREDCHAIN_LINK_ORDER=0` turns this off, for a
//!    toolchain set up to link with another linker.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CREDCHAIN_LINK_ORDER");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os != "linux" || arch != "x86_64" {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-no-pie");

    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/link/symbol-order.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    let wanted = std::env::var("CREDCHAIN_LINK_ORDER").map_or(true, |v| v != "0");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let gnu = std::env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    if wanted && release && gnu && links_with_lld() && order.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether rustc links with its own LLD: its default on x86_64-unknown-linux-gnu since 1.90,
/// unless the flags choose another linker flavor or turn the self-contained linker off.
fn links_with_lld() -> bool {
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker-features") || flags.contains("link-self-contained") {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(output) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&output.stdout);
    let minor = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
}
