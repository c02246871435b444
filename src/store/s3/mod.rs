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
use s3::error::S3Error;
use s3::{Bucket, Region};
use serde::{Deserialize, Serialize};

mod part;
mod writer;

pub use writer::S3Writer;

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

impl MultipartProgress {
    /// The staging object this progress records (none when it has no
    /// staged bytes).
    fn staging_key(&self, key: &str) -> Option<String> {
        (self.staging_len > 0)
            .then(|| staging_key(key, self.staging_generation, self.staging_writer.as_deref()))
    }
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

fn status(e: &S3Error) -> Option<u16> {
    match e {
        S3Error::HttpFailWithBody(code, _) => Some(*code),
        _ => None,
    }
}

/// A failure found on this side of the wire (a header that cannot be
/// built, an answer that cannot be used): never worth another attempt.
/// Carried as a status below 100 so [`transient`] refuses it.
fn local(message: impl Into<String>) -> S3Error {
    S3Error::HttpFailWithBody(0, message.into())
}

fn backend(op: &str, e: &S3Error) -> StoreError {
    match (status(e), e) {
        (Some(404), _) => StoreError::NotFound,
        // Not an HTTP error ([`local`]): the message says what went wrong.
        (Some(0), S3Error::HttpFailWithBody(_, message)) => {
            StoreError::Backend(format!("{op}: {message}"))
        }
        (Some(code), _) => StoreError::Backend(format!("{op}: HTTP {code}")),
        (None, _) => StoreError::Backend(format!("{op}: {e}")),
    }
}

/// Transport failures (timeouts included), throttling, server errors and
/// a store that timed out reading the body are worth retrying; everything
/// here is idempotent (puts overwrite, parts are re-uploadable).
fn transient(e: &S3Error) -> bool {
    match (status(e), e) {
        // 501: the store does not implement the call; asking again is no use.
        (Some(code), _) if code == 408 || code == 429 || (code >= 500 && code != 501) => true,
        // AWS answers a body that arrived too slowly with 400 RequestTimeout.
        (Some(400), S3Error::HttpFailWithBody(_, body)) => {
            body.contains("<Code>RequestTimeout</Code>")
        }
        (Some(_), _) => false,
        (None, _) => !matches!(e, S3Error::HttpFail),
    }
}

async fn retry<T, F, Fut>(op: &str, call: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, S3Error>>,
{
    retry_guarded(op, None, call).await
}

/// [`retry`], asking `guard` before every attempt.
async fn retry_guarded<T, F, Fut>(
    op: &str,
    guard: Option<&super::WriteGuard>,
    mut call: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, S3Error>>,
{
    let mut delay = Duration::from_millis(200);
    for attempt in 1.. {
        if guard.is_some_and(|may_write| !may_write()) {
            return Err(StoreError::Fenced);
        }
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < 4 && transient(&e) => {
                tracing::warn!(op, attempt, error = %backend(op, &e), "S3 call failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 3;
            }
            Err(e) => return Err(backend(op, &e)),
        }
    }
    unreachable!("the loop returns")
}

fn staging_key(key: &str, generation: u64, writer: Option<&str>) -> String {
    match writer {
        Some(writer) => format!("staging/{key}/{generation:010}-{writer}"),
        None => format!("staging/{key}/{generation:010}"),
    }
}

/// The generation a staging object's name carries (`None`: not one of
/// ours).
fn staging_generation(key: &str, name: &str) -> Option<u64> {
    let rest = name.strip_prefix(&format!("staging/{key}/"))?;
    // `<generation>-<writer>`, or `<generation>` alone (older names).
    let generation = rest.split('-').next()?;
    if generation.is_empty() || !generation.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    generation.parse().ok()
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

    /// Deletes, in the background, the staging objects of `key` that no
    /// record can name any more: every one of an older generation than
    /// `recorded`'s, and every other one of the same generation (a writer
    /// that lost the upload, a durable point whose commit failed). Writers
    /// only ever write newer generations than the record they opened from,
    /// so whatever they write meanwhile is never touched — wherever the
    /// lease is by then.
    fn sweep_staging(&self, key: &str, recorded: &MultipartProgress) {
        let store = self.clone();
        let key = key.to_owned();
        let generation = recorded.staging_generation;
        let keep = recorded.staging_key(&key);
        tokio::spawn(async move {
            let pages = match store.bucket.list(format!("staging/{key}/"), None).await {
                Ok(pages) => pages,
                Err(e) => {
                    tracing::debug!(error = %e, "staging objects not listed");
                    return;
                }
            };
            for object in pages.iter().flat_map(|p| &p.contents) {
                let stale = staging_generation(&key, &object.key).is_some_and(|g| {
                    g < generation || (g == generation && keep.as_ref() != Some(&object.key))
                });
                if stale && let Err(e) = store.delete(&object.key).await {
                    tracing::debug!(error = %e, "stale staging object not deleted");
                }
            }
        });
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
    fn what_is_retried() {
        let http = |code: u16, body: &str| S3Error::HttpFailWithBody(code, body.into());
        for (e, again) in [
            (http(500, ""), true),
            (http(503, "SlowDown"), true),
            (http(429, ""), true),
            (http(408, ""), true),
            (
                http(400, "<Error><Code>RequestTimeout</Code></Error>"),
                true,
            ),
            (http(400, "<Error><Code>BadDigest</Code></Error>"), false),
            (http(403, ""), false),
            (http(404, ""), false),
            (http(501, ""), false),
            (local("the store answered without an ETag"), false),
            (S3Error::HttpFail, false),
            (
                S3Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "stalled")),
                true,
            ),
        ] {
            assert_eq!(transient(&e), again, "{e:?}");
        }
        let said = |e: StoreError| e.to_string();
        assert!(said(backend("upload part", &local("no ETag"))).contains("no ETag"));
        assert!(said(backend("get", &http(301, "<Key>cases/c1/f1</Key>"))).contains("HTTP 301"));
        assert!(!said(backend("get", &http(301, "<Key>cases/c1/f1</Key>"))).contains("cases/"));
        assert!(matches!(
            backend("get", &http(404, "")),
            StoreError::NotFound
        ));
    }

    #[test]
    fn staging_names_carry_their_generation() {
        let key = "cases/c1/f1";
        assert_eq!(
            staging_generation(key, &staging_key(key, 7, Some("ab12"))),
            Some(7)
        );
        assert_eq!(staging_generation(key, &staging_key(key, 7, None)), Some(7));
        let big = 12_345_678_901;
        assert_eq!(
            staging_generation(key, &staging_key(key, big, Some("ab12"))),
            Some(big)
        );
        assert_eq!(
            staging_generation(key, "staging/cases/c1/f10/0000000001-ab"),
            None
        );
        assert_eq!(staging_generation(key, "staging/cases/c1/f1/x-1"), None);
    }

    #[test]
    fn part_sizes_keep_s3_limits() {
        assert_eq!(part_size(0), MIN_PART);
        assert_eq!(part_size(1 << 30), MIN_PART);
        let huge = 5 * (1u64 << 40);
        assert!(huge.div_ceil(part_size(huge)) <= 10_000);
        assert!(part_size(huge) >= 5 * 1024 * 1024);
    }
}
