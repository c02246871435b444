//! External copies of checkpoints: each one written to a directory as
//! `<size>.checkpoint`, atomically (a temporary file, synced, then linked
//! into place) and never overwritten, so a copy once written stays what
//! was signed. Point it at storage the gateway's operators cannot rewrite.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a copy could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("checkpoint copy {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint copy {} already exists with other contents; not overwritten", .0.display())]
    Conflict(PathBuf),
}

/// Writes `note` as `<dir>/<size>.checkpoint`. An identical existing copy
/// is fine (another replica wrote it); a different one is refused.
pub fn write(dir: &Path, size: u64, note: &str) -> Result<PathBuf, CopyError> {
    let path = dir.join(format!("{size}.checkpoint"));
    let io = |source| CopyError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(
        ".{size}.checkpoint.{}.tmp",
        crate::hex::encode(&crate::random::array::<8>())
    ));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(note.as_bytes())?;
        file.sync_all()?;
        std::fs::hard_link(&tmp, &path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
            Ok(path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            match std::fs::read_to_string(&path) {
                Ok(existing) if existing == note => Ok(path),
                Ok(_) => Err(CopyError::Conflict(path)),
                Err(e) => Err(io(e)),
            }
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_once_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 7, "note A\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "note A\n");
        write(dir.path(), 7, "note A\n").unwrap();
        assert!(matches!(
            write(dir.path(), 7, "note B\n"),
            Err(CopyError::Conflict(_))
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "note A\n");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary files left");
    }
}
