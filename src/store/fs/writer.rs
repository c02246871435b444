//! Appending to one object of the `fs` store: bytes gathered into 512 KiB
//! batches written on a blocking thread (one in flight while the next
//! fills), write-behind every 2 MiB so a durable point's sync finds little
//! left to flush, and the sync itself.

use std::path::PathBuf;

use super::abandoned::AbandonedWrites;
use super::{blocking, sync_dir};
use crate::store::buffers::BufferPool;
use crate::store::{StoreError, WriteProgress};

/// Bytes gathered before one write system call (on a blocking thread).
const WRITE_BATCH: usize = 512 * 1024;
/// A batch buffer's capacity: a batch plus room for one more sealed chunk
/// (64 KiB + 28) and the header, so a caller sealing in place
/// ([`FsWriter::buffer`]) fills batches of 8 chunks without reallocating.
pub(super) const BATCH_CAPACITY: usize = WRITE_BATCH + 68 * 1024;
/// Idle batch buffers kept for reuse (two per concurrent writer at most).
pub(super) const KEEP_BATCHES: usize = 32;

/// Bytes written after which the kernel is asked to start writing them to
/// the disk (write-behind), so the disk works while the next bytes arrive
/// and a durable point finds little left to flush. Only `sync` promises
/// anything. Well under a tus client's PATCH (8 MiB for tuspy, 5 MiB for
/// tus-js-client): a PATCH's sync then waits for its last 2 MiB or so,
/// not for all of it with the client idle.
const WRITEBACK_EVERY: u64 = 2 * 1024 * 1024;

/// What a background write hands back: the file and the emptied buffer.
pub(super) type WriteDone = std::io::Result<(std::fs::File, Vec<u8>)>;

/// Appends to one object file. Batches are written on a blocking thread
/// while the caller prepares the next one: at most two batches in memory
/// per writer.
pub struct FsWriter {
    pub(super) file: Option<std::fs::File>,
    /// A second handle on the same file for write-behind.
    pub(super) flusher: std::sync::Arc<std::fs::File>,
    pub(super) writeback: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Bytes handed to the disk since the last write-behind flush started.
    pub(super) unflushed: u64,
    pub(super) pending: Vec<u8>,
    pub(super) buffers: BufferPool,
    pub(super) in_flight: Option<tokio::task::JoinHandle<WriteDone>>,
    pub(super) path: PathBuf,
    pub(super) abandoned: AbandonedWrites,
    pub(super) written: u64,
    /// Where the last write-behind advice ended.
    pub(super) advised_to: u64,
    /// Bytes whose write finished (in the page cache, dirty or not).
    pub(super) in_page_cache: u64,
    pub(super) dir: PathBuf,
    /// A new file's directory entry must be synced once too.
    pub(super) sync_dir: bool,
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
