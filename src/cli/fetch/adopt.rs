//! Files an earlier fetch already put under `--out`, found again instead of
//! downloaded: a fetch from before the DICOM layout (or from before the
//! gateway had indexed an instance) filed a DICOM file under
//! `category/<study>/<series>/<name>`, and the earlier run's `index.csv`
//! names where each file landed. A file found there with the expected
//! size and SHA-256 is moved to its place now, costing none of the grant's
//! downloads. Only regular files under `--out` are taken, never a path
//! that is some file's destination in this run.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use super::decrypt::sha256_file;
use super::index;
use super::manifest::GrantedFile;
use super::names::relative;

/// Where an earlier fetch may have left this grant's files.
pub struct Earlier {
    out: PathBuf,
    /// From the last `index.csv`: file id → the path it listed.
    listed: HashMap<String, PathBuf>,
    /// Every destination of this run (another file's place is not taken).
    destinations: HashSet<PathBuf>,
}

impl Earlier {
    /// Reads the earlier `index.csv` (if any) under `out`.
    pub fn read(out: &Path, destinations: &[PathBuf]) -> Earlier {
        let csv = std::fs::read_to_string(out.join(index::NAME)).unwrap_or_default();
        let listed = csv
            .lines()
            .skip(1)
            .filter_map(|line| {
                let cells = cells(line);
                let (path, file_id) = (cells.first()?, cells.get(1)?);
                Some((file_id.clone(), under(out, path)?))
            })
            .collect();
        Earlier {
            out: out.to_path_buf(),
            listed,
            destinations: destinations.iter().cloned().collect(),
        }
    }

    /// Paths an earlier fetch may have put `file` at, most likely first.
    fn candidates(&self, file: &GrantedFile) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = self
            .listed
            .get(file.file_id.as_str())
            .cloned()
            .into_iter()
            .collect();
        let old = GrantedFile {
            instance: None,
            ..file.clone()
        };
        for with_id in [false, true] {
            let parts = relative(&old, with_id);
            found.push(parts.iter().fold(self.out.clone(), |p, c| p.join(c)));
        }
        found.retain(|p| !self.destinations.contains(p));
        found.dedup();
        found
    }

    /// Moves an earlier copy of `file` to `dest` (whose folder exists);
    /// whether one was found. Reads each candidate whole to check its
    /// SHA-256: run it off the async runtime.
    pub fn adopt(&self, file: &GrantedFile, dest: &Path) -> bool {
        self.candidates(file).iter().any(|candidate| {
            let fits = std::fs::symlink_metadata(candidate)
                .is_ok_and(|m| m.file_type().is_file() && m.len() == file.size);
            let moved = fits
                && sha256_file(candidate).is_ok_and(|sha| sha == file.sha256)
                && std::fs::rename(candidate, dest).is_ok();
            if moved {
                self.tidy(candidate);
            }
            moved
        })
    }

    /// Removes the folders a moved file leaves empty, up to `--out`.
    fn tidy(&self, moved: &Path) {
        let mut folder = moved.parent();
        while let Some(dir) = folder.filter(|d| d.starts_with(&self.out) && *d != self.out) {
            if std::fs::remove_dir(dir).is_err() {
                break;
            }
            folder = dir.parent();
        }
    }
}

/// `path` (as `index.csv` writes it: relative, `/`-separated) under `out`,
/// if it stays there.
fn under(out: &Path, path: &str) -> Option<PathBuf> {
    let relative = Path::new(path);
    let plain = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    (plain && !path.is_empty()).then(|| out.join(relative))
}

/// The cells of one CSV line as `index.csv` writes them: quoted when they
/// hold a comma or a quote (quotes doubled), a leading `'` guarding a
/// formula character.
fn cells(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cell)),
            _ => cell.push(c),
        }
    }
    out.push(cell);
    out.into_iter()
        .map(|c| match c.strip_prefix('\'') {
            Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest.to_owned(),
            _ => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::csv_field;

    #[test]
    fn index_cells_read_back_as_written() {
        let values = ["a,b", "say \"hi\"", "=SUM(A1)", "'quoted", "plain", ""];
        let line: Vec<String> = values.iter().map(|v| csv_field(v)).collect();
        assert_eq!(cells(&line.join(",")), values);
    }

    #[test]
    fn listed_paths_stay_under_out() {
        let out = Path::new("/out");
        assert_eq!(
            under(out, "DICOM/1.2/3.4/5.6.dcm"),
            Some(PathBuf::from("/out/DICOM/1.2/3.4/5.6.dcm"))
        );
        for bad in ["", "../x", "/etc/passwd", "a/../../x", "./a"] {
            assert_eq!(under(out, bad), None, "{bad}");
        }
    }
}
