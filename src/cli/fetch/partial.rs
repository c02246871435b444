//! Where unfinished work lives while a fetch runs: one hidden folder under
//! `--out`, `.casegate-partial/`, holding `<file_id>.sealed` (the sealed
//! download, kept across runs so an interrupted fetch resumes) and
//! `<file_id>.plain` (plaintext being written, removed on any failure).
//! Plaintext passes through it, so it must be this user's alone: a folder
//! of that name owned by another user (made there beforehand, or a link)
//! is refused, and one of ours that others may enter is made private.
//!
//! Temporary paths are derived from validated file ids, never from stored
//! names, and every sanitised name component starts with something other
//! than a dot, so no temporary path can equal a destination — whatever the
//! patient called a file.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::ids::FileId;

/// The hidden folder's name under `--out`.
pub const DIR: &str = ".casegate-partial";

pub struct Partials {
    dir: PathBuf,
}

impl Partials {
    pub fn new(out: &Path) -> Partials {
        Partials { dir: out.join(DIR) }
    }

    /// Creates the folder (on first use) and makes sure it is private:
    /// a real folder (not a link), owned by this user, closed to others.
    pub fn ensure(&self) -> Result<(), String> {
        let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", self.dir.display());
        crate::fsutil::private_dir_all(&self.dir).map_err(|e| fail(&e))?;
        let found = std::fs::symlink_metadata(&self.dir).map_err(|e| fail(&e))?;
        if !found.file_type().is_dir() {
            return Err(fail(&"not a folder (a link?); remove it and run again"));
        }
        if found.uid() != rustix::process::geteuid().as_raw() {
            return Err(fail(&"owned by another user; remove it and run again"));
        }
        if found.mode() & 0o077 != 0 {
            let private = std::fs::Permissions::from_mode(0o700);
            std::fs::set_permissions(&self.dir, private).map_err(|e| fail(&e))?;
        }
        Ok(())
    }

    /// The sealed download of `file_id`.
    pub fn sealed(&self, file_id: &FileId) -> PathBuf {
        self.dir.join(format!("{file_id}.sealed"))
    }

    /// Plaintext of `file_id` before it is verified and moved into place.
    pub fn plain(&self, file_id: &FileId) -> PathBuf {
        self.dir.join(format!("{file_id}.plain"))
    }

    /// Removes the folder when nothing is left to resume.
    pub fn tidy(&self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_is_made_private_and_a_link_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        std::fs::create_dir_all(out.join(DIR)).unwrap();
        let open = std::fs::Permissions::from_mode(0o777);
        std::fs::set_permissions(out.join(DIR), open).unwrap();
        let partials = Partials::new(&out);
        partials.ensure().unwrap();
        let mode = std::fs::metadata(out.join(DIR)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700, "closed to others");

        // Another user's folder (only root can make one to test with).
        if std::os::unix::fs::chown(out.join(DIR), Some(65534), None).is_ok() {
            let refused = partials.ensure().unwrap_err();
            assert!(refused.contains("another user"), "{refused}");
        }

        // A link where the folder belongs (it could lead to a folder
        // another user reads) is refused, not followed.
        std::fs::remove_dir(out.join(DIR)).unwrap();
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, out.join(DIR)).unwrap();
        let refused = partials.ensure().unwrap_err();
        assert!(refused.contains("not a folder"), "{refused}");
    }
}
