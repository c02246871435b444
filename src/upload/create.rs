//! Creating an upload (tus `creation`): quota checks, a new file key, the
//! file record in state `uploading` with its source (who uploads), the
//! upload row. A zero-length upload is complete at once. The case is the
//! patient's own, the centre's grant's, or for a coordinator the one its
//! `Upload-Metadata` names ([`Uploads::coordinator_case`]).

use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::crypto::FileKey;
use crate::db::{
    self, cases::CaseRow, files::NewFile, files::Source, uploads::UploadRow, uploads::UploadState,
};
use crate::ids::{CaseId, FileId, UploadId};
use crate::manifest::{FILE_META, FileMeta};
use crate::store::ResumeToken;

use super::audit_unavailable;
use super::metadata::{UploadMetadata, parse_pairs};
use super::{UploadError, Uploads};

/// Sealed purpose of the raw `Upload-Metadata` header (returned on HEAD).
pub const UPLOAD_METADATA: &str = "upload-metadata";

impl Uploads {
    /// The case a coordinator's upload goes into: the `case_id` of its
    /// `Upload-Metadata` (400 without one, 404 for an unknown or deleted
    /// case, both audited).
    pub async fn coordinator_case(
        &self,
        ctx: &RequestContext,
        metadata_header: Option<&str>,
    ) -> Result<CaseRow, UploadError> {
        let refuse = |reason: &str| NewEntry::new("upload.create", Outcome::Deny).reason(reason);
        let pairs = parse_pairs(metadata_header.unwrap_or(""))
            .map_err(|e| UploadError::BadRequest(e.to_string()));
        let sent = pairs.as_ref().ok().and_then(|p| p.get("case_id"));
        let Some(case_id) = sent.map(|s| s.trim()).filter(|s| !s.is_empty()) else {
            self.audit(ctx, refuse("coordinator upload without case_id"))
                .await?;
            pairs?;
            return Err(UploadError::BadRequest(
                "a coordinator's Upload-Metadata must include case_id".into(),
            ));
        };
        let found = match CaseId::parse(case_id) {
            Some(id) => db::cases::get(&self.db, &id).await?,
            None => None,
        };
        match found {
            Some(case) => Ok(case),
            None => {
                self.audit(ctx, refuse("case_id names no open case"))
                    .await?;
                Err(UploadError::NotFound)
            }
        }
    }

    pub async fn create(
        &self,
        ctx: &RequestContext,
        (case, uploader): (&CaseRow, &Source),
        length: u64,
        metadata_header: Option<&str>,
    ) -> Result<UploadRow, UploadError> {
        let meta = self
            .admit(ctx, (case, uploader), length, metadata_header)
            .await?;
        let new = self.new_upload((case, uploader), length, metadata_header, &meta)?;
        // The usage check and the insert share one write transaction
        // (BEGIN IMMEDIATE holds SQLite's write lock), so N parallel
        // creates can never together exceed a quota.
        // The action and its audit entry share this transaction: if it cannot
        // be opened or committed, the audit log cannot be written.
        let mut tx = self.db.begin().await.map_err(audit_unavailable)?;
        if let Err((reason, refusal)) = self.check_quota(&mut tx, case, length).await? {
            drop(tx);
            self.audit(ctx, deny((case, uploader), reason)).await?;
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
                source: uploader,
            },
        )
        .await?;
        db::uploads::insert(&mut tx, &row).await?;
        let entry = by(NewEntry::new("upload.create", Outcome::Allow), uploader)
            .case(&row.case_id)
            .file(&row.file_id)
            .reason(format!(
                "upload {}, {length} bytes declared, by the {}",
                row.upload_id,
                uploader.kind()
            ));
        self.audit_in(&mut tx, ctx, &entry).await?;
        tx.commit().await.map_err(audit_unavailable)?;
        Ok(row)
    }

    /// Refuses (and audits) a declared length over the maximum,
    /// malformed `Upload-Metadata` and a `translation_of` that is not a
    /// file of the case; returns the metadata.
    async fn admit(
        &self,
        ctx: &RequestContext,
        (case, uploader): (&CaseRow, &Source),
        length: u64,
        metadata_header: Option<&str>,
    ) -> Result<UploadMetadata, UploadError> {
        if length > self.config.limits.max_upload_bytes {
            let reason = format!("Upload-Length {length} over Tus-Max-Size");
            self.audit(ctx, deny((case, uploader), reason)).await?;
            return Err(UploadError::OverMaxSize);
        }
        let meta = match UploadMetadata::parse(metadata_header, uploader) {
            Ok(meta) => meta,
            Err(refused) => {
                let reason = format!("bad Upload-Metadata: {refused}");
                self.audit(ctx, deny((case, uploader), reason)).await?;
                return Err(UploadError::BadRequest(refused.to_string()));
            }
        };
        if let Some(original) = &meta.translation_of {
            let found = match FileId::parse(original) {
                Some(id) => db::files::get(&self.db, &case.case_id, &id).await?,
                None => None,
            };
            if found.is_none() {
                let reason = "translation_of names no file of the case".to_owned();
                self.audit(ctx, deny((case, uploader), reason)).await?;
                return Err(UploadError::BadRequest(
                    "translation_of must be the id of a file of this case".into(),
                ));
            }
        }
        Ok(meta)
    }

    /// A new upload's row and its file record: fresh ids, a fresh file key
    /// wrapped under the case key, the metadata sealed under it.
    fn new_upload(
        &self,
        (case, uploader): (&CaseRow, &Source),
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
            translation_of: meta.translation_of.clone(),
            language: meta.language.clone(),
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
                uploader: uploader.clone(),
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

fn deny((case, uploader): (&CaseRow, &Source), reason: String) -> NewEntry {
    by(
        NewEntry::new("upload.create", Outcome::Deny)
            .case(&case.case_id)
            .reason(reason),
        uploader,
    )
}

/// Names a centre uploader in its entry, so the log's `centre_id` filter
/// finds its replies.
fn by(entry: NewEntry, uploader: &Source) -> NewEntry {
    match uploader.centre_id() {
        Some(centre) => entry.centre(centre),
        None => entry,
    }
}
