//! Appending to one object being uploaded: full parts go up in the
//! background as they fill, the bytes after the last part are staged at
//! each durable point, and completion assembles the multipart upload (or
//! one PUT when smaller than a part).
//!
//! At most one part is in flight while the next one fills, so an upload
//! holds at most two parts (plus the copy rust-s3 makes of the one being
//! sent). A part counts only once its upload answered and this writer
//! recorded it; `sync` waits for the part in flight first, so a durable
//! point never names a part that is not stored. A writer dropped with a
//! part in flight records nothing, and leaves the part to finish: the
//! store makes the object's next writer (and the request's release of the
//! upload) wait for it. After any failure the
//! writer refuses further use: the caller reopens it from the last durable
//! point.

use bytes::Bytes;
use s3::command::{Command, Multipart};
use s3::request::Request;
use s3::request::tokio_backend::ReqwestRequest;
use s3::serde_types::Part;
use tokio::task::JoinHandle;

use super::{CONTENT_TYPE, MultipartProgress, S3Store, backend, retry_guarded, staging_key};
use crate::store::{StoreError, WriteGuard, WriteProgress};

/// Appends to one object through a multipart upload.
pub struct S3Writer {
    store: S3Store,
    key: String,
    state: MultipartProgress,
    /// Bytes after the last part handed to an upload (< part size after
    /// each write).
    buffer: Vec<u8>,
    /// The part being uploaded, not yet in `state.parts`.
    in_flight: Option<InFlight>,
    /// Set by the first failure; every later call is refused.
    failed: bool,
    /// Asked before each part, staging object and retry (the upload's
    /// lease); none: always allowed.
    guard: Option<WriteGuard>,
}

/// A part uploading on a task of its own.
struct InFlight {
    /// The part number and multipart upload it was sent as: checked when
    /// it is recorded, so a part can only land in the slot it was sent for.
    number: u32,
    upload_id: String,
    len: u64,
    task: JoinHandle<Result<String, StoreError>>,
}

impl std::fmt::Debug for S3Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Writer({})", self.key)
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        // Never recorded: the next writer starts from the last durable
        // point and sends this part again — after this one is over (an
        // aborted request may still land once its body is sent).
        if let Some(part) = self.in_flight.take() {
            self.store.abandon(&self.key, part.task);
        }
    }
}

/// Uploads one part; the bytes are shared, never copied per retry.
async fn upload_part(
    store: S3Store,
    key: String,
    upload_id: String,
    number: u32,
    bytes: Bytes,
    guard: Option<WriteGuard>,
) -> Result<String, StoreError> {
    let bucket = &*store.bucket;
    retry_guarded("upload part", guard.as_ref(), || {
        let (key, upload_id, bytes) = (&key, &upload_id, &bytes);
        async move {
            // `Bucket::put_multipart_chunk` with the part borrowed instead of
            // owned, so a retry needs no copy of it.
            let command = Command::PutObject {
                content: bytes,
                multipart: Some(Multipart::new(number, upload_id)),
                custom_headers: None,
                content_type: CONTENT_TYPE,
            };
            let request = ReqwestRequest::new(bucket, key, command).await?;
            let answer = request.response_data(true).await?;
            Ok(answer.as_str()?.to_owned())
        }
    })
    .await
}

impl S3Writer {
    /// A writer continuing `state`, `buffer` holding the staged bytes.
    pub(super) fn new(
        store: S3Store,
        key: &str,
        state: MultipartProgress,
        buffer: Vec<u8>,
    ) -> S3Writer {
        S3Writer {
            store,
            key: key.to_owned(),
            state,
            buffer,
            in_flight: None,
            failed: false,
            guard: None,
        }
    }

    pub(crate) fn guard(&mut self, guard: WriteGuard) {
        self.guard = Some(guard);
    }

    /// Refuses to start a write once the guard says no.
    fn may_write(&self) -> Result<(), StoreError> {
        match &self.guard {
            Some(may_write) if !may_write() => Err(StoreError::Fenced),
            _ => Ok(()),
        }
    }

    fn progress(&self) -> WriteProgress {
        WriteProgress {
            sealed_len: self.state.parts.len() as u64 * self.state.part_size
                + self.buffer.len() as u64,
            multipart: Some(self.state.clone()),
        }
    }

    /// Refuses a writer that failed before (fail closed: what it holds
    /// after a failed part is not known to be what the object needs).
    fn usable(&self) -> Result<(), StoreError> {
        if self.failed {
            return Err(StoreError::Backend(format!(
                "{}: an earlier write failed; resume from the last durable point",
                self.key
            )));
        }
        Ok(())
    }

    /// Passes `result` on; an error makes the writer refuse from now on.
    fn failing<T>(&mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_err() {
            self.failed = true;
            if let Some(part) = self.in_flight.take() {
                part.task.abort();
            }
        }
        result
    }

    async fn upload_id(&mut self) -> Result<String, StoreError> {
        if let Some(id) = &self.state.upload_id {
            return Ok(id.clone());
        }
        let bucket = &self.store.bucket;
        // Not retried: a retry after a lost answer would leave an orphan.
        let created = bucket
            .initiate_multipart_upload(&self.key, CONTENT_TYPE)
            .await
            .map_err(|e| backend("create multipart", &e))?;
        self.state.upload_id = Some(created.upload_id.clone());
        Ok(created.upload_id)
    }

    /// Waits for the part in flight and records it.
    async fn settle(&mut self) -> Result<(), StoreError> {
        let Some(part) = self.in_flight.as_mut() else {
            return Ok(());
        };
        let answer = (&mut part.task).await;
        let Some(part) = self.in_flight.take() else {
            return Ok(());
        };
        let etag = answer.map_err(|e| StoreError::Backend(format!("upload part: {e}")))??;
        if part.number as usize != self.state.parts.len() + 1
            || self.state.upload_id.as_deref() != Some(part.upload_id.as_str())
            || part.len != self.state.part_size
        {
            return Err(StoreError::Backend(format!(
                "{}: part {} answered out of place; not recorded",
                self.key, part.number
            )));
        }
        self.state.parts.push(etag);
        Ok(())
    }

    /// Sends a full part in the background, once the one before it is
    /// stored.
    async fn send_part(&mut self, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.settle().await?;
        self.may_write()?;
        let upload_id = self.upload_id().await?;
        let number = self.state.parts.len() as u32 + 1;
        let len = bytes.len() as u64;
        let task = tokio::spawn(upload_part(
            self.store.clone(),
            self.key.clone(),
            upload_id.clone(),
            number,
            Bytes::from(bytes),
            self.guard.clone(),
        ));
        self.in_flight = Some(InFlight {
            number,
            upload_id,
            len,
            task,
        });
        Ok(())
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.usable()?;
        self.buffer.extend_from_slice(bytes);
        self.appended().await
    }

    /// The part buffer with room for `n` more bytes, appended in place.
    pub(crate) fn buffer(&mut self, n: usize) -> Result<&mut Vec<u8>, StoreError> {
        self.usable()?;
        self.buffer.reserve(n);
        Ok(&mut self.buffer)
    }

    /// Sends every full part the buffer now holds.
    pub(crate) async fn appended(&mut self) -> Result<(), StoreError> {
        self.usable()?;
        let part = self.state.part_size as usize;
        while self.buffer.len() >= part {
            let rest = self.buffer.split_off(part);
            let full = std::mem::replace(&mut self.buffer, rest);
            self.buffer.reserve(part);
            let sent = self.send_part(full).await;
            self.failing(sent)?;
        }
        Ok(())
    }

    pub(crate) async fn sync(&mut self) -> Result<WriteProgress, StoreError> {
        self.usable()?;
        let stored = self.settle().await;
        self.failing(stored)?;
        let allowed = self.may_write();
        self.failing(allowed)?;
        let staged = self.stage().await;
        self.failing(staged)?;
        Ok(self.progress())
    }

    /// Writes the bytes after the last part to a new staging generation.
    async fn stage(&mut self) -> Result<(), StoreError> {
        let previous = self.state.staging_generation;
        if self.buffer.is_empty() {
            self.state.staging_len = 0;
        } else {
            let generation = previous + 1;
            self.store
                .put(&staging_key(&self.key, generation), &self.buffer)
                .await?;
            self.state.staging_generation = generation;
            self.state.staging_len = self.buffer.len() as u64;
            if generation > 2 {
                // Two generations back is never recorded any more.
                let _ = self
                    .store
                    .delete(&staging_key(&self.key, generation - 2))
                    .await;
            }
        }
        Ok(())
    }

    /// Uploads the last part and completes the multipart upload.
    async fn assemble(&mut self) -> Result<(), StoreError> {
        self.settle().await?;
        let rest = std::mem::take(&mut self.buffer);
        if !rest.is_empty() {
            let upload_id = self.upload_id().await?;
            let number = self.state.parts.len() as u32 + 1;
            let etag = upload_part(
                self.store.clone(),
                self.key.clone(),
                upload_id,
                number,
                Bytes::from(rest),
                self.guard.clone(),
            )
            .await?;
            self.state.parts.push(etag);
        }
        let parts: Vec<Part> = self
            .state
            .parts
            .iter()
            .enumerate()
            .map(|(i, etag)| Part {
                part_number: i as u32 + 1,
                etag: etag.clone(),
            })
            .collect();
        let upload_id = self.state.upload_id.clone().unwrap_or_default();
        let bucket = &self.store.bucket;
        retry_guarded("complete multipart", self.guard.as_ref(), || {
            bucket.complete_multipart_upload(&self.key, &upload_id, parts.clone())
        })
        .await
        .map(|_| ())
    }

    pub async fn complete(mut self) -> Result<(), StoreError> {
        self.usable()?;
        let expected = self.state.parts.len() as u64 * self.state.part_size
            + self.in_flight.as_ref().map_or(0, |p| p.len)
            + self.buffer.len() as u64;
        let result = if self.state.upload_id.is_none() {
            // Smaller than one part: a single PUT.
            self.store.put(&self.key, &self.buffer).await
        } else {
            self.assemble().await
        };
        if let Err(e) = result {
            // Completed by an earlier attempt whose answer was lost?
            match self.store.len(&self.key).await {
                Ok(len) if len == expected => {}
                _ => return Err(e),
            }
        }
        self.store
            .delete_prefix(&format!("staging/{}/", self.key))
            .await
    }
}
