//! Files an earlier fetch already put under `--out`, found again instead of
//! downloaded: a fetch from before the DICOM layout (or from before the
//! gateway had indexed an instance) filed a DICOM file under
//! `category/<study>/<series>/<name>`, and the earlier run's `index.csv`
//! names where each file landed. A file found there with the expected
//! size and SHA-256 is moved to its place now, costing none of the grant's
//! downloads. Never a path that is some file's destination in this run.
//!
//! What is found is checked where it lies, through one handle opened
//! without following a link: a regular file with one name, owned by this
//! user, writable by nobody else (so only this user can change it while it
//! is hashed), of the expected size; hashed from that handle. Only a
//! matching file is moved (renamed) into place, and the file that landed
//! must be the one opened and hashed (same device and inode) — a swap at
//! the old path between the two is refused and said so. Nothing is moved
//! before it matched, so a failed check strands nothing, and parallel jobs
//! never move each other's files aside. A path with a symbolic link
//! anywhere below `--out` is not looked at (it could lead outside). A file
//! found but not taken for a reason other than "another file" is named on
//! stderr. Emptied folders are removed only while every folder up to
//! `--out` is a real folder, never through a link.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use super::decrypt::sha256_read;
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
    /// whether one was found. Reads a candidate whole to check its
    /// SHA-256: run it off the async runtime.
    pub fn adopt(&self, file: &GrantedFile, dest: &Path) -> bool {
        self.candidates(file)
            .iter()
            .any(|candidate| self.adopt_from(candidate, file, dest))
    }

    /// Moves `candidate` to `dest` if it is `file`; says why when a file
    /// found there is refused for another reason than being another file.
    fn adopt_from(&self, candidate: &Path, file: &GrantedFile, dest: &Path) -> bool {
        match take(&self.out, candidate, file, dest) {
            Ok(true) => {
                self.tidy(candidate);
                true
            }
            Ok(false) => false,
            Err(why) => {
                eprintln!(
                    "fetch: {} not reused ({why}); downloading it instead",
                    candidate.display()
                );
                false
            }
        }
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

/// Checks the file at `candidate` through one handle and, if it is `file`,
/// moves it to `dest`. `Ok(false)`: nothing there, or another file (its
/// size or SHA-256 differ). `Err`: a file there that is not taken, and why.
fn take(out: &Path, candidate: &Path, file: &GrantedFile, dest: &Path) -> Result<bool, String> {
    if !no_links(out, candidate) {
        return match std::fs::symlink_metadata(candidate) {
            Ok(_) => Err("a folder on its path is a symbolic link".into()),
            Err(_) => Ok(false),
        };
    }
    let Some(mut handle) = open_no_follow(candidate)? else {
        return Ok(false);
    };
    let opened = handle.metadata().map_err(|e| e.to_string())?;
    if opened.file_type().is_file() && opened.len() != file.size {
        return Ok(false);
    }
    sole_own_file(&opened)?;
    if sha256_read(&mut handle)? != file.sha256 {
        return Ok(false);
    }
    std::fs::rename(candidate, dest).map_err(|e| format!("cannot move it: {e}"))?;
    let landed = std::fs::symlink_metadata(dest).map_err(|e| e.to_string())?;
    if (landed.dev(), landed.ino()) != (opened.dev(), opened.ino()) {
        // Swapped at the old path after it was hashed: not the file
        // checked. Back where it came from if that place is still free.
        if std::fs::hard_link(dest, candidate).is_ok() {
            let _ = std::fs::remove_file(dest);
        }
        return Err("replaced while it was checked".into());
    }
    Ok(true)
}

/// Opens `path` for reading without following a symbolic link at its end
/// and without blocking on a FIFO; `None` when nothing is there.
fn open_no_follow(path: &Path) -> Result<Option<File>, String> {
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path);
    match opened {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            Err("it is a symbolic link".into())
        }
        Err(e) => Err(format!("cannot open it: {e}")),
    }
}

/// A regular file with no other name, owned by the user running the fetch
/// and writable by nobody else: nobody but this user can change it.
fn sole_own_file(m: &std::fs::Metadata) -> Result<(), String> {
    if !m.file_type().is_file() {
        return Err("not a regular file".into());
    }
    if m.nlink() != 1 {
        return Err(format!("it has {} names (hard links)", m.nlink()));
    }
    if m.uid() != rustix::process::geteuid().as_raw() {
        return Err("owned by another user".into());
    }
    if m.mode() & 0o022 != 0 {
        return Err("writable by other users".into());
    }
    Ok(())
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
        assert!(!out.join(super::super::partial::DIR).exists());
    }

    #[test]
    fn a_file_others_may_write_or_owned_by_nobody_here_is_left_alone() {
        use std::os::unix::fs::PermissionsExt;
        let (_root, out, dest) = setup();
        let (file, old) = earlier_dicom(&out);
        put(&old);
        let earlier = Earlier::read(&out, std::slice::from_ref(&dest));
        for mode in [0o620, 0o602, 0o666] {
            std::fs::set_permissions(&old, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(!earlier.adopt(&file, &dest), "{mode:o}");
            assert_eq!(std::fs::read(&old).unwrap(), BYTES, "left where it was");
            assert!(!dest.exists());
        }
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        // Another user's file (only root can make one to test with).
        if std::os::unix::fs::chown(&old, Some(65534), None).is_ok() {
            assert!(!earlier.adopt(&file, &dest), "another user's");
            assert!(old.exists() && !dest.exists());
            std::os::unix::fs::chown(&old, Some(rustix::process::geteuid().as_raw()), None)
                .unwrap();
        }
        assert!(earlier.adopt(&file, &dest), "read-only for others is fine");
    }

    #[test]
    fn a_fifo_at_the_old_place_is_not_waited_on() {
        let (_root, out, dest) = setup();
        let (file, old) = earlier_dicom(&out);
        std::fs::create_dir_all(old.parent().unwrap()).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &old,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let earlier = Earlier::read(&out, std::slice::from_ref(&dest));
        assert!(!earlier.adopt(&file, &dest));
        assert!(!dest.exists());
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
    fn a_file_that_fails_the_check_is_never_moved() {
        let (_root, out, dest) = setup();
        let (mut file, old) = earlier_dicom(&out);
        put(&old);
        let inode = std::fs::metadata(&old).unwrap().ino();
        file.sha256 = "0".repeat(64);
        let earlier = Earlier::read(&out, std::slice::from_ref(&dest));
        assert!(!earlier.adopt(&file, &dest));
        assert_eq!(std::fs::metadata(&old).unwrap().ino(), inode, "never moved");
        assert_eq!(std::fs::read(&old).unwrap(), BYTES);
        assert!(!dest.exists());
        assert!(
            !out.join(super::super::partial::DIR).exists(),
            "nothing held anywhere"
        );
    }
}
