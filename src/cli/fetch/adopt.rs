//! Files an earlier fetch already put under `--out`, found again instead of
//! downloaded: a fetch from before the DICOM layout (or from before the
//! gateway had indexed an instance) filed a DICOM file under
//! `category/<study>/<series>/<name>`, and the earlier run's `index.csv`
//! names where each file landed. A file found there with the expected
//! size and SHA-256 is moved to its place now, costing none of the grant's
//! downloads. Never a path that is some file's destination in this run.
//!
//! What is found is not trusted until it is ours alone: the candidate is
//! first renamed into the fetch's private partial folder, and only there
//! checked (a regular file with one link, owned by this user, of the
//! expected size) and hashed, then moved into place — so the bytes hashed
//! are the bytes that land, whatever happens at the old path meanwhile. A
//! path with a symbolic link anywhere below `--out` is not looked at (it
//! could lead outside), a hard-linked file is not taken (its other name
//! would change with it), and a file that fails the checks is put back
//! where it was. Emptied folders are removed only while every folder up
//! to `--out` is a real folder, never through a link.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::decrypt::sha256_file;
use super::index;
use super::manifest::GrantedFile;
use super::names::relative;
use super::partial::Partials;

/// Where an earlier fetch may have left this grant's files.
pub struct Earlier {
    out: PathBuf,
    /// From the last `index.csv`: file id → the path it listed.
    listed: HashMap<String, PathBuf>,
    /// Every destination of this run (another file's place is not taken).
    destinations: HashSet<PathBuf>,
    /// Where a candidate is held while it is checked.
    partials: Partials,
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
            partials: Partials::new(out),
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
    /// whether one was found. Reads a candidate whole to check its
    /// SHA-256: run it off the async runtime.
    pub fn adopt(&self, file: &GrantedFile, dest: &Path) -> bool {
        if self.partials.ensure().is_err() || !real_dirs(&self.out, self.partials.dir()) {
            return false;
        }
        let held = self.partials.adopting(&file.file_id);
        // Held by a run that stopped between the two moves: ours already.
        if take(&held, file, dest) {
            return true;
        }
        self.candidates(file)
            .iter()
            .any(|candidate| self.adopt_from(candidate, &held, file, dest))
    }

    /// Moves `candidate` into the partial folder (`held`), checks it there
    /// and moves it to `dest`; puts it back when it is not the file.
    fn adopt_from(&self, candidate: &Path, held: &Path, file: &GrantedFile, dest: &Path) -> bool {
        // A cheap look first, so files that cannot be it are not moved.
        let looks_right = no_links(&self.out, candidate)
            && std::fs::symlink_metadata(candidate).is_ok_and(|m| sole_own_file(&m, file.size));
        if !looks_right || held.exists() || std::fs::rename(candidate, held).is_err() {
            return false;
        }
        if take(held, file, dest) {
            self.tidy(candidate);
            return true;
        }
        // Not it after all: back where it was, unless something took that
        // place meanwhile (then it stays in the partial folder).
        if std::fs::hard_link(held, candidate).is_ok() {
            let _ = std::fs::remove_file(held);
        }
        false
    }

    /// Removes the folders a moved file leaves empty, up to `--out`, only
    /// while each is a real folder all the way down from `--out`.
    fn tidy(&self, moved: &Path) {
        let mut folder = moved.parent();
        while let Some(dir) = folder.filter(|d| d.starts_with(&self.out) && *d != self.out) {
            if !real_dirs(&self.out, dir) || std::fs::remove_dir(dir).is_err() {
                break;
            }
            folder = dir.parent();
        }
    }
}

/// Checks the file at `held` (in the private partial folder, so nobody
/// else can change it now) and moves it to `dest` if it is `file`.
fn take(held: &Path, file: &GrantedFile, dest: &Path) -> bool {
    std::fs::symlink_metadata(held).is_ok_and(|m| sole_own_file(&m, file.size))
        && sha256_file(held).is_ok_and(|sha| sha == file.sha256)
        && std::fs::rename(held, dest).is_ok()
}

/// A regular file (not a link) of `size` bytes, with no other name, owned
/// by the user running the fetch.
fn sole_own_file(m: &std::fs::Metadata, size: u64) -> bool {
    m.file_type().is_file()
        && m.len() == size
        && m.nlink() == 1
        && m.uid() == rustix::process::geteuid().as_raw()
}

/// Whether every folder from `out` (exclusive) down to `path` (inclusive)
/// is a real folder, not a symbolic link.
fn real_dirs(out: &Path, path: &Path) -> bool {
    let Ok(rest) = path.strip_prefix(out) else {
        return false;
    };
    let mut at = out.to_path_buf();
    rest.components().all(|c| {
        at.push(c);
        matches!(c, Component::Normal(_))
            && std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_dir())
    })
}

/// Whether `path` lies under `out` through real folders only (its last
/// component is looked at by the caller).
fn no_links(out: &Path, path: &Path) -> bool {
    path.parent().is_some_and(|parent| real_dirs(out, parent))
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

    const BYTES: &[u8] = b"an instance an earlier fetch filed under its category";

    /// A DICOM file whose pre-DICOM-layout place is
    /// `imaging_dicom/1.2/1.2.3/IM0001`, and that place under `out`.
    fn earlier_dicom(out: &Path) -> (GrantedFile, PathBuf) {
        let sha = ring::digest::digest(&ring::digest::SHA256, BYTES);
        let file = GrantedFile {
            file_id: crate::ids::FileId::generate(),
            filename: "IM0001".into(),
            category: "imaging_dicom".into(),
            folders: vec!["1.2".into(), "1.2.3".into()],
            size: BYTES.len() as u64,
            sealed_size: 0,
            sealed_etag: None,
            sha256: crate::hex::encode(sha.as_ref()),
            dicom: Default::default(),
            instance: Some("1.2.3.4".into()),
        };
        (file, out.join("imaging_dicom/1.2/1.2.3/IM0001"))
    }

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        let dest = out.join("DICOM/1.2/1.2.3/1.2.3.4.dcm");
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        (root, out, dest)
    }

    fn put(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, BYTES).unwrap();
    }

    #[test]
    fn the_file_that_lands_is_the_one_found_and_hashed() {
        let (_root, out, dest) = setup();
        let (file, old) = earlier_dicom(&out);
        put(&old);
        let inode = std::fs::metadata(&old).unwrap().ino();
        let earlier = Earlier::read(&out, std::slice::from_ref(&dest));
        assert!(earlier.adopt(&file, &dest));
        assert_eq!(
            std::fs::metadata(&dest).unwrap().ino(),
            inode,
            "moved, not copied"
        );
        assert_eq!(std::fs::read(&dest).unwrap(), BYTES);
        assert!(!old.exists());
        assert!(
            !out.join("imaging_dicom").exists(),
            "emptied folders tidied"
        );
        assert!(!earlier.partials.adopting(&file.file_id).exists());
    }

    #[test]
    fn a_file_left_held_by_an_interrupted_run_is_taken_from_there() {
        let (_root, out, dest) = setup();
        let (file, _) = earlier_dicom(&out);
        let earlier = Earlier::read(&out, std::slice::from_ref(&dest));
        put(&earlier.partials.adopting(&file.file_id));
        assert!(earlier.adopt(&file, &dest));
        assert_eq!(std::fs::read(&dest).unwrap(), BYTES);
    }

    #[test]
    fn a_folder_that_is_a_link_is_neither_followed_nor_tidied_through() {
        let (root, out, dest) = setup();
        let (file, old) = earlier_dicom(&out);
        // The old category folder is a link to a folder outside `out`.
        let outside = root.path().join("elsewhere");
        put(&outside.join("1.2/1.2.3/IM0001"));
        std::os::unix::fs::symlink(&outside, out.join("imaging_dicom")).unwrap();
        assert!(old.exists(), "the link leads to the file");
        let earlier = Earlier::read(&out, std::slice::from_ref(&dest));
        assert!(!earlier.adopt(&file, &dest));
        assert!(!dest.exists());
        assert_eq!(
            std::fs::read(outside.join("1.2/1.2.3/IM0001")).unwrap(),
            BYTES
        );
        // Tidying after a move never removes folders through the link.
        std::fs::create_dir_all(outside.join("empty/inner")).unwrap();
        earlier.tidy(&out.join("imaging_dicom/empty/inner/moved"));
        assert!(outside.join("empty/inner").is_dir());
    }

    #[test]
    fn a_file_that_is_a_link_or_has_another_name_is_left_alone() {
        let (root, out, dest) = setup();
        let (file, old) = earlier_dicom(&out);
        let kept = root.path().join("kept");
        put(&kept);
        std::fs::create_dir_all(old.parent().unwrap()).unwrap();
        let earlier = Earlier::read(&out, std::slice::from_ref(&dest));
        std::os::unix::fs::symlink(&kept, &old).unwrap();
        assert!(!earlier.adopt(&file, &dest), "a link");
        std::fs::remove_file(&old).unwrap();
        std::fs::hard_link(&kept, &old).unwrap();
        assert!(!earlier.adopt(&file, &dest), "a second name");
        assert_eq!(
            std::fs::metadata(&old).unwrap().nlink(),
            2,
            "both names stay"
        );
        assert_eq!(std::fs::read(&kept).unwrap(), BYTES);
        assert!(!dest.exists());
    }

    #[test]
    fn a_file_that_fails_the_check_is_put_back() {
        let (_root, out, dest) = setup();
        let (mut file, old) = earlier_dicom(&out);
        put(&old);
        file.sha256 = "0".repeat(64);
        let earlier = Earlier::read(&out, std::slice::from_ref(&dest));
        assert!(!earlier.adopt(&file, &dest));
        assert_eq!(std::fs::read(&old).unwrap(), BYTES, "back where it was");
        assert!(!earlier.partials.adopting(&file.file_id).exists());
    }
}
