//! The rest of an upload's life: termination (tus `termination`), expiry of
//! stale uploads with removal of their stored parts, recovery of uploads
//! whose completion was interrupted, and aborting a deleted case's uploads.

use super::audit_unavailable;
use super::create::UPLOAD_METADATA;
use super::{UploadError, Uploads};
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::db::{self, cases::CaseRow, uploads::UploadRow, uploads::UploadState};
use crate::ids::UploadId;
use crate::store::object_key;

fn system() -> RequestContext {
    RequestContext {
        actor: "system:uploads".into(),
        role: "system".into(),
        ..Default::default()
    }
}

/// Stalled completions retried per sweep.
const SWEEP_PAGE: i64 = 100;

impl Uploads {
    /// The raw `Upload-Metadata` header the client sent at creation.
    pub fn metadata_header(&self, case: &CaseRow, upload: &UploadRow) -> Option<String> {
        let sealed = upload.metadata_sealed.as_ref()?;
        let key = self.case_key(case).ok()?;
        key.open_field(
            &case.case_id,
            UPLOAD_METADATA,
            upload.upload_id.as_str(),
            sealed,
        )
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    }

    /// Ends an upload from `state` as `to`: row first (so no PATCH can
    /// commit after), then the stored parts and the file record.
    async fn end(
        &self,
        ctx: &RequestContext,
        upload: &UploadRow,
        to: UploadState,
        action: &'static str,
        reason: &str,
    ) -> Result<bool, UploadError> {
        // The action and its audit entry share this transaction: if it cannot
        // be opened or committed, the audit log cannot be written.
        let mut tx = self.db.begin().await.map_err(audit_unavailable)?;
        if !db::uploads::set_state(&mut tx, &upload.upload_id, UploadState::Active, to).await? {
            return Ok(false);
        }
        db::files::delete(&mut tx, &upload.file_id).await?;
        let entry = NewEntry::new(action, Outcome::Allow)
            .case(&upload.case_id)
            .file(&upload.file_id)
            .reason(reason);
        self.audit_in(&mut tx, ctx, &entry).await?;
        tx.commit().await.map_err(audit_unavailable)?;
        self.forget_stored_parts(upload, "an ended upload").await;
        Ok(true)
    }

    /// tus termination: 204, then 410 for the upload.
    pub async fn terminate(
        &self,
        ctx: &RequestContext,
        case: &CaseRow,
        upload_id: &UploadId,
    ) -> Result<(), UploadError> {
        let upload = self.load(case, upload_id).await?;
        let held = self
            .hold(upload_id.as_str())
            .await?
            .ok_or(UploadError::Locked)?;
        let done = self.terminate_held(ctx, &upload).await;
        held.release().await;
        done
    }

    async fn terminate_held(
        &self,
        ctx: &RequestContext,
        upload: &UploadRow,
    ) -> Result<(), UploadError> {
        if upload.state == UploadState::Complete {
            // A finished file is the case's record now; only a coordinator
            // (case deletion) removes it.
            return Err(UploadError::BadRequest(
                "the upload is complete and cannot be terminated".into(),
            ));
        }
        if !self
            .end(
                ctx,
                upload,
                UploadState::Terminated,
                "upload.terminate",
                "terminated by its uploader",
            )
            .await?
        {
            return Err(UploadError::Gone);
        }
        Ok(())
    }

    /// One sweep: finish interrupted completions, then expire stale uploads
    /// (never one whose bytes are all stored).
    /// Returns how many uploads it changed.
    pub async fn sweep(&self) -> Result<usize, UploadError> {
        self.sweep_until(&|| false).await
    }

    /// [`Uploads::sweep`], stopping before the next upload once
    /// `stopping()` says so (at shutdown: a sweep over a page of large
    /// uploads would otherwise hold the shutdown while it re-hashes them;
    /// the next start picks up where it stopped).
    pub async fn sweep_until(
        &self,
        stopping: &(dyn Fn() -> bool + Sync),
    ) -> Result<usize, UploadError> {
        let ctx = system();
        let mut changed = 0;
        // Paged on from where the last sweep stopped: uploads whose
        // completion keeps failing never keep the others waiting.
        let after = self.registry.sweep_after();
        let stalled = db::uploads::stalled_complete(&self.db, after.as_ref(), SWEEP_PAGE).await?;
        let next = (stalled.len() as i64 == SWEEP_PAGE)
            .then(|| stalled.last().map(|u| u.upload_id.clone()))
            .flatten();
        self.registry.set_sweep_after(next);
        for upload in stalled {
            if stopping() {
                return Ok(changed);
            }
            let Some(held) = self.hold(upload.upload_id.as_str()).await? else {
                continue;
            };
            let finished = self.finish_stalled(&ctx, &upload).await;
            held.release().await;
            changed += usize::from(finished?);
        }
        for upload in db::uploads::expired(&self.db, self.now(), 100).await? {
            if stopping() {
                return Ok(changed);
            }
            let Some(held) = self.hold(upload.upload_id.as_str()).await? else {
                continue;
            };
            let ended = self
                .end(
                    &ctx,
                    &upload,
                    UploadState::Expired,
                    "upload.expire",
                    "no activity within the upload expiry",
                )
                .await;
            // Given back before the next one, not when a task gets to it: a
            // client's next PATCH (on any replica) finds the upload free.
            held.release().await;
            changed += usize::from(ended?);
        }
        Ok(changed)
    }

    /// Retries the completion of an upload whose bytes are all stored;
    /// whether it completed.
    async fn finish_stalled(
        &self,
        ctx: &RequestContext,
        upload: &UploadRow,
    ) -> Result<bool, UploadError> {
        let Some(case) = db::cases::get(&self.db, &upload.case_id).await? else {
            return Ok(false);
        };
        match self.finalize(ctx, &case, upload).await {
            Ok(()) => Ok(true),
            Err(e) => {
                tracing::warn!(upload_id = %upload.upload_id, error = %e, "completion retry failed");
                Ok(false)
            }
        }
    }

    /// After a case was shredded: abort its unfinished uploads' stored parts
    /// (S3 multipart uploads would otherwise linger).
    pub async fn abort_case(&self, uploads: &[UploadRow]) {
        for upload in uploads {
            self.forget_stored_parts(upload, "a deleted case's upload")
                .await;
        }
    }

    /// Drops an ended upload's lock entry and aborts its stored parts. A
    /// failure is logged, not returned: the upload has already ended, and
    /// what is left is storage to reclaim, never readable data.
    async fn forget_stored_parts(&self, upload: &UploadRow, whose: &str) {
        self.registry.forget(upload.upload_id.as_str());
        let key = object_key(&upload.case_id, &upload.file_id);
        if let Err(e) = self.store.abort_write(&key, &upload.resume).await {
            tracing::error!(upload_id = %upload.upload_id, error = %e, "stored parts of {whose} not removed");
        }
    }
}
