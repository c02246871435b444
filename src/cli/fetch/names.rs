//! Where a granted file lands under `--out`: one safe path component per
//! stored name, so nothing is written outside the output folder.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// One path component from a stored name: no separators, no `..`, no
/// control characters, never empty.
pub fn safe_component(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() || c == '\0' {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.').to_string();
    if trimmed.is_empty() {
        "unnamed".into()
    } else {
        trimmed.chars().take(200).collect()
    }
}

/// Where a file goes under `out`: `category/[study/series/]filename`.
pub fn destination(out: &Path, file: &Value) -> PathBuf {
    let mut path = out.join(safe_component(file["category"].as_str().unwrap_or("other")));
    if let Some(d) = file["dicom"].as_object() {
        for key in ["study_instance_uid", "series_instance_uid"] {
            if let Some(uid) = d.get(key).and_then(Value::as_str).filter(|u| !u.is_empty()) {
                path = path.join(safe_component(uid));
            }
        }
    }
    path.join(safe_component(
        file["filename"].as_str().unwrap_or("unnamed"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape() {
        let out = Path::new("/tmp/out");
        for (name, cat) in [
            ("../../etc/passwd", "other"),
            ("..", "../x"),
            ("/abs/path", "a/b"),
            ("a\u{0}b", "other"),
            ("", ""),
        ] {
            let file = serde_json::json!({ "filename": name, "category": cat });
            let d = destination(out, &file);
            assert!(d.starts_with(out), "{d:?}");
            assert_eq!(
                d.components().count(),
                out.components().count() + 2,
                "{d:?}"
            );
            assert!(!d.components().any(|c| c.as_os_str() == ".."), "{d:?}");
        }
        let dicom = serde_json::json!({ "filename": "IM1", "category": "imaging_dicom",
            "dicom": { "study_instance_uid": "1.2", "series_instance_uid": "1.2.3" } });
        assert_eq!(
            destination(out, &dicom),
            Path::new("/tmp/out/imaging_dicom/1.2/1.2.3/IM1")
        );
    }
}
