//! Where unfinished work lives while a fetch runs: one hidden folder under
//! `--out`, `.casegate-partial/`, holding `<file_id>.sealed` (the sealed
//! download, kept across runs so an interrupted fetch resumes) and
//! `<file_id>.plain` (plaintext being written, removed on any failure) and
//! `<file_id>.adopting` (a file an earlier fetch left elsewhere, held here
//! while it is checked, see `adopt`).
//!
//! Temporary paths are derived from validated file ids, never from stored
//! names, and every sanitised name component starts with something other
//! than a dot, so no temporary path can equal a destination — whatever the
//! patient called a file.

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

    /// Creates the folder (on first use).
    pub fn ensure(&self) -> Result<(), String> {
        crate::fsutil::private_dir_all(&self.dir)
            .map_err(|e| format!("{}: {e}", self.dir.display()))
    }

    /// The sealed download of `file_id`.
    pub fn sealed(&self, file_id: &FileId) -> PathBuf {
        self.dir.join(format!("{file_id}.sealed"))
    }

    /// Plaintext of `file_id` before it is verified and moved into place.
    pub fn plain(&self, file_id: &FileId) -> PathBuf {
        self.dir.join(format!("{file_id}.plain"))
    }

    /// The folder itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file found at an earlier fetch's path, while it is checked.
    pub fn adopting(&self, file_id: &FileId) -> PathBuf {
        self.dir.join(format!("{file_id}.adopting"))
    }

    /// Removes the folder when nothing is left to resume.
    pub fn tidy(&self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}
