//! Object storage for ciphertext, behind one `ObjectStore` with two
//! backends: `fs` (a directory, the embedded default) and `s3` (any
//! S3-compatible store). Keys are `cases/<case_id>/<file_id>`, built from
//! validated ids only.
//!
//! Objects being uploaded are written through an [`ObjectWriter`]: bytes are
//! appended, `sync` makes everything written so far durable and returns an
//! opaque [`ResumeToken`], which the caller stores in the database in the
//! same transaction as the upload offset. Reopening a writer from a stored
//! token discards whatever was written after it (a crash between
//! a sync and its database commit loses nothing acknowledged and leaves no
//! interleaved bytes).

pub mod buffers;
pub mod fs;
mod resume;
pub mod s3;

use std::ops::Range;

pub use fs::{FsStore, FsWriter};
pub use resume::ResumeToken;
use resume::WriteProgress;
pub use s3::{S3Store, S3Writer};

use crate::ids::{CaseId, FileId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object not found")]
    NotFound,
    #[error("object store: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid object key")]
    BadKey,
    #[error("object store: {0}")]
    Backend(String),
    #[error("object store: a stored resume token does not parse")]
    BadResumeToken,
    #[error("the writer may no longer write this object (its upload's lease was lost)")]
    Fenced,
}

/// Whether a writer may still write its object: set by the upload layer
/// from the upload's lease, so a writer whose gateway lost the upload to
/// another replica starts nothing more on a shared store.
pub type WriteGuard = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// Object keys are built from validated ids; anything else is refused, so a
/// key can never escape the fs root or address another S3 prefix.
pub(crate) fn valid_key(key: &str) -> bool {
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

fn checked(key: &str) -> Result<&str, StoreError> {
    if valid_key(key.trim_end_matches('/')) {
        Ok(key)
    } else {
        Err(StoreError::BadKey)
    }
}

/// The object key of a file's ciphertext.
pub fn object_key(case_id: &CaseId, file_id: &FileId) -> String {
    format!("cases/{case_id}/{file_id}")
}

/// The key prefix of everything belonging to a case.
pub fn case_prefix(case_id: &CaseId) -> String {
    format!("cases/{case_id}/")
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
}

/// The configured backend.
#[derive(Debug, Clone)]
pub enum ObjectStore {
    Fs(FsStore),
    S3(S3Store),
}

/// An object being appended to.
#[derive(Debug)]
pub enum ObjectWriter {
    Fs(FsWriter),
    S3(S3Writer),
}

impl ObjectStore {
    /// Ready when the backend accepts a write.
    pub async fn check(&self) -> Result<(), StoreError> {
        match self {
            ObjectStore::Fs(s) => s.check().await,
            ObjectStore::S3(s) => s.check().await,
        }
    }

    /// Stores a whole object atomically and durably.
    pub async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        match self {
            ObjectStore::Fs(s) => s.put(key, bytes).await,
            ObjectStore::S3(s) => s.put(checked(key)?, bytes).await,
        }
    }

    /// Bytes `range` of an object (clamped to its end).
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, StoreError> {
        match self {
            ObjectStore::Fs(s) => s.get_range(key, range).await,
            ObjectStore::S3(s) => s.get_range(checked(key)?, range).await,
        }
    }

    pub async fn len(&self, key: &str) -> Result<u64, StoreError> {
        match self {
            ObjectStore::Fs(s) => s.len(key).await,
            ObjectStore::S3(s) => s.len(checked(key)?).await,
        }
    }

    /// Opens `key` for appending at `resume` (anything stored beyond it
    /// is discarded). `expected_len` is the final object length, which the
    /// S3 backend uses to size multipart parts.
    pub async fn open_writer(
        &self,
        key: &str,
        resume: &ResumeToken,
        expected_len: u64,
    ) -> Result<ObjectWriter, StoreError> {
        let progress = &WriteProgress::from_token(resume)?;
        match self {
            ObjectStore::Fs(s) => Ok(ObjectWriter::Fs(s.open_writer(key, progress).await?)),
            ObjectStore::S3(s) => Ok(ObjectWriter::S3(
                s.open_writer(checked(key)?, progress, expected_len).await?,
            )),
        }
    }

    /// Makes the object written up to `resume` readable at its key.
    /// Idempotent: an object already completed by an earlier attempt whose
    /// end was not recorded (a crash between the store and the database) is
    /// left as it is.
    pub async fn complete_write(
        &self,
        key: &str,
        resume: &ResumeToken,
        expected_len: u64,
    ) -> Result<(), StoreError> {
        match self {
            ObjectStore::Fs(_) => {
                self.open_writer(key, resume, expected_len)
                    .await?
                    .complete()
                    .await
            }
            ObjectStore::S3(s) => {
                s.complete_write(
                    checked(key)?,
                    &WriteProgress::from_token(resume)?,
                    expected_len,
                )
                .await
            }
        }
    }

    /// Waits until nothing a dropped writer of `key` started is still
    /// being written (a request that ended with an error leaves its last
    /// write or part to finish rather than cut it off half-way).
    pub async fn settle_abandoned(&self, key: &str) {
        match self {
            ObjectStore::Fs(s) => s.settle_abandoned(key).await,
            ObjectStore::S3(s) => s.settle_abandoned(key).await,
        }
    }

    /// Deletes an unfinished object and everything kept for it.
    pub async fn abort_write(&self, key: &str, resume: &ResumeToken) -> Result<(), StoreError> {
        match self {
            ObjectStore::Fs(s) => {
                s.settle_abandoned(key).await;
                s.delete(key).await
            }
            ObjectStore::S3(s) => {
                s.abort_write(checked(key)?, &WriteProgress::from_token(resume)?)
                    .await
            }
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            ObjectStore::Fs(s) => s.delete(key).await,
            ObjectStore::S3(s) => s.delete(checked(key)?).await,
        }
    }

    /// Deletes everything kept for a case: its objects and, on S3, the
    /// staging objects and unfinished multipart uploads of its uploads.
    pub async fn delete_case(&self, case_id: &CaseId) -> Result<(), StoreError> {
        let prefix = case_prefix(case_id);
        match self {
            ObjectStore::Fs(s) => s.delete_prefix(&prefix).await,
            ObjectStore::S3(s) => s.delete_case(checked(&prefix)?).await,
        }
    }

    /// Deletes everything under `prefix`. Deleting nothing is not an error.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        match self {
            ObjectStore::Fs(s) => s.delete_prefix(prefix).await,
            ObjectStore::S3(s) => s.delete_prefix(checked(prefix)?).await,
        }
    }
}

impl ObjectWriter {
    /// Checked before every part, staging object and retry the writer
    /// starts. The fs store is one host's disk, never shared by replicas:
    /// its writer needs none.
    pub fn guard(&mut self, guard: WriteGuard) {
        if let ObjectWriter::S3(w) = self {
            w.guard(guard);
        }
    }

    /// Appends bytes (not yet durable).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        match self {
            ObjectWriter::Fs(w) => w.write(bytes).await,
            ObjectWriter::S3(w) => w.write(bytes).await,
        }
    }

    /// The writer's own buffer with room for `n` more bytes, for a caller
    /// that produces the object's next bytes in place (sealing straight into
    /// it) instead of handing them over to be copied; it appends at most `n`
    /// bytes, then calls [`ObjectWriter::appended`]. Bytes already in the
    /// buffer must be left as they are.
    pub async fn buffer(&mut self, n: usize) -> Result<&mut Vec<u8>, StoreError> {
        match self {
            ObjectWriter::Fs(w) => w.buffer(n).await,
            ObjectWriter::S3(w) => w.buffer(n),
        }
    }

    /// Takes what was appended to [`ObjectWriter::buffer`] as written (not
    /// yet durable), as [`ObjectWriter::write`] of those bytes would.
    pub async fn appended(&mut self) -> Result<(), StoreError> {
        match self {
            ObjectWriter::Fs(w) => w.appended().await,
            ObjectWriter::S3(w) => w.appended().await,
        }
    }

    /// Makes everything written durable; returns the token to record.
    pub async fn sync(&mut self) -> Result<ResumeToken, StoreError> {
        let progress = match self {
            ObjectWriter::Fs(w) => w.sync().await?,
            ObjectWriter::S3(w) => w.sync().await?,
        };
        Ok(progress.token())
    }

    /// After a final `sync`: makes the object readable at its key.
    pub async fn complete(self) -> Result<(), StoreError> {
        match self {
            ObjectWriter::Fs(w) => w.complete().await,
            ObjectWriter::S3(w) => w.complete().await,
        }
    }
}
