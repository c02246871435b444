//! Appending to one object being uploaded: full parts go up in the
//! background as they fill, the bytes after the last part are staged at
//! each durable point, and completion assembles the multipart upload (or
//! one PUT when smaller than a part).
//!
//! At most `storage.s3.parts_in_flight` parts (2 by default) are in
//! flight while the next one fills, so an upload holds at most that many
//! parts and one more in memory (the parts are sent from their buffers,
//! never copied). Parts are recorded in
//! order, each only once its upload answered; `sync` waits for every part
//! in flight first, so a durable point never names a part that is not
//! stored. A writer dropped with parts in flight records nothing, and
//! leaves them to finish: the store makes the object's next writer (and
//! the request's release of the upload) wait for them. After any failure the
//! writer refuses further use: the caller reopens it from the last durable
//! point.

use std::collections::VecDeque;

use bytes::Bytes;
use s3::serde_types::Part;
use tokio::task::JoinHandle;

use super::part::upload_part;
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
    /// Parts being uploaded, oldest first, not yet in `state.parts`.
    in_flight: VecDeque<InFlight>,
    /// Set by the first failure; every later call is refused.
    failed: bool,
    /// Asked before each part, staging object and retry (the upload's
    /// lease); none: always allowed.
    guard: Option<WriteGuard>,
    /// Names this writer's staging objects (random).
    id: String,
    /// The most bytes lent at once through [`S3Writer::buffer`]: room kept
    /// past a part, so a nearly full part is never moved to grow.
    most_lent: usize,
    /// Staging objects that were or are recorded, oldest first: the one
    /// this writer opened from and the ones it wrote since. Only the last
    /// two can still be the database's.
    staged: VecDeque<String>,
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
        // point and sends these parts again — after these are over (an
        // aborted request may still land once its body is sent).
        for part in self.in_flight.drain(..) {
            self.store.abandon(&self.key, part.task);
        }
    }
}

impl S3Writer {
    /// A writer continuing `state`, `buffer` holding the staged bytes.
    pub(super) fn new(
        store: S3Store,
        key: &str,
        state: MultipartProgress,
        buffer: Vec<u8>,
    ) -> S3Writer {
        let staged = state.staging_key(key).into_iter().collect();
        S3Writer {
            store,
            key: key.to_owned(),
            state,
            buffer,
            in_flight: VecDeque::new(),
            failed: false,
            guard: None,
            id: crate::hex::encode(&crate::random::array::<8>()),
            most_lent: 0,
            staged,
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
            // Left to finish, like a dropped writer's: the next writer
            // of this object waits for them before sending its own.
            for part in self.in_flight.drain(..) {
                self.store.abandon(&self.key, part.task);
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

    /// Waits for every part in flight and records them.
    async fn settle(&mut self) -> Result<(), StoreError> {
        while !self.in_flight.is_empty() {
            self.settle_oldest().await?;
        }
        Ok(())
    }

    /// Waits for the oldest part in flight and records it.
    async fn settle_oldest(&mut self) -> Result<(), StoreError> {
        let Some(part) = self.in_flight.front_mut() else {
            return Ok(());
        };
        // Awaited in place: if this future is dropped, the part stays in
        // flight and the writer's drop leaves it to the store.
        let answer = (&mut part.task).await;
        let Some(part) = self.in_flight.pop_front() else {
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

    /// Sends a full part in the background, once fewer than the store's
    /// `parts_in_flight` are.
    async fn send_part(&mut self, bytes: Vec<u8>) -> Result<(), StoreError> {
        while self.in_flight.len() >= self.store.parts_in_flight {
            self.settle_oldest().await?;
        }
        self.may_write()?;
        let upload_id = self.upload_id().await?;
        let number = (self.state.parts.len() + self.in_flight.len()) as u32 + 1;
        let len = bytes.len() as u64;
        let task = tokio::spawn(upload_part(
            self.store.clone(),
            self.key.clone(),
            upload_id.clone(),
            number,
            Bytes::from(bytes),
            self.guard.clone(),
        ));
        self.in_flight.push_back(InFlight {
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
        self.most_lent = self.most_lent.max(n);
        // Exact: amortized growth would double a nearly full part buffer.
        self.buffer.reserve_exact(n);
        Ok(&mut self.buffer)
    }

    /// Sends every full part the buffer now holds.
    pub(crate) async fn appended(&mut self) -> Result<(), StoreError> {
        self.usable()?;
        let part = self.state.part_size as usize;
        while self.buffer.len() >= part {
            let rest = self.buffer.split_off(part);
            let full = std::mem::replace(&mut self.buffer, rest);
            self.buffer.reserve_exact(part + self.most_lent);
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
        if self.buffer.is_empty() {
            self.state.staging_len = 0;
            return Ok(());
        }
        let generation = self.state.staging_generation + 1;
        let staged = staging_key(&self.key, generation, Some(&self.id));
        self.store
            .put_guarded(&staged, &self.buffer, self.guard.as_ref())
            .await?;
        self.state.staging_generation = generation;
        self.state.staging_len = self.buffer.len() as u64;
        self.state.staging_writer = Some(self.id.clone());
        self.staged.push_back(staged);
        if self.staged.len() > 2
            && let Some(old) = self.staged.pop_front()
        {
            // Recorded before the previous durable point: never again.
            let _ = self.store.delete(&old).await;
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
            + self.in_flight.iter().map(|p| p.len).sum::<u64>()
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
