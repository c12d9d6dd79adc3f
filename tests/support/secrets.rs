//! Checks that captured output does not contain a secret.

/// Panics when any of `secrets` occurs in `haystack`, naming the secret by its index only (the
/// message never repeats the secret or the output). An empty secret is a test bug and panics too.
pub fn assert_no_secret(haystack: &str, secrets: &[&str]) {
    for (index, secret) in secrets.iter().enumerate() {
        assert!(
            !secret.is_empty(),
            "assert_no_secret: secret #{index} is empty, nothing to look for"
        );
        if let Some(at) = haystack.find(secret) {
            panic!(
                "secret #{index} ({} bytes) leaked: found at byte {at} of {} bytes of output",
                secret.len(),
                haystack.len()
            );
        }
    }
}
