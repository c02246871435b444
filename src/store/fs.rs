//! The `fs` object store: one file per object under a root directory
//! (mode 0700). Whole objects are written to a temporary name, synced and
//! renamed. Objects being uploaded are appended in place and synced once
//! per durable point; reopening truncates to the recorded length.

use std::ops::Range;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::{StoreError, WriteProgress, valid_key};

#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

fn not_found(e: std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::NotFound {
        StoreError::NotFound
    } else {
        e.into()
    }
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

    pub async fn open_writer(
        &self,
        key: &str,
        progress: &WriteProgress,
    ) -> Result<FsWriter, StoreError> {
        let path = self.path(key)?;
        let dir = path.parent().ok_or(StoreError::BadKey)?.to_owned();
        tokio::fs::create_dir_all(&dir).await?;
        let sealed_len = progress.sealed_len;
        let file = blocking(move || {
            use std::io::Seek;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
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
            Ok(file)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("{key}: {e}")))?;
        Ok(FsWriter {
            file: Some(file),
            hasher: None,
            pending: Vec::with_capacity(WRITE_BATCH),
            in_flight: None,
            written: progress.sealed_len,
            dir,
            sync_dir: progress.sealed_len == 0,
        })
    }
}

/// Bytes gathered before one write system call (on a blocking thread).
const WRITE_BATCH: usize = 512 * 1024;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

/// What a background write hands back: the file, the emptied buffer, the
/// running hash of everything written.
type WriteDone = std::io::Result<(std::fs::File, Vec<u8>, Option<ring::digest::Context>)>;

/// Appends to one object file. Batches are written (and hashed, if asked)
/// on a blocking thread while the caller prepares the next one: at most two
/// batches in memory per writer.
pub struct FsWriter {
    file: Option<std::fs::File>,
    hasher: Option<ring::digest::Context>,
    pending: Vec<u8>,
    in_flight: Option<tokio::task::JoinHandle<WriteDone>>,
    written: u64,
    dir: PathBuf,
    /// A new file's directory entry must be synced once too.
    sync_dir: bool,
}

impl std::fmt::Debug for FsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FsWriter({} bytes)", self.written)
    }
}

impl FsWriter {
    /// Hash every byte written from now on with `ctx` (see `take_hasher`).
    pub fn set_hasher(&mut self, ctx: Option<ring::digest::Context>) {
        self.hasher = ctx;
    }

    /// The running hash, after a `sync`.
    pub fn take_hasher(&mut self) -> Option<ring::digest::Context> {
        self.hasher.take()
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.pending.extend_from_slice(bytes);
        self.written += bytes.len() as u64;
        if self.pending.len() >= WRITE_BATCH {
            self.start_write().await?;
        }
        Ok(())
    }

    /// Waits for the write in flight, if any.
    async fn settle(&mut self) -> Result<Vec<u8>, StoreError> {
        let Some(task) = self.in_flight.take() else {
            return Ok(Vec::with_capacity(WRITE_BATCH));
        };
        let (file, mut buf, hasher) = task.await.map_err(std::io::Error::other)??;
        self.file = Some(file);
        self.hasher = hasher;
        buf.clear();
        Ok(buf)
    }

    /// Hands the pending batch to a blocking thread and returns at once.
    async fn start_write(&mut self) -> Result<(), StoreError> {
        let spare = self.settle().await?;
        let batch = std::mem::replace(&mut self.pending, spare);
        let mut file = self
            .file
            .take()
            .ok_or_else(|| StoreError::Backend("writer failed earlier".into()))?;
        let mut hasher = self.hasher.take();
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            use std::io::Write;
            file.write_all(&batch)?;
            if let Some(h) = hasher.as_mut() {
                h.update(&batch);
            }
            Ok((file, batch, hasher))
        }));
        Ok(())
    }

    pub async fn sync(&mut self) -> Result<WriteProgress, StoreError> {
        if !self.pending.is_empty() {
            self.start_write().await?;
        }
        let spare = self.settle().await?;
        self.pending = spare;
        let file = self
            .file
            .take()
            .ok_or_else(|| StoreError::Backend("writer failed earlier".into()))?;
        let file = blocking(move || file.sync_data().map(|()| file)).await?;
        self.file = Some(file);
        if self.sync_dir {
            sync_dir(&self.dir).await?;
            self.sync_dir = false;
        }
        Ok(WriteProgress {
            sealed_len: self.written,
            multipart: None,
        })
    }

    pub async fn complete(mut self) -> Result<(), StoreError> {
        self.sync().await.map(|_| ())
    }
}
