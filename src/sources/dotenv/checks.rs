//! What `credchain doctor` warns about in a `.env` file: its permissions, whether git ignores
//! it, values whose quoting looks accidental, and conflicting Prefect settings.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

use super::parse::{Parsed, Quote};

/// Set together, these two make the Prefect client refuse to run (a configuration error).
const CONFLICTING_KEYS: [&str; 2] = ["PREFECT_API_KEY", "PREFECT_API_AUTH_STRING"];

/// Every warning for the file at `path` (shown to the user as `shown`). None names a value.
pub(super) async fn warnings(path: &Path, shown: &str, parsed: &Parsed) -> Vec<String> {
    let mut warnings = Vec::new();
    warnings.extend(permissions(path, shown));
    warnings.extend(not_ignored_by_git(path, shown).await);
    warnings.extend(parsed.duplicates.iter().map(|dup| dup.warning(shown)));
    warnings.extend(quoting(shown, parsed));
    warnings.extend(conflicting_keys(shown, parsed));
    warnings
}

/// The file can be read or written by group or others.
fn permissions(path: &Path, shown: &str) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "{shown} is accessible to group or others (mode {:03o}); run `chmod 600 {shown}`",
            mode & 0o777
        )
    })
}

/// The file is inside a git work tree and git does not ignore it. Quiet when git is missing or
/// the file is outside a work tree.
async fn not_ignored_by_git(path: &Path, shown: &str) -> Option<String> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let inside = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--is-inside-work-tree"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
        .ok()?;
    if !inside.status.success() || inside.stdout.trim_ascii() != b"true" {
        return None;
    }
    let ignored = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["check-ignore", "-q", "--"])
        .arg(path.file_name()?)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .ok()?;
    // Exit code 1 means "not ignored"; 0 is ignored and 128 is a git failure.
    (ignored.code() == Some(1)).then(|| {
        format!("{shown} is in a git work tree and git does not ignore it; add it to .gitignore")
    })
}

/// Values whose quotes look accidental: quote characters left after parsing, or whitespace
/// just inside the quotes.
fn quoting(shown: &str, parsed: &Parsed) -> Vec<String> {
    let mut warnings = Vec::new();
    for (key, entry) in &parsed.entries {
        let value = entry.value.expose();
        let at = format!("{shown}:{}", entry.line);
        if value.starts_with(['"', '\'']) || value.ends_with(['"', '\'']) {
            warnings.push(format!(
                "{at}: the value of {key} starts or ends with a quote character after parsing \
                 (quoted twice?); that quote is part of the value"
            ));
        }
        if entry.quote != Quote::None && has_edge_whitespace(value) {
            warnings.push(format!(
                "{at}: the value of {key} has whitespace just inside its quotes, which is kept"
            ));
        }
    }
    warnings
}

/// Leading or trailing whitespace, except the final line break of a multi-line value (a PEM
/// block usually ends with one).
fn has_edge_whitespace(value: &str) -> bool {
    let body = match value.strip_suffix('\n') {
        Some(rest) if rest.contains('\n') => rest,
        _ => value,
    };
    body.starts_with(char::is_whitespace) || body.ends_with(char::is_whitespace)
}

fn conflicting_keys(shown: &str, parsed: &Parsed) -> Option<String> {
    let [key, auth] = CONFLICTING_KEYS.map(|k| parsed.entries.get(k));
    let (key, auth) = (key?, auth?);
    Some(format!(
        "{shown}: both {} (line {}) and {} (line {}) are set; the Prefect client refuses to run \
         (exit 2) while both resolve, so keep only the one your server expects",
        CONFLICTING_KEYS[0], key.line, CONFLICTING_KEYS[1], auth.line
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_whitespace_ignores_the_last_newline_of_a_multi_line_value() {
        assert!(!has_edge_whitespace(
            "-----BEGIN-----\nAAA\n-----END-----\n"
        ));
        assert!(has_edge_whitespace("pnu_FAKE\n"));
        assert!(has_edge_whitespace(" pnu_FAKE"));
        assert!(has_edge_whitespace("pnu_FAKE\t"));
        assert!(!has_edge_whitespace("pnu FAKE"));
    }
}
