//! File helpers for secrets: created 0600, refused when others can read them.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Creates `path` with mode 0600 holding `contents`, synced. Fails if the
/// file already exists, so a secret is never silently replaced. Atomic: the
/// bytes are written to a temporary file first and linked into place, so a
/// crash never leaves an empty or partial key that blocks the next start.
pub fn create_secret_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp-new");
    let _ = std::fs::remove_file(&tmp);
    write_new_private(&tmp, contents)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked?;
    sync_parent(path)
}

/// Creates `path` (0600, must not exist) and writes `contents`, synced.
fn write_new_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

/// Creates `dir` and any missing parents owner-only (0700). Patient records
/// land in them (`fetch`), so other users of the machine see nothing.
pub fn private_dir_all(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Opens `path` for writing, creating it owner-only (0600) if missing;
/// truncated when `truncate`.
pub fn private_file(path: &Path, truncate: bool) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(truncate)
        .mode(0o600)
        .open(path)
}

/// Replaces `path` atomically (temp file + rename) with a 0600 file.
pub fn replace_secret_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp-new");
    let _ = std::fs::remove_file(&tmp);
    write_new_private(&tmp, contents)?;
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// Why a secret file is refused; the message says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("{}: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is readable by group or others (mode {mode:o}); run: chmod 600 {}",
        .path.display(),
        .path.display()
    )]
    NotPrivate { path: PathBuf, mode: u32 },
}

/// A key file that group or others may read is refused.
pub fn check_private(path: &Path) -> Result<(), SecretFileError> {
    let meta = std::fs::metadata(path).map_err(|source| SecretFileError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::NotPrivate {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        create_secret_file(&path, b"x").unwrap();
        check_private(&path).unwrap();
        assert!(create_secret_file(&path, b"y").is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let refused = check_private(&path).unwrap_err();
        assert!(matches!(
            refused,
            SecretFileError::NotPrivate { mode: 0o640, .. }
        ));
        assert!(refused.to_string().contains("chmod 600"), "{refused}");
        replace_secret_file(&path, b"z").unwrap();
        check_private(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"z");
    }
}
