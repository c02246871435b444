//! What is not a medical record, by its name: the rules of
//! `web/skip-rules.json`, the file the upload page reads too, so both
//! clients leave out the same things — an operating system's litter, the
//! CD's `DICOMDIR` index, and the image viewer program hospital CDs carry
//! (its program files, and what a folder holding one contains, unless it is
//! DICOM). A report is never left out for its name alone: `setup.pdf` and a
//! `Software` folder of reports are sent.

use std::collections::HashSet;
use std::sync::LazyLock;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
struct Rules {
    system_files: Vec<String>,
    system_folders: Vec<String>,
    program_extensions: Vec<String>,
    program_names: Vec<String>,
    program_folders: Vec<String>,
}

const RULES_JSON: &str = include_str!("../../../web/skip-rules.json");

/// Parsed once; a unit test proves the embedded file parses, so the empty
/// fallback never happens in a built binary.
static RULES: LazyLock<Rules> =
    LazyLock::new(|| serde_json::from_str(RULES_JSON).unwrap_or_default());

fn listed(list: &[String], name: &str) -> bool {
    let lower = name.to_lowercase();
    list.contains(&lower)
}

/// An operating system's file or the CD's index (`DICOMDIR`, `.DS_Store`,
/// `Thumbs.db`, `._*`, …).
pub fn system_file(name: &str) -> bool {
    name.starts_with("._") || listed(&RULES.system_files, name)
}

/// A folder never entered: hidden ones, recycle bins, `__MACOSX`.
pub fn system_folder(name: &str) -> bool {
    name.starts_with('.') || listed(&RULES.system_folders, name)
}

/// A file of a program: `.exe`, `.dll`, … or `setup.ini` and the like.
pub fn program_file(name: &str) -> bool {
    let lower = name.to_lowercase();
    let (stem, extension) = match lower.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, ext),
        _ => (lower.as_str(), ""),
    };
    RULES.program_extensions.iter().any(|e| e == extension)
        || (extension == "ini" && RULES.program_names.iter().any(|n| n == stem))
}

/// The folders (shown paths, lower-cased) that hold the CD's viewer
/// program: named like one (`Viewer`, `Program`, …) and really holding a
/// program file somewhere below.
pub fn viewer_folders<'a>(programs: impl IntoIterator<Item = &'a str>) -> HashSet<String> {
    let mut found = HashSet::new();
    for shown in programs {
        let lower = shown.to_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        for i in 0..parts.len().saturating_sub(1) {
            if RULES.program_folders.iter().any(|f| f == parts[i]) {
                found.insert(parts[..=i].join("/"));
            }
        }
    }
    found
}

/// Whether the file shown as `shown` lies in a viewer folder or in a macOS
/// application bundle (`*.app`, a program whatever it holds).
pub fn in_viewer_folder(shown: &str, viewers: &HashSet<String>) -> bool {
    let lower = shown.to_lowercase();
    let parts: Vec<&str> = lower.split('/').collect();
    (0..parts.len().saturating_sub(1))
        .any(|i| parts[i].ends_with(".app") || viewers.contains(&parts[..=i].join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_rules_parse() {
        let rules: Rules = serde_json::from_str(RULES_JSON).unwrap();
        assert!(rules.system_files.iter().any(|f| f == "dicomdir"));
        assert!(rules.program_extensions.iter().any(|e| e == "exe"));
    }

    #[test]
    fn programs_are_known_by_extension_never_by_a_report_s_name() {
        assert!(program_file("VIEWER.EXE") && program_file("dcmtk.dll"));
        assert!(program_file("setup.ini") && program_file("setup.exe"));
        assert!(!program_file("setup.pdf") && !program_file("SETUP"));
        assert!(!program_file("install.jpg") && !program_file("IM0001"));
        assert!(system_file("DICOMDIR") && system_file("._IM0") && !system_file("report.pdf"));
        assert!(system_folder(".Trashes") && system_folder("$RECYCLE.BIN"));
    }

    #[test]
    fn only_folders_holding_a_program_are_viewer_folders() {
        let viewers = viewer_folders(["CD/Viewer/bin/viewer.exe", "CD/setup.exe"]);
        assert!(in_viewer_folder("CD/Viewer/help/index.html", &viewers));
        assert!(in_viewer_folder(
            "CD/Viewer.app/Contents/Info.plist",
            &viewers
        ));
        assert!(!in_viewer_folder("CD/Software/discharge.pdf", &viewers));
        assert!(!in_viewer_folder("CD/DICOM/IM0001", &viewers));
        assert!(!in_viewer_folder(
            "CD/Program/report.pdf",
            &viewer_folders([])
        ));
    }
}
