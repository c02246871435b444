//! The files a patient named: files as they are, folders walked (a hospital
//! CD's `DICOMDIR` plus `DICOM/…` folders of extension-less files), minus
//! what is not a record — the CD's DICOMDIR index, operating-system litter
//! (`.DS_Store`, `Thumbs.db`, `desktop.ini`, `._*`, hidden and recycle-bin
//! folders) and the CD's image viewer program (`skip`, the rules the upload
//! page shares), empty files and the tool's own state folder. Symbolic links
//! are followed, each file and folder at most once (no loops).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::skip;
use crate::text::neutralise;
use crate::upload::metadata::stored_filename;

/// A file to send.
#[derive(Debug, Clone)]
pub struct LocalFile {
    /// Absolute, canonical: the key of the resume state.
    pub path: PathBuf,
    /// As shown to the patient: relative to the folder the patient named,
    /// starting with that folder's own name.
    pub shown: String,
    /// The base name as the gateway stores it ([`stored_filename`]): sent
    /// as the tus `filename`, and what the manifest is matched against.
    pub name: String,
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
}

/// Something found but not sent, and why.
#[derive(Debug)]
pub struct Skipped {
    pub shown: String,
    pub why: String,
}

#[derive(Default)]
pub struct Walked {
    pub files: Vec<LocalFile>,
    pub skipped: Vec<Skipped>,
    /// Files of the CD's image viewer program left out (counted, not
    /// listed: a viewer has hundreds).
    pub viewer: usize,
}

/// A path the patient named that cannot be used (mistyped, unreadable).
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", path.display(), plain_io(source))]
pub struct WalkError {
    path: PathBuf,
    source: std::io::Error,
}

/// Walks `roots`; `exclude` (the state folder) is never entered. A root
/// that does not exist is an error: the patient mistyped something.
pub fn walk(roots: &[PathBuf], exclude: Option<&Path>) -> Result<Walked, WalkError> {
    let mut walker = Walker {
        out: Walked::default(),
        ticker: super::ticker::Ticker::new("reading the files"),
        seen: HashSet::new(),
        exclude: exclude.and_then(|p| p.canonicalize().ok()),
        programs: Vec::new(),
    };
    for root in roots {
        let named = |source| WalkError {
            path: root.clone(),
            source,
        };
        let meta = std::fs::metadata(root).map_err(named)?;
        let base = root.canonicalize().map_err(named)?;
        let shown = base
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".to_owned());
        walker.visit(&base, shown, &meta);
    }
    let mut out = walker.out;
    leave_out_viewer(&mut out, &walker.programs);
    out.files.sort_by(|a, b| a.shown.cmp(&b.shown));
    Ok(out)
}

/// Leaves out what lies in a folder of the CD's viewer program, unless it
/// is DICOM (a sample image the viewer opens first is still a record).
fn leave_out_viewer(out: &mut Walked, programs: &[String]) {
    let viewers = skip::viewer_folders(programs.iter().map(String::as_str));
    let before = out.files.len();
    out.files.retain(|f| {
        !skip::in_viewer_folder(&f.shown, &viewers)
            || super::sniff::sniff(&f.path).is_ok_and(|s| s.is_dicom())
    });
    out.viewer = programs.len() + before - out.files.len();
}

pub fn plain_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or folder".into(),
        std::io::ErrorKind::PermissionDenied => "cannot be read (permission denied)".into(),
        _ => e.to_string(),
    }
}

struct Walker {
    out: Walked,
    ticker: super::ticker::Ticker,
    seen: HashSet<(u64, u64)>,
    exclude: Option<PathBuf>,
    /// Program files found (shown paths): left out, and they mark their
    /// folders as the viewer's.
    programs: Vec<String>,
}

impl Walker {
    fn skip(&mut self, shown: String, why: &str) {
        self.out.skipped.push(Skipped {
            shown,
            why: why.to_owned(),
        });
    }

    fn visit(&mut self, path: &Path, shown: String, meta: &std::fs::Metadata) {
        if !self.seen.insert((meta.dev(), meta.ino())) {
            return; // a second link to a file or folder already taken
        }
        if meta.is_dir() {
            if self.exclude.as_deref() == Some(path) {
                return;
            }
            self.dir(path, &shown);
        } else if meta.is_file() {
            self.file(path, shown, meta);
        } else {
            self.skip(shown, "not a regular file");
        }
    }

    fn dir(&mut self, path: &Path, shown: &str) {
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) => return self.skip(shown.to_owned(), &plain_io(&e)),
        };
        let mut children: Vec<_> = entries.filter_map(Result::ok).collect();
        children.sort_by_key(|e| e.file_name());
        for entry in children {
            let name = entry.file_name().to_string_lossy().into_owned();
            let child_shown = format!("{shown}/{name}");
            let child = entry.path();
            // Follows links; a broken link is reported, not fatal.
            let meta = match std::fs::metadata(&child) {
                Ok(m) => m,
                Err(e) => {
                    self.skip(child_shown, &plain_io(&e));
                    continue;
                }
            };
            if meta.is_dir() && skip::system_folder(&name) {
                continue; // .Trashes, .Spotlight-V100, $RECYCLE.BIN, …
            }
            if meta.is_file() && skip::system_file(&name) {
                self.skip(child_shown, "system file, not a record");
                continue;
            }
            if meta.is_file() && skip::program_file(&name) {
                self.programs.push(child_shown);
                continue;
            }
            let real = child.canonicalize().unwrap_or(child);
            self.visit(&real, child_shown, &meta);
        }
    }

    fn file(&mut self, path: &Path, shown: String, meta: &std::fs::Metadata) {
        if meta.len() == 0 {
            return self.skip(shown, "empty file");
        }
        let raw = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| shown.clone());
        // Control characters the gateway refuses are announced as `_`.
        let Ok(name) = stored_filename(&raw).or_else(|_| stored_filename(&neutralise(&raw))) else {
            return self.skip(shown, "the name is too long for the gateway");
        };
        self.ticker.tick(self.out.files.len(), None);
        self.out.files.push(LocalFile {
            path: path.to_owned(),
            shown,
            name,
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cd_walk_skips_index_litter_and_loops() {
        let dir = tempfile::tempdir().unwrap();
        let cd = dir.path().join("CD");
        std::fs::create_dir_all(cd.join("DICOM/ST000/SE000")).unwrap();
        std::fs::create_dir_all(cd.join(".Trashes/501")).unwrap();
        std::fs::write(cd.join("DICOMDIR"), b"index").unwrap();
        std::fs::write(cd.join(".DS_Store"), b"x").unwrap();
        std::fs::write(cd.join("._IM0"), b"x").unwrap();
        std::fs::write(cd.join("Thumbs.db"), b"x").unwrap();
        std::fs::write(cd.join("Icon\r"), b"x").unwrap();
        std::fs::write(cd.join("DICOM/Dr\u{200c}Ahmadi.pdf"), b"pdf").unwrap();
        std::fs::write(cd.join("DICOM/tab\there.pdf"), b"pdf").unwrap();
        std::fs::write(cd.join("empty.pdf"), b"").unwrap();
        std::fs::write(cd.join(".Trashes/501/old.pdf"), b"x").unwrap();
        std::fs::write(cd.join("DICOM/ST000/SE000/IM0"), b"dicom").unwrap();
        std::os::unix::fs::symlink(&cd, cd.join("DICOM/loop")).unwrap();
        std::fs::create_dir_all(cd.join("casegate-upload")).unwrap();
        std::fs::write(cd.join("casegate-upload/state.json"), b"{}").unwrap();
        let walked = walk(
            &[cd.clone(), cd.join("DICOM/ST000/SE000/IM0")],
            Some(&cd.join("casegate-upload")),
        )
        .unwrap();
        let shown: Vec<_> = walked.files.iter().map(|f| f.shown.as_str()).collect();
        assert_eq!(
            shown,
            [
                "CD/DICOM/Dr\u{200c}Ahmadi.pdf",
                "CD/DICOM/ST000/SE000/IM0",
                "CD/DICOM/tab\there.pdf"
            ]
        );
        let names: Vec<_> = walked.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["Dr_Ahmadi.pdf", "IM0", "tab_here.pdf"]);
        let skipped: Vec<_> = walked.skipped.iter().map(|s| s.shown.as_str()).collect();
        assert!(
            skipped.contains(&"CD/DICOMDIR")
                && skipped.contains(&"CD/empty.pdf")
                && skipped.contains(&"CD/Icon\r"),
            "{skipped:?}"
        );
        assert!(walk(&[dir.path().join("missing")], None).is_err());
    }

    #[test]
    fn the_viewer_program_is_left_out_but_never_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let cd = dir.path().join("CD");
        for (path, bytes) in [
            ("setup.exe", b"MZ".to_vec()),
            ("Viewer/viewer.exe", b"MZ".to_vec()),
            ("Viewer/help/index.html", b"<html>".to_vec()),
            (
                "Viewer/Samples/IM0",
                crate::upload::dicom::testdata::ct_file("1.2.3", "1.2.3.4", "Doe^Jane", 100),
            ),
            ("Viewer.app/Contents/Info.plist", b"<plist>".to_vec()),
            ("Software/discharge summary.pdf", b"%PDF".to_vec()),
            ("setup.pdf", b"%PDF".to_vec()),
        ] {
            let full = cd.join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, bytes).unwrap();
        }
        let walked = walk(&[cd], None).unwrap();
        let shown: Vec<_> = walked.files.iter().map(|f| f.shown.as_str()).collect();
        assert_eq!(
            shown,
            [
                "CD/Software/discharge summary.pdf",
                "CD/Viewer/Samples/IM0",
                "CD/setup.pdf"
            ]
        );
        assert_eq!(
            walked.viewer, 4,
            "setup.exe, viewer.exe, index.html, Info.plist"
        );
    }
}
