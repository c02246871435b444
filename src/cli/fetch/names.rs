//! Where a granted file lands under `--out`: one safe path component per
//! stored name, so nothing is written outside the output folder.

use std::path::{Path, PathBuf};

use super::manifest::GrantedFile;

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
pub fn destination(out: &Path, file: &GrantedFile) -> PathBuf {
    let mut path = out.join(safe_component(&file.category));
    for uid in &file.folders {
        path = path.join(safe_component(uid));
    }
    path.join(safe_component(&file.filename))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(name: &str, category: &str, folders: &[&str]) -> GrantedFile {
        GrantedFile {
            file_id: crate::ids::FileId::generate(),
            filename: name.into(),
            category: category.into(),
            folders: folders.iter().map(|f| f.to_string()).collect(),
            size: 0,
            sealed_size: 0,
            sha256: String::new(),
        }
    }

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
            let d = destination(out, &granted(name, cat, &[]));
            assert!(d.starts_with(out), "{d:?}");
            assert_eq!(
                d.components().count(),
                out.components().count() + 2,
                "{d:?}"
            );
            assert!(!d.components().any(|c| c.as_os_str() == ".."), "{d:?}");
        }
        let dicom = granted("IM1", "imaging_dicom", &["1.2", "1.2.3"]);
        assert_eq!(
            destination(out, &dicom),
            Path::new("/tmp/out/imaging_dicom/1.2/1.2.3/IM1")
        );
    }
}
