//! Creating an upload (tus `creation`): quota checks, a new file key, the
//! file record in state `uploading`, the upload row. A zero-length upload is
//! complete at once.

use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::crypto::FileKey;
use crate::db::{self, cases::CaseRow, files::NewFile, uploads::UploadRow, uploads::UploadState};
use crate::ids::{FileId, UploadId};
use crate::manifest::{FILE_META, FileMeta};
use crate::store::ResumeToken;

use super::audit_unavailable;
use super::metadata::UploadMetadata;
use super::{UploadError, Uploads};

/// Sealed purpose of the raw `Upload-Metadata` header (returned on HEAD).
pub const UPLOAD_METADATA: &str = "upload-metadata";

impl Uploads {
    pub async fn create(
        &self,
        ctx: &RequestContext,
        case: &CaseRow,
        length: u64,
        metadata_header: Option<&str>,
    ) -> Result<UploadRow, UploadError> {
        let deny = |reason: String| {
            NewEntry::new("upload.create", Outcome::Deny)
                .case(&case.case_id)
                .reason(reason)
        };
        if length > self.config.limits.max_upload_bytes {
            self.audit(
                ctx,
                deny(format!("Upload-Length {length} over Tus-Max-Size")),
            )
            .await?;
            return Err(UploadError::OverMaxSize);
        }
        let meta = match UploadMetadata::parse(metadata_header) {
            Ok(m) => m,
            Err(refused) => {
                self.audit(ctx, deny(format!("bad Upload-Metadata: {refused}")))
                    .await?;
                return Err(UploadError::BadRequest(refused.to_string()));
            }
        };
        let case_key = self.case_key(case)?;
        let (upload_id, file_id, file_key) = (
            UploadId::generate(),
            FileId::generate(),
            FileKey::generate(),
        );
        let file_meta = FileMeta {
            filename: meta.filename.clone(),
            category: meta.category.clone(),
            filetype: meta.filetype.clone(),
            sha256: None,
            dicom: None,
        };
        let meta_json =
            serde_json::to_vec(&file_meta).map_err(|e| UploadError::Internal(e.to_string()))?;
        let now = self.now();
        let row = UploadRow {
            upload_id: upload_id.clone(),
            case_id: case.case_id.clone(),
            file_id: file_id.clone(),
            length,
            offset: 0,
            tail_sealed: None,
            resume: ResumeToken::start(),
            created_at: now,
            expires_at: self.next_expiry(),
            state: UploadState::Active,
            metadata_sealed: metadata_header.map(|h| {
                case_key.seal_field(
                    &case.case_id,
                    UPLOAD_METADATA,
                    upload_id.as_str(),
                    h.as_bytes(),
                )
            }),
        };
        // The usage check and the insert share one write transaction
        // (BEGIN IMMEDIATE holds SQLite's write lock), so N parallel
        // creates can never together exceed a quota.
        // The action and its audit entry share this transaction: if it cannot
        // be opened or committed, the audit log cannot be written.
        let mut tx = self.db.begin().await.map_err(audit_unavailable)?;
        if let Err((reason, refusal)) = self.check_quota(&mut tx, case, length).await? {
            drop(tx);
            self.audit(ctx, deny(reason)).await?;
            return Err(refusal);
        }
        db::files::insert(
            &mut tx,
            &NewFile {
                file_id: &file_id,
                case_id: &case.case_id,
                state: "uploading",
                size: length as i64,
                created_at: now,
                meta_sealed: &case_key.seal_field(
                    &case.case_id,
                    FILE_META,
                    file_id.as_str(),
                    &meta_json,
                ),
                key_id: file_key.id(),
                wrapped_key: &file_key.wrap(&case_key, &case.case_id, &file_id),
            },
        )
        .await?;
        db::uploads::insert(&mut tx, &row).await?;
        let entry = NewEntry::new("upload.create", Outcome::Allow)
            .case(&case.case_id)
            .file(&file_id)
            .reason(format!("upload {upload_id}, {length} bytes declared"));
        self.audit_in(&mut tx, ctx, &entry).await?;
        tx.commit().await.map_err(audit_unavailable)?;
        self.registry.put_hash(
            upload_id.as_str(),
            0,
            super::registry::RunningHashes::default(),
        );
        Ok(row)
    }

    /// `Ok(Err((audit reason, refusal)))` when a new file of `length` bytes
    /// would exceed the case's quotas.
    async fn check_quota(
        &self,
        tx: &mut db::Tx<'_>,
        case: &CaseRow,
        length: u64,
    ) -> Result<Result<(), (String, UploadError)>, UploadError> {
        let quotas = &self.config.uploads;
        let (bytes, files) = db::uploads::case_usage(tx, &case.case_id).await?;
        if files.saturating_add(1) > quotas.max_case_files {
            return Ok(Err((
                format!("case file quota {} reached", quotas.max_case_files),
                UploadError::QuotaExceeded("the case holds the maximum number of files".into()),
            )));
        }
        if bytes.saturating_add(length) > quotas.max_case_bytes {
            return Ok(Err((
                format!("case byte quota {} exceeded", quotas.max_case_bytes),
                UploadError::QuotaExceeded("the case's storage quota would be exceeded".into()),
            )));
        }
        Ok(Ok(()))
    }
}
