//! Where a granted file lands under `--out`: `category/[study/series/]name`,
//! every component made from stored data — the patient's file names and
//! DICOM UIDs read from inside the files — so each is reduced to one safe,
//! honest, portable path component:
//!
//! - separators, control characters, Unicode format characters (bidi
//!   overrides and isolates, zero-width and other invisible characters) and
//!   the characters Windows forbids become `_`, so a name shows what it is
//!   (`report\u{202e}fdp.exe` would display as "reportexe.pdf");
//! - leading dots and spaces, trailing dots and spaces go (no hidden files,
//!   no `..`, nothing Windows strips); an empty result is `unnamed`;
//! - Windows device names (`CON`, `nul.txt`, `LPT1`) get a leading `_`;
//! - at most [`NAME_MAX`] bytes, cut on a character boundary, keeping the
//!   extension.

use super::manifest::GrantedFile;
use crate::ids::FileId;
use crate::service::dicomweb::valid_uid;

/// Bytes per path component on Linux, macOS and most file systems.
pub const NAME_MAX: usize = 255;

/// The longest `.ext` kept whole when a name is cut.
const MAX_EXTENSION: usize = 16;

pub use crate::text::hidden;

/// Characters that never reach the disk as they are.
fn neutralised(c: char) -> bool {
    hidden(c) || matches!(c, '/' | '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*')
}

/// Device names Windows reserves, with any extension (`CON`, `nul.txt`).
fn reserved_on_windows(name: &str) -> bool {
    let base = name.split('.').next().unwrap_or(name).trim_end();
    let upper = base.to_ascii_uppercase();
    matches!(
        upper.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
    ) || ["COM", "LPT"].iter().any(|p| {
        upper.strip_prefix(p).is_some_and(|n| {
            matches!(n, "¹" | "²" | "³") || (n.len() == 1 && n.as_bytes()[0].is_ascii_digit())
        })
    })
}

/// `name` as `(stem, ".ext")`; the extension is empty when there is none
/// worth keeping (too long, or holding spaces).
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(dot) if dot > 0 => {
            let ext = &name[dot..];
            if ext.len() > 1 && ext.len() <= MAX_EXTENSION && !ext.contains(char::is_whitespace) {
                (&name[..dot], ext)
            } else {
                (name, "")
            }
        }
        _ => (name, ""),
    }
}

/// The longest prefix of `s` of at most `max` bytes ending on a character
/// boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `stem + tail + ext` in at most [`NAME_MAX`] bytes: the stem gives way.
fn fit(stem: &str, tail: &str, ext: &str) -> String {
    let room = NAME_MAX.saturating_sub(tail.len() + ext.len());
    let stem = cut(stem, room);
    // A cut may leave a dot or space at the very end, which Windows drops.
    let stem = if tail.is_empty() && ext.is_empty() {
        stem.trim_end_matches(|c: char| c == '.' || c.is_whitespace())
    } else {
        stem
    };
    format!("{stem}{tail}{ext}")
}

/// One path component from a stored name or UID.
pub fn component(raw: &str) -> String {
    let replaced: String = raw
        .chars()
        .map(|c| if neutralised(c) { '_' } else { c })
        .collect();
    let trimmed = replaced
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    let name = if trimmed.is_empty() {
        "unnamed".to_owned()
    } else if reserved_on_windows(trimmed) {
        format!("_{trimmed}")
    } else {
        trimmed.to_owned()
    };
    if name.len() <= NAME_MAX {
        return name;
    }
    let (stem, ext) = split_extension(&name);
    fit(stem, "", ext)
}

/// `name` (a component) with the file's id before its extension, as when
/// its name collides: `report (file_…).pdf`, still at most [`NAME_MAX`]
/// bytes. No two files end up with the same such name: the id is unique
/// and the extension, the only text after it, holds no other dot.
pub fn with_id(name: &str, file_id: &FileId) -> String {
    let (stem, ext) = split_extension(name);
    fit(stem, &format!(" ({file_id})"), ext)
}

/// A DICOM instance's `[study, series, instance]` UIDs, if all three are
/// UIDs (digits and dots, at most 64): only then are they used as they are.
fn dicom_uids(file: &GrantedFile) -> Option<[&str; 3]> {
    let uids = [
        file.dicom[0].as_str(),
        file.dicom[1].as_str(),
        file.instance.as_deref()?,
    ];
    uids.iter().all(|uid| valid_uid(uid)).then_some(uids)
}

/// A file's path under `--out`, as components: a DICOM instance whose UIDs
/// are all valid as `DICOM/<study>/<series>/<instance>.dcm` (the layout a
/// PACS import tool takes as is), anything else as
/// `category/[study/series/]filename`; the file name carries the id when
/// `with_id`.
pub fn relative(file: &GrantedFile, with_id_suffix: bool) -> Vec<String> {
    let suffixed = |name: String| {
        if with_id_suffix {
            with_id(&name, &file.file_id)
        } else {
            name
        }
    };
    if let Some([study, series, instance]) = dicom_uids(file) {
        let name = suffixed(format!("{instance}.dcm"));
        return vec!["DICOM".into(), study.into(), series.into(), name];
    }
    let mut parts = vec![component(&file.category)];
    parts.extend(file.folders.iter().map(|uid| component(uid)));
    parts.push(suffixed(component(&file.filename)));
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn destination(out: &Path, file: &GrantedFile) -> PathBuf {
        relative(file, false)
            .iter()
            .fold(out.to_path_buf(), |path, part| path.join(part))
    }

    fn granted(name: &str, category: &str, folders: &[&str]) -> GrantedFile {
        GrantedFile {
            file_id: crate::ids::FileId::generate(),
            filename: name.into(),
            category: category.into(),
            folders: folders.iter().map(|f| f.to_string()).collect(),
            size: 0,
            sealed_size: 0,
            sealed_etag: None,
            sha256: String::new(),
            dicom: Default::default(),
            instance: None,
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
            (". . .", "\\.."),
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

    #[test]
    fn hidden_and_reordering_characters_are_neutralised() {
        for (raw, shown) in [
            ("report\u{202e}fdp.exe", "report_fdp.exe"),
            ("\u{202a}\u{202b}\u{202c}\u{202d}x", "____x"),
            ("\u{2066}\u{2067}\u{2068}\u{2069}x", "____x"),
            ("\u{200e}\u{200f}\u{061c}x", "___x"),
            ("a\u{200b}\u{200c}\u{200d}\u{2060}\u{feff}b", "a_____b"),
            ("tag\u{e0041}\u{e007f}", "tag__"),
            ("line\u{2028}para\u{2029}", "line_para_"),
            (
                "bell\u{7}del\u{7f}nel\u{85}esc\u{1b}[31m",
                "bell_del_nel_esc_[31m",
            ),
            ("tab\there\nnewline", "tab_here_newline"),
            ("a:b*c?d\"e<f>g|h", "a_b_c_d_e_f_g_h"),
            // Ordinary letters, accents and spaces stay.
            (
                "Befund Pathologie – Zürich.pdf",
                "Befund Pathologie – Zürich.pdf",
            ),
            ("تقرير.pdf", "تقرير.pdf"),
        ] {
            assert_eq!(component(raw), shown, "{raw:?}");
        }
    }

    #[test]
    fn windows_troubles_are_avoided() {
        for (raw, shown) in [
            ("CON", "_CON"),
            ("con.txt", "_con.txt"),
            ("Lpt9.tar.gz", "_Lpt9.tar.gz"),
            ("COM¹", "_COM¹"),
            ("nul .txt", "_nul .txt"),
            ("CONSOLE.txt", "CONSOLE.txt"),
            ("conference", "conference"),
            ("COM10", "COM10"),
            ("notes. . .", "notes"),
            ("  padded  ", "padded"),
            (".hidden", "hidden"),
            ("...", "unnamed"),
        ] {
            assert_eq!(component(raw), shown, "{raw:?}");
        }
    }

    #[test]
    fn long_names_are_cut_to_bytes_keeping_the_extension() {
        let long = format!("{}.pdf", "é".repeat(500));
        assert_eq!(component(&long), format!("{}.pdf", "é".repeat(125)));
        // No extension: 85 three-byte characters.
        assert_eq!(component(&"日".repeat(300)), "日".repeat(85));
        // An "extension" too long to be one is cut like the rest.
        let odd = format!("x.{}", "y".repeat(300));
        assert_eq!(component(&odd).len(), NAME_MAX);
        // A cut never leaves a trailing dot or space.
        let dotted = format!("{}. b", "a".repeat(254));
        assert_eq!(component(&dotted), "a".repeat(254));
        let id = FileId::generate();
        let with = with_id(&component(&long), &id);
        assert!(with.len() <= NAME_MAX, "{} bytes", with.len());
        assert!(with.starts_with("éé") && with.ends_with(&format!(" ({id}).pdf")));
        assert_eq!(with_id("report.pdf", &id), format!("report ({id}).pdf"));
        assert_eq!(with_id("README", &id), format!("README ({id})"));
        for raw in [
            "a".repeat(1000),
            format!("{}.tar.gz", "ж".repeat(400)),
            format!("{}🩺.pdf", "😀".repeat(100)),
        ] {
            let name = component(&raw);
            assert!(name.len() <= NAME_MAX, "{} bytes", name.len());
            let name = with_id(&name, &id);
            assert!(name.len() <= NAME_MAX, "{} bytes", name.len());
        }
    }

    #[test]
    fn dicom_instances_land_by_their_uids_when_all_are_uids() {
        let out = Path::new("/tmp/out");
        let mut dicom = granted("IM1", "imaging_dicom", &["1.2", "1.2.3"]);
        dicom.dicom = ["1.2".into(), "1.2.3".into(), "CT".into()];
        dicom.instance = Some("1.2.3.4".into());
        assert_eq!(
            destination(out, &dicom),
            Path::new("/tmp/out/DICOM/1.2/1.2.3/1.2.3.4.dcm")
        );
        let with = relative(&dicom, true);
        assert_eq!(with[3], format!("1.2.3.4 ({}).dcm", dicom.file_id));
        for bad in ["1.2.3..4", "../1.2", "", &"1".repeat(65), "1.2.3.4/"] {
            dicom.instance = Some(bad.into());
            assert_eq!(
                destination(out, &dicom),
                Path::new("/tmp/out/imaging_dicom/1.2/1.2.3/IM1"),
                "{bad:?}"
            );
        }
        dicom.instance = None;
        assert_eq!(
            destination(out, &dicom),
            Path::new("/tmp/out/imaging_dicom/1.2/1.2.3/IM1")
        );
    }
}
