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
        let meta = self.admit(ctx, case, length, metadata_header).await?;
        let new = self.new_upload(case, length, metadata_header, &meta)?;
        // The usage check and the insert share one write transaction
        // (BEGIN IMMEDIATE holds SQLite's write lock), so N parallel
        // creates can never together exceed a quota.
        // The action and its audit entry share this transaction: if it cannot
        // be opened or committed, the audit log cannot be written.
        let mut tx = self.db.begin().await.map_err(audit_unavailable)?;
        if let Err((reason, refusal)) = self.check_quota(&mut tx, case, length).await? {
            drop(tx);
            self.audit(ctx, deny(case, reason)).await?;
            return Err(refusal);
        }
        let row = new.row;
        db::files::insert(
            &mut tx,
            &NewFile {
                file_id: &row.file_id,
                case_id: &row.case_id,
                state: "uploading",
                size: length as i64,
                created_at: row.created_at,
                meta_sealed: &new.meta_sealed,
                key_id: &new.key_id,
                wrapped_key: &new.wrapped_key,
            },
        )
        .await?;
        db::uploads::insert(&mut tx, &row).await?;
        let entry = NewEntry::new("upload.create", Outcome::Allow)
            .case(&row.case_id)
            .file(&row.file_id)
            .reason(format!("upload {}, {length} bytes declared", row.upload_id));
        self.audit_in(&mut tx, ctx, &entry).await?;
        tx.commit().await.map_err(audit_unavailable)?;
        Ok(row)
    }

    /// Refuses (and audits) a declared length over the maximum and
    /// malformed `Upload-Metadata`; returns the metadata.
    async fn admit(
        &self,
        ctx: &RequestContext,
        case: &CaseRow,
        length: u64,
        metadata_header: Option<&str>,
    ) -> Result<UploadMetadata, UploadError> {
        if length > self.config.limits.max_upload_bytes {
            let reason = format!("Upload-Length {length} over Tus-Max-Size");
            self.audit(ctx, deny(case, reason)).await?;
            return Err(UploadError::OverMaxSize);
        }
        match UploadMetadata::parse(metadata_header) {
            Ok(meta) => Ok(meta),
            Err(refused) => {
                let reason = format!("bad Upload-Metadata: {refused}");
                self.audit(ctx, deny(case, reason)).await?;
                Err(UploadError::BadRequest(refused.to_string()))
            }
        }
    }

    /// A new upload's row and its file record: fresh ids, a fresh file key
    /// wrapped under the case key, the metadata sealed under it.
    fn new_upload(
        &self,
        case: &CaseRow,
        length: u64,
        metadata_header: Option<&str>,
        meta: &UploadMetadata,
    ) -> Result<NewUpload, UploadError> {
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
        let metadata_sealed = metadata_header.map(|h| {
            case_key.seal_field(
                &case.case_id,
                UPLOAD_METADATA,
                upload_id.as_str(),
                h.as_bytes(),
            )
        });
        let meta_sealed =
            case_key.seal_field(&case.case_id, FILE_META, file_id.as_str(), &meta_json);
        let wrapped_key = file_key.wrap(&case_key, &case.case_id, &file_id);
        let now = self.now();
        Ok(NewUpload {
            row: UploadRow {
                upload_id,
                case_id: case.case_id.clone(),
                file_id,
                length,
                offset: 0,
                tail_sealed: None,
                resume: ResumeToken::start(),
                created_at: now,
                expires_at: self.next_expiry(),
                state: UploadState::Active,
                metadata_sealed,
            },
            meta_sealed,
            key_id: *file_key.id(),
            wrapped_key,
        })
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

/// An upload about to be stored: its row, and the sealed parts of its file
/// record.
struct NewUpload {
    row: UploadRow,
    meta_sealed: Vec<u8>,
    key_id: [u8; 16],
    wrapped_key: Vec<u8>,
}

fn deny(case: &CaseRow, reason: String) -> NewEntry {
    NewEntry::new("upload.create", Outcome::Deny)
        .case(&case.case_id)
        .reason(reason)
}
