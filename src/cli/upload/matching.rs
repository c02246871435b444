//! The gateway's side of the story, from the patient's case manifest: the
//! finished files it holds, as (name, size) → SHA-256s, taken one by one as
//! local files are matched to them. A local file counts as on the gateway
//! only when name, size *and* SHA-256 agree: a hospital CD has many files
//! of the same name and size (`IM000001` in every series folder), so name
//! and size alone would skip files that were never sent.

use std::collections::HashMap;

use serde_json::Value;

#[derive(Debug, Default)]
pub struct ServerFiles {
    finished: HashMap<(String, u64), Vec<String>>,
}

impl ServerFiles {
    /// The complete (or flagged: stored, but not what it claimed to be)
    /// files of a manifest whose SHA-256 is 64 lowercase hex digits.
    pub fn from_manifest(manifest: &Value) -> ServerFiles {
        let mut finished: HashMap<(String, u64), Vec<String>> = HashMap::new();
        for f in manifest["files"].as_array().into_iter().flatten() {
            let (Some(name), Some(size), Some(sha)) = (
                f["filename"].as_str(),
                f["size"].as_u64(),
                f["sha256"].as_str(),
            ) else {
                continue;
            };
            // Printed on the receipt: only a real SHA-256, never whatever
            // a hostile server sends (terminal escapes).
            if !crate::hex::is_lower(sha, 32) {
                continue;
            }
            if matches!(f["state"].as_str(), Some("complete" | "flagged")) {
                finished
                    .entry((name.to_owned(), size))
                    .or_default()
                    .push(sha.to_owned());
            }
        }
        ServerFiles { finished }
    }

    /// Whether some finished file has this name and size (then the local
    /// file is worth hashing to compare).
    pub fn has(&self, name: &str, size: u64) -> bool {
        self.finished
            .get(&(name.to_owned(), size))
            .is_some_and(|shas| !shas.is_empty())
    }

    /// Takes one finished file with this name, size and SHA-256.
    pub fn take(&mut self, name: &str, size: u64, sha256: &str) -> bool {
        let Some(shas) = self.finished.get_mut(&(name.to_owned(), size)) else {
            return false;
        };
        match shas.iter().position(|s| s == sha256) {
            Some(i) => {
                shas.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Any SHA-256 the gateway recorded for this name and size (to show a
    /// mismatch).
    pub fn any(&self, name: &str, size: u64) -> Option<String> {
        self.finished
            .get(&(name.to_owned(), size))?
            .first()
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_and_size_are_told_apart_by_hash() {
        let (aa, bb, cc) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        let m = serde_json::json!({"files": [
            {"filename": "IM0", "size": 5, "sha256": aa, "state": "complete"},
            {"filename": "IM0", "size": 5, "sha256": bb, "state": "complete"},
            {"filename": "IM0", "size": 5, "sha256": null, "state": "uploading"},
        ]});
        let mut s = ServerFiles::from_manifest(&m);
        assert!(s.has("IM0", 5) && !s.has("IM0", 6));
        assert!(s.take("IM0", 5, &bb));
        assert!(!s.take("IM0", 5, &bb), "each server file matches once");
        assert!(!s.take("IM0", 5, &cc));
        assert_eq!(s.any("IM0", 5), Some(aa));
    }

    #[test]
    fn only_real_sha256_values_are_taken() {
        let escape = format!("\u{1b}[2J{}", "a".repeat(60));
        let m = serde_json::json!({"files": [
            {"filename": "x", "size": 5, "sha256": escape, "state": "complete"},
            {"filename": "x", "size": 5, "sha256": "A".repeat(64), "state": "complete"},
        ]});
        let s = ServerFiles::from_manifest(&m);
        assert!(!s.has("x", 5));
        assert_eq!(s.any("x", 5), None);
    }
}
