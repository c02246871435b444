//! The `s3` object store: any S3-compatible service (AWS S3, Garage, MinIO,
//! Ceph RGW) through rust-s3, path-style or virtual-host.
//!
//! Objects being uploaded become multipart uploads. Parts are
//! max(8 MiB, ⌈object length / 9000⌉) — at least 5 MiB and at most 10,000
//! per object. Durable bytes that do not yet fill a part are kept in a
//! staging object `staging/<key>/<generation>-<writer>` (ciphertext: the
//! bytes are sealed chunks already); a new generation is written at each
//! durable point and the progress recorded in the database names the one
//! that counts, so a crash between the two never points at half-written
//! data. `<writer>` is drawn at random by each writer, so a request still
//! in flight from a writer that lost the upload (another replica took its
//! lease) lands under a name nothing records instead of replacing the
//! staging object the new writer recorded.
//! Staging objects and unfinished multipart uploads are removed on
//! completion, termination, expiry and case deletion.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use s3::creds::Credentials;
use s3::{Bucket, Region};
use serde::{Deserialize, Serialize};

mod part;
mod retry;
mod staging;
mod writer;

pub use writer::S3Writer;

use retry::{backend, local, retry, retry_guarded};
use staging::staging_key;

use super::{StoreError, WriteProgress};
use crate::config::S3Config;

const MIN_PART: u64 = 8 * 1024 * 1024;
const MAX_PARTS: u64 = 9000;
const CONTENT_TYPE: &str = "application/octet-stream";
/// More than the most one lend through `S3Writer::buffer` asks for (a
/// sealed chunk and a header).
const LEND_SLACK: usize = 128 * 1024;

/// Multipart state of an object being uploaded, kept in its resume token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MultipartProgress {
    /// None until the first full part is uploaded.
    pub upload_id: Option<String>,
    pub part_size: u64,
    /// ETags of parts 1..=n.
    pub parts: Vec<String>,
    /// Generation of the staging object holding the bytes after the last
    /// part (0: none).
    pub staging_generation: u64,
    pub staging_len: u64,
    /// The writer that wrote that staging object (none: recorded before
    /// staging names carried one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging_writer: Option<String>,
}

/// Parts still uploading for writers that were dropped (a request that
/// ended with an error while a part was in flight), by object key. The
/// next writer of that object, its termination, and the request's release
/// of the upload wait for them: a part landing late would replace the part
/// a later writer sent under the same number, and completion would then
/// fail on its ETag.
type Abandoned = Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<PartTask>>>>;

/// A part uploading on a task of its own; answers its ETag.
type PartTask = tokio::task::JoinHandle<Result<String, StoreError>>;

#[derive(Clone)]
pub struct S3Store {
    bucket: Arc<Bucket>,
    abandoned: Abandoned,
    /// Parts one writer sends at once (`storage.s3.parts_in_flight`).
    parts_in_flight: usize,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Store({})", self.bucket.name)
    }
}

/// Part size for an object of `len` bytes.
pub fn part_size(len: u64) -> u64 {
    MIN_PART.max(len.div_ceil(MAX_PARTS))
}

impl S3Store {
    pub fn open(config: &S3Config) -> Result<S3Store, StoreError> {
        let region = Region::Custom {
            region: config.region.clone(),
            endpoint: config.endpoint.clone(),
        };
        let credentials = Credentials::new(
            Some(&config.access_key),
            Some(config.secret_key.expose()),
            None,
            None,
            None,
        )
        .map_err(|e| StoreError::Backend(format!("S3 credentials: {e}")))?;
        let bucket = Bucket::new(&config.bucket, region, credentials)
            .and_then(|b| b.with_request_timeout(Duration::from_secs(config.request_timeout_secs)))
            .map_err(|e| backend("bucket", &e))?;
        let bucket = if config.path_style {
            bucket.with_path_style()
        } else {
            bucket
        };
        Ok(S3Store {
            bucket: Arc::from(bucket),
            abandoned: Abandoned::default(),
            parts_in_flight: config.parts_in_flight.max(1),
        })
    }

    /// Leaves behind a part a dropped or failed writer had in flight.
    pub(super) fn abandon(&self, key: &str, task: PartTask) {
        match self.abandoned.lock() {
            Ok(mut map) => map.entry(key.to_owned()).or_default().push(task),
            Err(_) => task.abort(),
        }
    }

    /// Waits until no part of a dropped writer of `key` is still uploading.
    pub(crate) async fn settle_abandoned(&self, key: &str) {
        let late = match self.abandoned.lock() {
            Ok(mut map) => map.remove(key),
            Err(_) => None,
        };
        for task in late.into_iter().flatten() {
            // Its outcome does not matter (it is never recorded), only that
            // it is over.
            let _ = task.await;
        }
    }

    pub async fn check(&self) -> Result<(), StoreError> {
        let probe = ".readyz";
        retry("put", || self.bucket.put_object(probe, b"ok")).await?;
        retry("delete", || self.bucket.delete_object(probe)).await?;
        Ok(())
    }

    pub async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_guarded(key, bytes, None).await
    }

    /// [`S3Store::put`], asking `guard` before every attempt.
    pub(super) async fn put_guarded(
        &self,
        key: &str,
        bytes: &[u8],
        guard: Option<&super::WriteGuard>,
    ) -> Result<(), StoreError> {
        retry_guarded("put", guard, || self.bucket.put_object(key, bytes))
            .await
            .map(|_| ())
    }

    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, StoreError> {
        if range.is_empty() {
            self.len(key).await?;
            return Ok(Vec::new());
        }
        match retry("get", || {
            self.bucket
                .get_object_range(key, range.start, Some(range.end - 1))
        })
        .await
        {
            Ok(data) => Ok(data.to_vec()),
            // Range starting at or past the end.
            Err(StoreError::Backend(m)) if m.contains("HTTP 416") => {
                self.len(key).await?;
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    pub async fn len(&self, key: &str) -> Result<u64, StoreError> {
        let (head, _) = retry("head", || self.bucket.head_object(key)).await?;
        head.content_length
            .and_then(|l| u64::try_from(l).ok())
            .ok_or_else(|| StoreError::Backend("head: no content length".into()))
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match retry("delete", || self.bucket.delete_object(key)).await {
            Ok(_) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        let pages = retry("list", || self.bucket.list(prefix.to_owned(), None)).await?;
        for page in pages {
            for object in page.contents {
                self.delete(&object.key).await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn open_writer(
        &self,
        key: &str,
        progress: &WriteProgress,
        expected_len: u64,
    ) -> Result<S3Writer, StoreError> {
        self.reopen(key, progress, expected_len, true).await
    }

    /// A writer continuing `progress`; `sweep`: also sweep stale staging
    /// objects (not worth a listing when the writer only completes).
    async fn reopen(
        &self,
        key: &str,
        progress: &WriteProgress,
        expected_len: u64,
        sweep: bool,
    ) -> Result<S3Writer, StoreError> {
        self.settle_abandoned(key).await;
        let state = progress.multipart.clone().unwrap_or(MultipartProgress {
            part_size: part_size(expected_len),
            ..Default::default()
        });
        if sweep && state.staging_generation > 0 {
            self.sweep_staging(key, &state);
        }
        let mut buffer = Vec::new();
        if let Some(staged) = state.staging_key(key) {
            buffer = self.get_range(&staged, 0..state.staging_len).await?;
            if buffer.len() as u64 != state.staging_len {
                return Err(StoreError::Backend(format!(
                    "{key}: staging object shorter than recorded"
                )));
            }
        }
        // Room for a part and one more lend past it, so the part being
        // filled is never moved to grow.
        buffer.reserve_exact(state.part_size as usize + LEND_SLACK);
        Ok(S3Writer::new(self.clone(), key, state, buffer))
    }

    /// Completes the object written up to `progress`. An earlier
    /// completion may have finished and removed the staging object before
    /// the database recorded it (a crash in between): the object is then
    /// already there with its full length, and only the staging prefix is
    /// tidied.
    pub(crate) async fn complete_write(
        &self,
        key: &str,
        progress: &WriteProgress,
        expected_len: u64,
    ) -> Result<(), StoreError> {
        match self.reopen(key, progress, expected_len, false).await {
            Ok(writer) => writer.complete().await?,
            Err(StoreError::NotFound) => match self.len(key).await {
                Ok(len) if len == expected_len => {
                    self.delete_prefix(&format!("staging/{key}/")).await?
                }
                _ => {
                    return Err(StoreError::Backend(format!(
                        "{key}: staging object gone and the object not complete"
                    )));
                }
            },
            Err(e) => return Err(e),
        }
        // Multipart uploads of this key whose id was never recorded (a kill
        // or a discarded PATCH after one was started) would otherwise keep
        // their parts forever. Housekeeping: the object is complete.
        if let Err(e) = self.abort_multiparts(key, true).await {
            tracing::debug!(error = %e, "unrecorded multipart uploads not listed");
        }
        Ok(())
    }

    /// Aborts every unfinished multipart upload of `prefix` (`whole_key`:
    /// of exactly that key), recorded or not. Stores without
    /// ListMultipartUploads answer an error (S3's bucket lifecycle rule
    /// `AbortIncompleteMultipartUpload` then does this job).
    pub(crate) async fn abort_multiparts(
        &self,
        prefix: &str,
        whole_key: bool,
    ) -> Result<(), StoreError> {
        let pages = retry("list multipart", || {
            self.bucket.list_multiparts_uploads(Some(prefix), None)
        })
        .await?;
        for upload in pages.iter().flat_map(|p| &p.uploads) {
            if whole_key && upload.key != prefix {
                continue;
            }
            match retry("abort multipart", || {
                self.bucket.abort_upload(&upload.key, &upload.id)
            })
            .await
            {
                Ok(()) | Err(StoreError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Removes everything kept for a deleted case: its objects, the
    /// staging objects of its uploads, and its unfinished multipart
    /// uploads, whether or not the database still knew of them.
    pub(crate) async fn delete_case(&self, prefix: &str) -> Result<(), StoreError> {
        if let Err(e) = self.abort_multiparts(prefix, false).await {
            tracing::warn!(error = %e, "multipart uploads of a deleted case not listed");
        }
        self.delete_prefix(&format!("staging/{prefix}")).await?;
        self.delete_prefix(prefix).await
    }

    /// Aborts the multipart upload, removes staging objects and any
    /// completed object.
    pub(crate) async fn abort_write(
        &self,
        key: &str,
        progress: &WriteProgress,
    ) -> Result<(), StoreError> {
        self.settle_abandoned(key).await;
        if let Some(upload_id) = progress
            .multipart
            .as_ref()
            .and_then(|m| m.upload_id.as_deref())
        {
            match retry("abort multipart", || {
                self.bucket.abort_upload(key, upload_id)
            })
            .await
            {
                Ok(()) | Err(StoreError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        if let Err(e) = self.abort_multiparts(key, true).await {
            tracing::debug!(error = %e, "unrecorded multipart uploads not listed");
        }
        self.delete_prefix(&format!("staging/{key}/")).await?;
        self.delete(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_keep_s3_limits() {
        assert_eq!(part_size(0), MIN_PART);
        assert_eq!(part_size(1 << 30), MIN_PART);
        let huge = 5 * (1u64 << 40);
        assert!(huge.div_ceil(part_size(huge)) <= 10_000);
        assert!(part_size(huge) >= 5 * 1024 * 1024);
    }
}
