//! Appending to an upload (tus PATCH). The body is sealed chunk by chunk
//! into the object as it arrives; durable points (store sync, then the
//! database row, then the audit entry, in one transaction) are taken at
//! the end of the request and every `uploads.sync_every_bytes` of a long one —
//! never per chunk. A request that breaks off keeps what arrived (unless it
//! carried a checksum, which can then not be verified). A checksum mismatch
//! or bytes beyond Upload-Length discard the whole request.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::audit_unavailable;
use super::checksum::ExpectedChecksum;
use super::pipeline::ChunkPipeline;
use super::{UploadError, Uploads};
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::crypto::format::{HEADER_LEN, Layout};
use crate::db::{self, cases::CaseRow, uploads::UploadRow, uploads::UploadState};
use crate::ids::UploadId;
use crate::store::{ObjectWriter, object_key};

impl Uploads {
    /// Loads an upload of `case`, answering as tus does for missing,
    /// terminated and expired ones.
    pub async fn load(
        &self,
        case: &CaseRow,
        upload_id: &UploadId,
    ) -> Result<UploadRow, UploadError> {
        let upload = db::uploads::get(&self.db, &case.case_id, upload_id)
            .await?
            .ok_or(UploadError::NotFound)?;
        match upload.state {
            UploadState::Terminated | UploadState::Expired => Err(UploadError::Gone),
            UploadState::Active if upload.expires_at <= self.now() => Err(UploadError::Gone),
            _ => Ok(upload),
        }
    }

    async fn deny(
        &self,
        ctx: &RequestContext,
        upload: &UploadRow,
        reason: String,
    ) -> Result<(), UploadError> {
        self.audit(
            ctx,
            NewEntry::new("upload.patch", Outcome::Deny)
                .case(&upload.case_id)
                .file(&upload.file_id)
                .reason(reason),
        )
        .await
    }

    /// Commits a durable point: store sync, then row and audit entry.
    async fn commit(
        &self,
        ctx: &RequestContext,
        upload: &UploadRow,
        writer: &mut ObjectWriter,
        pipeline: &ChunkPipeline,
        from: u64,
    ) -> Result<(), UploadError> {
        let resume = writer.sync().await?;
        let tail = pipeline.tail_record();
        let to = pipeline.offset();
        // The action and its audit entry share this transaction: if it cannot
        // be opened or committed, the audit log cannot be written.
        let mut tx = self.db.begin().await.map_err(audit_unavailable)?;
        let advanced = db::uploads::advance(
            &mut tx,
            &upload.upload_id,
            from,
            to,
            tail.as_deref(),
            &resume,
            self.next_expiry(),
        )
        .await?;
        if !advanced {
            // Terminated (or expired) while we wrote: its parts are being
            // removed; acknowledge nothing.
            return Err(UploadError::Gone);
        }
        let entry = NewEntry::new("upload.patch", Outcome::Allow)
            .case(&upload.case_id)
            .file(&upload.file_id)
            .reason(format!("bytes {from}..{to} of {} stored", upload.length));
        self.audit_in(&mut tx, ctx, &entry).await?;
        tx.commit().await.map_err(audit_unavailable)?;
        Ok(())
    }

    /// Appends `body` at `sent_offset`; returns the upload as now stored.
    pub async fn patch<S, E>(
        &self,
        ctx: &RequestContext,
        case: &CaseRow,
        upload_id: &UploadId,
        sent_offset: u64,
        mut checksum: Option<ExpectedChecksum>,
        mut body: S,
    ) -> Result<UploadRow, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.load(case, upload_id).await?;
        let _lock = self
            .registry
            .try_lock(upload_id.as_str())
            .ok_or(UploadError::Locked)?;
        let upload = self.load(case, upload_id).await?;
        if sent_offset != upload.offset {
            self.deny(
                ctx,
                &upload,
                format!("Upload-Offset {sent_offset}, stored {}", upload.offset),
            )
            .await?;
            return Err(UploadError::OffsetMismatch {
                sent: sent_offset,
                stored: upload.offset,
            });
        }
        if upload.state == UploadState::Complete {
            return match body.next().await {
                Some(Ok(bytes)) if !bytes.is_empty() => Err(UploadError::BeyondLength),
                _ => Ok(upload),
            };
        }
        if upload.offset == upload.length && upload.length > 0 {
            // Every byte is stored but completion did not finish (crash or
            // store outage): finish it now.
            self.finalize(ctx, case, &upload).await?;
            return self.load(case, upload_id).await;
        }
        let _slot = self
            .registry
            .enter_case(
                case.case_id.as_str(),
                self.config.uploads.max_concurrent_uploads,
            )
            .ok_or(UploadError::TooManyRunning)?;

        let case_key = self.case_key(case)?;
        let cipher = self.cipher(&case_key, &upload).await?;
        let layout = Layout::new(cipher.header().chunk_size);
        let mut pipeline = ChunkPipeline::resume(
            cipher,
            upload.length,
            upload.offset,
            upload.tail_sealed.as_deref(),
        )
        .map_err(|e| {
            UploadError::Internal(format!(
                "upload {upload_id}: stored tail does not open: {e}"
            ))
        })?;
        let key = object_key(&upload.case_id, &upload.file_id);
        let mut writer = self
            .store
            .open_writer(&key, &upload.resume, layout.object_len(upload.length))
            .await?;
        // The plaintext hash runs here; the object's hash runs in the
        // writer, next to the disk writes.
        let hash_at_start = self.registry.take_hash(upload_id.as_str(), upload.offset);
        let mut plain = hash_at_start.as_ref().map(|h| h.plain.clone());
        writer.set_hasher(hash_at_start.as_ref().map(|h| h.sealed.clone()));
        let idle = Duration::from_secs(self.config.uploads.body_idle_timeout_secs);
        // Fed at most a chunk at a time, the pipeline completes at most one
        // chunk (and the header) per feed: `out` never grows past this.
        let feed_max = layout.chunk_size() as usize;
        let mut out = Vec::with_capacity(layout.sealed_chunk_len() as usize + HEADER_LEN);
        let mut committed = upload.offset;
        let mut broke_off: Option<String> = None;
        let mut beyond_length = false;

        loop {
            let frame = match tokio::time::timeout(idle, body.next()).await {
                Err(_) => {
                    broke_off = Some("request body stalled".into());
                    break;
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    broke_off = Some(format!("request body broke off: {e}"));
                    break;
                }
                Ok(Some(Ok(bytes))) => bytes,
            };
            if frame.len() as u64 > pipeline.remaining() {
                beyond_length = true;
                break;
            }
            if let Some(c) = checksum.as_mut() {
                c.update(&frame);
            }
            if let Some(p) = plain.as_mut() {
                p.update(&frame);
            }
            for piece in frame.chunks(feed_max) {
                pipeline.feed(piece, &mut out);
                if !out.is_empty() {
                    writer.write(&out).await?;
                    out.clear();
                }
            }
            if checksum.is_none()
                && pipeline.offset() - committed >= self.config.uploads.sync_every_bytes
                && pipeline.offset() < upload.length
            {
                self.commit(ctx, &upload, &mut writer, &pipeline, committed)
                    .await?;
                committed = pipeline.offset();
            }
        }
        if upload.length == 0 {
            pipeline.finish_empty(&mut out);
            writer.write(&out).await?;
        }

        let discard = if beyond_length {
            Some((
                UploadError::BeyondLength,
                "more bytes than Upload-Length".to_string(),
            ))
        } else if let Some(c) = checksum {
            match (&broke_off, c.matches()) {
                (Some(why), _) => Some((
                    UploadError::BadRequest(why.clone()),
                    format!("{why}; checksum unverifiable, bytes discarded"),
                )),
                (None, false) => Some((
                    UploadError::ChecksumMismatch,
                    "checksum mismatch, bytes discarded".to_string(),
                )),
                (None, true) => None,
            }
        } else {
            None
        };
        if let Some((error, reason)) = discard {
            if committed == upload.offset
                && let Some(h) = hash_at_start
            {
                self.registry.put_hash(upload_id.as_str(), upload.offset, h);
            }
            self.deny(ctx, &upload, reason).await?;
            return Err(error);
        }

        if pipeline.offset() > committed || upload.length == 0 {
            self.commit(ctx, &upload, &mut writer, &pipeline, committed)
                .await?;
        }
        let hash = match (plain, writer.take_hasher()) {
            (Some(plain), Some(sealed)) => Some(super::registry::RunningHashes { plain, sealed }),
            _ => None,
        };
        drop(writer);
        if let Some(why) = &broke_off {
            tracing::info!(upload_id = %upload_id, offset = pipeline.offset(), "{why}; kept what arrived");
        }
        let stored = self.load(case, upload_id).await?;
        if stored.offset == stored.length {
            if let Some(h) = hash {
                self.registry.put_hash(upload_id.as_str(), stored.offset, h);
            }
            self.finalize(ctx, case, &stored).await?;
            return self.load(case, upload_id).await;
        }
        if let Some(h) = hash {
            self.registry.put_hash(upload_id.as_str(), stored.offset, h);
        }
        Ok(stored)
    }
}
