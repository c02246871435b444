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

use super::append::{Append, BodyEnd};
use super::audit_unavailable;
use super::checksum::ExpectedChecksum;
use super::hasher::PlainHasher;
use super::lease::Fence;
use super::pipeline::ChunkPipeline;
use super::registry::RunningHashes;
use super::{UploadError, Uploads};
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::crypto::format::{HEADER_LEN, Layout};
use crate::db::{self, cases::CaseRow, uploads::UploadRow, uploads::UploadState};
use crate::ids::UploadId;
use crate::store::{ResumeToken, object_key};

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
            // Every byte stored: only its completion is left, never expiry
            // (the client was told the bytes are safe).
            UploadState::Active if upload.offset == upload.length && upload.length > 0 => {
                Ok(upload)
            }
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

    /// Appends `body` at `sent_offset`; returns the upload as now stored.
    pub async fn patch<S, E>(
        &self,
        ctx: &RequestContext,
        case: &CaseRow,
        upload_id: &UploadId,
        sent_offset: u64,
        checksum: Option<ExpectedChecksum>,
        body: S,
    ) -> Result<UploadRow, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let found = self.load(case, upload_id).await?;
        let held = self
            .hold(upload_id.as_str())
            .await?
            .ok_or(UploadError::Locked)?;
        let done = self
            .patch_held(
                ctx,
                case,
                upload_id,
                sent_offset,
                checksum,
                body,
                held.fence(),
            )
            .await;
        // A request that failed may have left a write or part in flight:
        // it lands before anyone else (here or on another replica) may
        // write the upload.
        self.store
            .settle_abandoned(&object_key(&found.case_id, &found.file_id))
            .await;
        held.release().await;
        done
    }

    /// [`Self::patch`] once the upload is held.
    #[allow(clippy::too_many_arguments)]
    async fn patch_held<S, E>(
        &self,
        ctx: &RequestContext,
        case: &CaseRow,
        upload_id: &UploadId,
        sent_offset: u64,
        mut checksum: Option<ExpectedChecksum>,
        mut body: S,
        fence: Fence,
    ) -> Result<UploadRow, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let upload = self.load(case, upload_id).await?;
        if let Some(answer) = self
            .answer_without_writing(ctx, case, &upload, sent_offset, &mut body)
            .await?
        {
            return Ok(answer);
        }
        let _slot = self
            .registry
            .enter_case(
                case.case_id.as_str(),
                self.config.uploads.max_concurrent_uploads,
            )
            .ok_or(UploadError::TooManyRunning)?;
        let mut append = self.open_append(case, upload, fence).await?;
        let end = self
            .receive(ctx, &mut append, &mut body, checksum.as_mut())
            .await?;
        if let Some((error, reason)) = end.discard(checksum) {
            // Nothing of this request is kept: the running hashes it started
            // from still describe the stored bytes.
            if append.committed == append.upload.offset
                && let Some(h) = append.hash_at_start.take()
            {
                self.registry
                    .put_hash(upload_id.as_str(), append.upload.offset, h);
            }
            self.deny(ctx, &append.upload, reason).await?;
            return Err(error);
        }
        self.finish(ctx, case, append, end.broke_off).await
    }

    /// The requests answered before any byte is written: a wrong offset
    /// (refused), an upload already complete (nothing to add), and one with
    /// every byte stored whose completion did not finish (crash or store
    /// outage), which is finished now.
    async fn answer_without_writing<S, E>(
        &self,
        ctx: &RequestContext,
        case: &CaseRow,
        upload: &UploadRow,
        sent_offset: u64,
        body: &mut S,
    ) -> Result<Option<UploadRow>, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
    {
        if sent_offset != upload.offset {
            self.deny(
                ctx,
                upload,
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
                _ => Ok(Some(upload.clone())),
            };
        }
        if upload.offset == upload.length && upload.length > 0 {
            self.finalize(ctx, case, upload).await?;
            return Ok(Some(self.load(case, &upload.upload_id).await?));
        }
        Ok(None)
    }

    /// Picks the upload up where it was left: the sealing pipeline from the
    /// stored tail, the object writer from the store's resume token, the
    /// running hashes from the registry.
    async fn open_append(
        &self,
        case: &CaseRow,
        upload: UploadRow,
        fence: Fence,
    ) -> Result<Append, UploadError> {
        let case_key = self.case_key(case)?;
        let cipher = self.cipher(&case_key, &upload).await?;
        let layout = Layout::new(cipher.header().chunk_size);
        let pipeline = ChunkPipeline::resume(
            cipher,
            upload.length,
            upload.offset,
            upload.tail_sealed.as_deref(),
        )
        .map_err(|e| {
            UploadError::Internal(format!(
                "upload {}: stored tail does not open: {e}",
                upload.upload_id
            ))
        })?;
        let key = object_key(&upload.case_id, &upload.file_id);
        let mut writer = self
            .store
            .open_writer(&key, &upload.resume, layout.object_len(upload.length))
            .await?;
        if let Some(guard) = fence.write_guard() {
            writer.guard(guard);
        }
        // Both hashes run as the bytes are sealed; an upload that stored
        // nothing yet starts them, one that lost them (a restart) is
        // re-hashed at completion.
        let hash_at_start = self
            .registry
            .take_hash(upload.upload_id.as_str(), upload.offset)
            .or_else(|| (upload.offset == 0).then(|| RunningHashes::new(layout)));
        let (plain, sealed) = match hash_at_start.clone() {
            Some(h) => (Some(PlainHasher::start(h.plain)), Some(h.sealed)),
            None => (None, None),
        };
        Ok(Append {
            pipeline,
            writer,
            hash_at_start,
            plain,
            sealed,
            // Fed at most a chunk at a time, the pipeline completes at most
            // one chunk (and the header) per feed.
            feed_max: layout.chunk_size() as usize,
            out_max: layout.sealed_chunk_len() as usize + HEADER_LEN,
            committed: upload.offset,
            upload,
            fence,
        })
    }

    /// Seals the body into the object as it arrives, taking a durable point
    /// every `uploads.sync_every_bytes` of a long request without a
    /// checksum; returns how the body ended.
    async fn receive<S, E>(
        &self,
        ctx: &RequestContext,
        append: &mut Append,
        body: &mut S,
        mut checksum: Option<&mut ExpectedChecksum>,
    ) -> Result<BodyEnd, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let idle = Duration::from_secs(self.config.uploads.body_idle_timeout_secs);
        let mut end = BodyEnd::default();
        loop {
            let frame = match tokio::time::timeout(idle, body.next()).await {
                Err(_) => {
                    end.broke_off = Some("request body stalled".into());
                    break;
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    end.broke_off = Some(format!("request body broke off: {e}"));
                    break;
                }
                Ok(Some(Ok(bytes))) => bytes,
            };
            if frame.len() as u64 > append.pipeline.remaining() {
                end.beyond_length = true;
                break;
            }
            if let Some(c) = checksum.as_deref_mut() {
                c.update(&frame);
            }
            append.fence.check()?;
            append.seal(frame).await?;
            if checksum.is_none()
                && append.pipeline.offset() - append.committed
                    >= self.config.uploads.sync_every_bytes
                && append.pipeline.offset() < append.upload.length
            {
                self.commit(ctx, append).await?;
            }
        }
        if append.upload.length == 0 {
            // The header and the one empty last chunk, into the digest too
            // (the sealed download's ETag covers them, as for any file).
            let out = append.writer.buffer(append.out_max).await?;
            let before = out.len();
            append.pipeline.finish_empty(out);
            if let Some(sealed) = append.sealed.as_mut() {
                sealed.update(&out[before..]);
            }
            append.writer.appended().await?;
        }
        Ok(end)
    }

    /// Removes the stored parts of an upload that ended while a request was
    /// writing it, if it really ended (never another writer's progress);
    /// whether it ended.
    async fn forget_late_parts(&self, upload: &UploadRow, resume: &ResumeToken) -> bool {
        let ended = match db::uploads::get(&self.db, &upload.case_id, &upload.upload_id).await {
            Ok(Some(now)) => now.state != UploadState::Active,
            Ok(None) => true,
            Err(_) => false,
        };
        if ended {
            let key = object_key(&upload.case_id, &upload.file_id);
            if let Err(e) = self.store.abort_write(&key, resume).await {
                tracing::error!(upload_id = %upload.upload_id, error = %e, "stored parts of an ended upload not removed");
            }
        }
        ended
    }

    /// Commits a durable point: store sync, then row and audit entry.
    async fn commit(&self, ctx: &RequestContext, append: &mut Append) -> Result<(), UploadError> {
        append.fence.check()?;
        let resume = append.writer.sync().await?;
        let upload = &append.upload;
        let tail = append.pipeline.tail_record();
        let (from, to) = (append.committed, append.pipeline.offset());
        // The action and its audit entry share this transaction: if it cannot
        // be opened or committed, the audit log cannot be written.
        let mut tx = self.db.begin().await.map_err(audit_unavailable)?;
        // Still ours now that the write lock is held (waiting for it may
        // have outlasted the lease), and kept ours until the commit.
        append.fence.confirm(&mut tx).await?;
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
            // Ended while we wrote (its case deleted: termination and
            // expiry wait for this request's lock). Acknowledge nothing, and
            // remove what this request stored after the case's parts were
            // removed, which nobody else knows of.
            drop(tx);
            return Err(if self.forget_late_parts(upload, &resume).await {
                UploadError::Gone
            } else {
                // Still active: another request moved the offset on (a
                // replica that took over); the client asks HEAD and resumes.
                UploadError::LeaseLost
            });
        }
        let entry = NewEntry::new("upload.patch", Outcome::Allow)
            .case(&upload.case_id)
            .file(&upload.file_id)
            .reason(format!("bytes {from}..{to} of {} stored", upload.length));
        self.audit_in(&mut tx, ctx, &entry).await?;
        tx.commit().await.map_err(audit_unavailable)?;
        append.committed = to;
        Ok(())
    }

    /// Keeps what arrived: the last durable point, the running hashes for
    /// the next request, and completion once every byte is stored.
    async fn finish(
        &self,
        ctx: &RequestContext,
        case: &CaseRow,
        mut append: Append,
        broke_off: Option<String>,
    ) -> Result<UploadRow, UploadError> {
        if append.pipeline.offset() > append.committed || append.upload.length == 0 {
            self.commit(ctx, &mut append).await?;
        }
        let Append {
            upload,
            pipeline,
            writer,
            plain,
            sealed,
            ..
        } = append;
        drop(writer);
        let plain = match plain {
            Some(plain) => plain.finish().await,
            None => None,
        };
        let hash = plain
            .zip(sealed)
            .map(|(plain, sealed)| RunningHashes { plain, sealed });
        let upload_id = &upload.upload_id;
        if let Some(why) = &broke_off {
            tracing::info!(upload_id = %upload_id, offset = pipeline.offset(), "{why}; kept what arrived");
        }
        let stored = self.load(case, upload_id).await?;
        if let Some(h) = hash {
            self.registry.put_hash(upload_id.as_str(), stored.offset, h);
        }
        if stored.offset == stored.length {
            self.finalize(ctx, case, &stored).await?;
            return self.load(case, upload_id).await;
        }
        Ok(stored)
    }
}
