//! Test-only: a committed vector file must be exactly what its generator
//! writes today. With `CASEGATE_WRITE_VECTORS` set, the generator's output
//! is written first (regeneration), so the check then passes by design and
//! `git diff` shows what changed.

use serde_json::Value;

/// Pretty JSON with a final newline: the form vector files are committed in.
pub(crate) fn pretty(doc: &Value) -> String {
    let mut text = serde_json::to_string_pretty(doc).unwrap_or_default();
    text.push('\n');
    text
}

/// Fails unless the file at `path` equals `generated`; `test` names the
/// test to rerun with `CASEGATE_WRITE_VECTORS=1`.
pub(crate) fn assert_matches(path: &str, generated: &str, test: &str) {
    if std::env::var_os("CASEGATE_WRITE_VECTORS").is_some() {
        std::fs::write(path, generated).unwrap();
    }
    // Same inputs, same nonces → same file; a silent format change shows
    // up here as well as in the vector tests under tests/.
    assert!(
        std::fs::read_to_string(path).unwrap() == generated,
        "{path} differs from its generator; regenerate with: CASEGATE_WRITE_VECTORS=1 cargo test --lib {test}"
    );
}
