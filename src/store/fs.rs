//! The `fs` object store: one file per object under a root directory
//! (mode 0700). Whole objects are written to a temporary name, synced and
//! renamed. Objects being uploaded are appended in place and synced once
//! per durable point; reopening truncates to the recorded length. A
//! write a dropped writer left running is waited for before the file is
//! touched again (`abandoned.rs`).

use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::buffers::BufferPool;
use super::{StoreError, WriteProgress, valid_key};

mod abandoned;
use abandoned::AbandonedWrites;

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

/// Bytes gathered before one write system call (on a blocking thread).
const WRITE_BATCH: usize = 512 * 1024;
/// A batch buffer's capacity: a batch plus room for one more sealed chunk
/// (64 KiB + 28) and the header, so a caller sealing in place
/// ([`FsWriter::buffer`]) fills batches of 8 chunks without reallocating.
const BATCH_CAPACITY: usize = WRITE_BATCH + 68 * 1024;
/// Idle batch buffers kept for reuse (two per concurrent writer at most).
const KEEP_BATCHES: usize = 32;

/// Bytes written after which the kernel is asked to start writing them to
/// the disk (write-behind), so the disk works while the next bytes arrive
/// and a durable point finds little left to flush. Only `sync` promises
/// anything. Well under a tus client's PATCH (8 MiB for tuspy, 5 MiB for
/// tus-js-client): a PATCH's sync then waits for its last 2 MiB or so,
/// not for all of it with the client idle.
const WRITEBACK_EVERY: u64 = 2 * 1024 * 1024;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

/// What a background write hands back: the file and the emptied buffer.
type WriteDone = std::io::Result<(std::fs::File, Vec<u8>)>;

/// Appends to one object file. Batches are written on a blocking thread
/// while the caller prepares the next one: at most two batches in memory
/// per writer.
pub struct FsWriter {
    file: Option<std::fs::File>,
    /// A second handle on the same file for write-behind.
    flusher: std::sync::Arc<std::fs::File>,
    writeback: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Bytes handed to the disk since the last write-behind flush started.
    unflushed: u64,
    pending: Vec<u8>,
    buffers: BufferPool,
    in_flight: Option<tokio::task::JoinHandle<WriteDone>>,
    path: PathBuf,
    abandoned: AbandonedWrites,
    written: u64,
    /// Where the last write-behind advice ended.
    advised_to: u64,
    /// Bytes whose write finished (in the page cache, dirty or not).
    in_page_cache: u64,
    dir: PathBuf,
    /// A new file's directory entry must be synced once too.
    sync_dir: bool,
}

impl std::fmt::Debug for FsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FsWriter({} bytes)", self.written)
    }
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        self.buffers.give(std::mem::take(&mut self.pending));
        if let Some(task) = self.in_flight.take() {
            self.abandoned.adopt(std::mem::take(&mut self.path), task);
        }
    }
}

impl FsWriter {
    /// Refuses a writer whose write failed (fail closed): the file is only
    /// away while a write is in flight, and a failed write does not give
    /// it back, so what the pending batch holds may not follow what the
    /// disk has. The caller reopens at the last durable point.
    fn usable(&self) -> Result<(), StoreError> {
        if self.file.is_none() && self.in_flight.is_none() {
            return Err(StoreError::Backend(
                "an earlier write failed; resume from the last durable point".into(),
            ));
        }
        Ok(())
    }

    pub async fn write(&mut self, mut bytes: &[u8]) -> Result<(), StoreError> {
        self.usable()?;
        // Batches are filled exactly, so buffers never grow past their size.
        while !bytes.is_empty() {
            let take = (WRITE_BATCH - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == WRITE_BATCH {
                self.start_write().await?;
                self.maybe_write_behind().await?;
            }
        }
        Ok(())
    }

    /// The pending batch with room for `n` more bytes (the batch goes to
    /// the disk first if they would not fit).
    pub(crate) async fn buffer(&mut self, n: usize) -> Result<&mut Vec<u8>, StoreError> {
        self.usable()?;
        if self.pending.len() + n > self.pending.capacity() && !self.pending.is_empty() {
            self.start_write().await?;
            self.maybe_write_behind().await?;
        }
        // Only for chunks larger than a batch's spare room: the pool then
        // drops this buffer instead of keeping it.
        self.pending.reserve(n);
        Ok(&mut self.pending)
    }

    /// Hands a full batch to the disk once bytes appended in place fill it.
    pub(crate) async fn appended(&mut self) -> Result<(), StoreError> {
        self.usable()?;
        if self.pending.len() >= WRITE_BATCH {
            self.start_write().await?;
            self.maybe_write_behind().await?;
        }
        Ok(())
    }

    /// Waits for the write in flight, if any.
    async fn settle(&mut self) -> Result<Vec<u8>, StoreError> {
        let Some(task) = self.in_flight.take() else {
            return Ok(self.buffers.take());
        };
        let (file, mut buf) = task.await.map_err(std::io::Error::other)??;
        self.file = Some(file);
        self.in_page_cache += buf.len() as u64;
        buf.clear();
        Ok(buf)
    }

    /// Hands the pending batch to a blocking thread and returns at once.
    async fn start_write(&mut self) -> Result<(), StoreError> {
        let spare = self.settle().await?;
        let batch = std::mem::replace(&mut self.pending, spare);
        let batch_len = batch.len() as u64;
        self.written += batch_len;
        let mut file = self
            .file
            .take()
            .ok_or_else(|| StoreError::Backend("writer failed earlier".into()))?;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            use std::io::Write;
            file.write_all(&batch)?;
            Ok((file, batch))
        }));
        self.unflushed += batch_len;
        Ok(())
    }

    /// Starts write-behind once enough was written since the last (and none
    /// is running): `POSIX_FADV_DONTNEED` over the pages written since the
    /// last advice, which makes the kernel start writing them out without
    /// waiting for them. It would also drop clean pages from the page cache,
    /// but these are dirty, so they stay cached (a download soon after the
    /// upload reads them from memory, as before); earlier ranges are not
    /// advised again. Unlike an `fdatasync` it commits no journal and
    /// flushes no device cache, so it can run often. Not on the way to a
    /// `sync`, which writes everything anyway.
    async fn maybe_write_behind(&mut self) -> Result<(), StoreError> {
        if self.unflushed >= WRITEBACK_EVERY
            && self.writeback.as_ref().is_none_or(|w| w.is_finished())
        {
            self.settle_writeback().await?;
            let flusher = self.flusher.clone();
            // Only what finished its write: the batch in flight is advised
            // next time.
            let (from, to) = (self.advised_to, self.in_page_cache);
            if to <= from {
                return Ok(());
            }
            self.writeback = Some(tokio::task::spawn_blocking(move || {
                let len = std::num::NonZeroU64::new(to - from);
                write_behind(&flusher, from, len);
                Ok(())
            }));
            self.advised_to = to;
            self.unflushed = 0;
        }
        Ok(())
    }

    /// Waits for the write-behind, if one runs.
    async fn settle_writeback(&mut self) -> Result<(), StoreError> {
        if let Some(task) = self.writeback.take() {
            task.await.map_err(std::io::Error::other)??;
        }
        Ok(())
    }

    pub(crate) async fn sync(&mut self) -> Result<WriteProgress, StoreError> {
        self.usable()?;
        if !self.pending.is_empty() {
            self.start_write().await?;
        }
        let spare = self.settle().await?;
        self.buffers.give(spare);
        self.settle_writeback().await?;
        self.unflushed = 0;
        let file = self
            .file
            .take()
            .ok_or_else(|| StoreError::Backend("writer failed earlier".into()))?;
        let file = blocking(move || file.sync_data().map(|()| file)).await?;
        self.file = Some(file);
        // Everything written is on the disk now and clean: advising it
        // later would drop it from the page cache.
        self.advised_to = self.in_page_cache;
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

/// Asks the kernel to start writing `len` bytes from `from` out (advice:
/// a failure changes nothing the sync relies on). Where the advice does
/// not exist (macOS), the final `fdatasync` writes everything, as before.
fn write_behind(file: &std::fs::File, from: u64, len: Option<std::num::NonZeroU64>) {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    let _ = rustix::fs::fadvise(file, from, len, rustix::fs::Advice::DontNeed);
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    let _ = (file, from, len);
}
