//! The `fs` object store: one file per object under a root directory
//! (mode 0700). Whole objects are written to a temporary name, synced and
//! renamed. Objects being uploaded are appended in place and synced once
//! per durable point; reopening truncates to the recorded length.

use std::ops::Range;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};

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
        let mut file = tokio::fs::File::open(self.path(key)?)
            .await
            .map_err(not_found)?;
        let len = file.metadata().await?.len();
        let (start, end) = (range.start.min(len), range.end.min(len));
        file.seek(std::io::SeekFrom::Start(start)).await?;
        let mut out = vec![0u8; (end - start) as usize];
        file.read_exact(&mut out).await?;
        Ok(out)
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
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .await?;
        let on_disk = file.metadata().await?.len();
        if on_disk < progress.sealed_len {
            // The database says more is durable than the file holds: the
            // file was lost or truncated behind our back.
            return Err(StoreError::Backend(format!(
                "{key}: {on_disk} bytes on disk, {} recorded as durable",
                progress.sealed_len
            )));
        }
        // Bytes past the durable point were never acknowledged.
        file.set_len(progress.sealed_len).await?;
        file.seek(std::io::SeekFrom::Start(progress.sealed_len))
            .await?;
        let new_file = progress.sealed_len == 0;
        Ok(FsWriter {
            file: BufWriter::with_capacity(256 * 1024, file),
            written: progress.sealed_len,
            dir,
            sync_dir: new_file,
        })
    }
}

/// Appends to one object file.
#[derive(Debug)]
pub struct FsWriter {
    file: BufWriter<tokio::fs::File>,
    written: u64,
    dir: PathBuf,
    /// A new file's directory entry must be synced once too.
    sync_dir: bool,
}

impl FsWriter {
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.file.write_all(bytes).await?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    pub async fn sync(&mut self) -> Result<WriteProgress, StoreError> {
        self.file.flush().await?;
        self.file.get_ref().sync_data().await?;
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
