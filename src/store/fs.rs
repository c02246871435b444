//! The `fs` object store: one file per object under a root directory
//! (mode 0700). Writes go to a temporary name, are synced, then renamed, so
//! an object is either absent or complete.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::StoreError;

#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

/// Object keys are built from validated ids; anything else is refused, so a
/// key can never escape the root.
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('/')
        && key.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        })
}

impl FsStore {
    /// Opens the root, creating it (mode 0700) if needed.
    pub fn open(path: &Path) -> std::io::Result<FsStore> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)?;
        Ok(FsStore {
            root: path.to_owned(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        if !valid_key(key.trim_end_matches('/')) {
            return Err(StoreError::BadKey);
        }
        Ok(self.root.join(key))
    }

    /// Ready when the root accepts a write.
    pub async fn check(&self) -> Result<(), StoreError> {
        let probe = self.root.join(".readyz");
        tokio::fs::write(&probe, b"ok").await?;
        tokio::fs::remove_file(&probe).await?;
        Ok(())
    }

    /// Stores `bytes` under `key` atomically and durably.
    pub async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let dir = path.parent().ok_or(StoreError::BadKey)?.to_owned();
        tokio::fs::create_dir_all(&dir).await?;
        let tmp = path.with_extension("partial");
        let mut file = tokio::fs::File::create(&tmp).await?;
        file.write_all(bytes).await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&tmp, &path).await?;
        tokio::fs::File::open(&dir).await?.sync_all().await?;
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every object whose key starts with `prefix` (a directory
    /// prefix ending in `/`). Deleting nothing is not an error.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        let path = self.path(prefix)?;
        match tokio::fs::remove_dir_all(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape() {
        for bad in ["", "/etc/passwd", "a/../b", "a//b", "./a", "a/..", "a b"] {
            assert!(!valid_key(bad), "{bad:?}");
        }
        assert!(valid_key("cases/case_1/file_2"));
    }

    #[tokio::test]
    async fn put_get_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(&dir.path().join("objects")).unwrap();
        store.put("cases/c/f", b"abc").await.unwrap();
        assert_eq!(store.get("cases/c/f").await.unwrap(), b"abc");
        store.delete_prefix("cases/c/").await.unwrap();
        assert!(matches!(
            store.get("cases/c/f").await,
            Err(StoreError::NotFound)
        ));
        store.delete_prefix("cases/c/").await.unwrap();
        assert!(matches!(
            store.put("../x", b"").await,
            Err(StoreError::BadKey)
        ));
    }
}
