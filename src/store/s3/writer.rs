//! Appending to one object being uploaded: full parts go up as they fill,
//! the bytes after the last part are staged at each durable point, and
//! completion assembles the multipart upload (or one PUT when smaller than
//! a part).

use s3::serde_types::Part;

use super::{CONTENT_TYPE, MultipartProgress, S3Store, backend, retry, staging_key};
use crate::store::{StoreError, WriteProgress};

/// Appends to one object through a multipart upload.
pub struct S3Writer {
    store: S3Store,
    key: String,
    state: MultipartProgress,
    /// Bytes after the last uploaded part (< part size after each write).
    buffer: Vec<u8>,
}

impl std::fmt::Debug for S3Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Writer({})", self.key)
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
        S3Writer {
            store,
            key: key.to_owned(),
            state,
            buffer,
        }
    }

    fn progress(&self) -> WriteProgress {
        WriteProgress {
            sealed_len: self.state.parts.len() as u64 * self.state.part_size
                + self.buffer.len() as u64,
            multipart: Some(self.state.clone()),
        }
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

    async fn upload_part(&mut self, bytes: Vec<u8>) -> Result<(), StoreError> {
        let upload_id = self.upload_id().await?;
        let number = self.state.parts.len() as u32 + 1;
        let bucket = &self.store.bucket;
        let key = &self.key;
        let part = retry("upload part", || {
            bucket.put_multipart_chunk(bytes.clone(), key, number, &upload_id, CONTENT_TYPE)
        })
        .await?;
        self.state.parts.push(part.etag);
        Ok(())
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.buffer.extend_from_slice(bytes);
        self.appended().await
    }

    /// The part buffer with room for `n` more bytes, appended in place.
    pub(crate) fn buffer(&mut self, n: usize) -> &mut Vec<u8> {
        self.buffer.reserve(n);
        &mut self.buffer
    }

    /// Uploads every full part the buffer now holds.
    pub(crate) async fn appended(&mut self) -> Result<(), StoreError> {
        let part = self.state.part_size as usize;
        while self.buffer.len() >= part {
            let rest = self.buffer.split_off(part);
            let full = std::mem::replace(&mut self.buffer, rest);
            self.buffer.reserve(part);
            self.upload_part(full).await?;
        }
        Ok(())
    }

    pub(crate) async fn sync(&mut self) -> Result<WriteProgress, StoreError> {
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
        Ok(self.progress())
    }

    pub async fn complete(mut self) -> Result<(), StoreError> {
        let expected = self.progress().sealed_len;
        let result = if self.state.upload_id.is_none() {
            // Smaller than one part: a single PUT.
            self.store.put(&self.key, &self.buffer).await
        } else {
            let rest = std::mem::take(&mut self.buffer);
            let mut outcome = Ok(());
            if !rest.is_empty() {
                outcome = self.upload_part(rest).await;
            }
            if outcome.is_ok() {
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
                outcome = retry("complete multipart", || {
                    bucket.complete_multipart_upload(&self.key, &upload_id, parts.clone())
                })
                .await
                .map(|_| ());
            }
            outcome
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
