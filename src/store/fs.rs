//! The `fs` object store: one file per object under a root directory
//! (mode 0700). Whole objects are written to a temporary name, synced and
//! renamed. Objects being uploaded are appended in place and synced once
//! per durable point; reopening truncates to the recorded length. A
//! write a dropped writer left running is waited for before the file is
//! touched again (`abandoned.rs`). Appending, batching and write-behind
//! are the writer's (`writer.rs`).

use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::buffers::BufferPool;
use super::{StoreError, WriteProgress, valid_key};

mod abandoned;
mod writer;
use abandoned::AbandonedWrites;
pub use writer::FsWriter;
use writer::{BATCH_CAPACITY, KEEP_BATCHES};

#[derive(Clone)]
pub struct FsStore {
    root: PathBuf,
    buffers: BufferPool,
    abandoned: AbandonedWrites,
}

impl FsStore {
    /// Waits until no write of a dropped writer of `key` is still running.
    pub(crate) async fn settle_abandoned(&self, key: &str) {
        if let Ok(path) = self.path(key) {
            self.abandoned.settle(&path).await;
        }
    }
}

impl std::fmt::Debug for FsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsStore").field("root", &self.root).finish()
    }
}

fn not_found(e: std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::NotFound {
        StoreError::NotFound
    } else {
        e.into()
    }
}

/// Creates `dir` and its missing parents owner-only (0700): objects are
/// ciphertext, but who holds which case's files is not for other users.
async fn private_dir(dir: &Path) -> Result<(), StoreError> {
    tokio::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .await?;
    Ok(())
}

/// Runs blocking file I/O off the runtime's workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

async fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    tokio::fs::File::open(dir).await?.sync_all().await?;
    Ok(())
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
            buffers: BufferPool::new(BATCH_CAPACITY, KEEP_BATCHES),
            abandoned: AbandonedWrites::default(),
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
        private_dir(&dir).await?;
        let tmp = path.with_extension("partial");
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .await?;
        file.write_all(bytes).await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&tmp, &path).await?;
        sync_dir(&dir).await
    }

    pub async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        tokio::fs::read(self.path(key)?).await.map_err(not_found)
    }

    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, StoreError> {
        let path = self.path(key)?;
        // One trip to a blocking thread: open, size, positioned read.
        blocking(move || {
            use std::os::unix::fs::FileExt;
            let file = std::fs::File::open(&path)?;
            let len = file.metadata()?.len();
            let (start, end) = (range.start.min(len), range.end.min(len));
            let mut out = vec![0u8; (end - start) as usize];
            file.read_exact_at(&mut out, start)?;
            Ok(out)
        })
        .await
        .map_err(not_found)
    }

    pub async fn len(&self, key: &str) -> Result<u64, StoreError> {
        Ok(tokio::fs::metadata(self.path(key)?)
            .await
            .map_err(not_found)?
            .len())
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every object whose key starts with `prefix` (a directory
    /// prefix ending in `/`). Deleting nothing is not an error.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        match tokio::fs::remove_dir_all(self.path(prefix)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn open_writer(
        &self,
        key: &str,
        progress: &WriteProgress,
    ) -> Result<FsWriter, StoreError> {
        let path = self.path(key)?;
        let dir = path.parent().ok_or(StoreError::BadKey)?.to_owned();
        private_dir(&dir).await?;
        self.abandoned.settle(&path).await;
        let sealed_len = progress.sealed_len;
        let file_path = path.clone();
        let file = blocking(move || {
            let path = file_path;
            use std::io::Seek;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)?;
            let on_disk = file.metadata()?.len();
            if on_disk < sealed_len {
                // The database says more is durable than the file holds:
                // the file was lost or truncated behind our back.
                return Err(std::io::Error::other(format!(
                    "{on_disk} bytes on disk, {sealed_len} recorded as durable"
                )));
            }
            // Bytes past the durable point were never acknowledged.
            file.set_len(sealed_len)?;
            file.seek(std::io::SeekFrom::Start(sealed_len))?;
            let flusher = file.try_clone()?;
            Ok((file, flusher))
        })
        .await
        .map_err(|e| StoreError::Backend(format!("{key}: {e}")))?;
        let (file, flusher) = file;
        Ok(FsWriter {
            file: Some(file),
            flusher: std::sync::Arc::new(flusher),
            writeback: None,
            unflushed: 0,
            pending: self.buffers.take(),
            buffers: self.buffers.clone(),
            in_flight: None,
            written: progress.sealed_len,
            advised_to: progress.sealed_len,
            in_page_cache: progress.sealed_len,
            path,
            abandoned: self.abandoned.clone(),
            dir,
            sync_dir: progress.sealed_len == 0,
        })
    }
}
