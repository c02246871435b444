//! Finishing an upload whose bytes are all durable: the object is completed
//! in the store, its plaintext SHA-256 taken (from the running hash, or by
//! re-reading the object after a restart), its DICOM header read from the
//! first bytes, and the file record sealed and marked `complete` — or
//! `flagged` when it claims to be DICOM and is not. Idempotent: a crash at
//! any point is finished by the next PATCH or by the sweeper.

use ring::digest;

use super::audit_unavailable;
use super::dicom::{self, DicomIndex, Inspection};
use super::{UploadError, Uploads};
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::crypto::CaseKey;
use crate::crypto::format::{Decryptor, HEADER_LEN, Layout, ObjectDigest, ReadError};
use crate::db::{self, cases::CaseRow, uploads::UploadRow, uploads::UploadState};
use crate::manifest::{FILE_META, FileMeta};
use crate::store::object_key;

/// Plaintext read per store request when re-hashing (64 chunks).
const REHASH_BYTES: u64 = 4 * 1024 * 1024;

fn undecryptable(key: &str, e: impl std::fmt::Display) -> UploadError {
    UploadError::Internal(format!("{key}: stored object does not decrypt: {e}"))
}

impl Uploads {
    /// Plaintext bytes `range` of the stored object `key`.
    pub async fn read_plain(
        &self,
        object: &Decryptor,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<u8>, UploadError> {
        object
            .read_range(range, |r| self.store.get_range(key, r))
            .await
            .map_err(|e| match e {
                ReadError::Fetch(e) => e.into(),
                ReadError::Format(e) => undecryptable(key, e),
            })
    }

    /// Re-reads a stored object: SHA-256 of its plaintext and of its bytes.
    async fn rehash(&self, object: &Decryptor, key: &str) -> Result<(String, String), UploadError> {
        let len = object.plaintext_len();
        let mut plain = digest::Context::new(&digest::SHA256);
        let mut sealed = ObjectDigest::new(Layout::new(object.header().chunk_size));
        if len == 0 {
            sealed.update(&self.store.get_range(key, 0..object.object_len()).await?);
        } else {
            sealed.update(&self.store.get_range(key, 0..HEADER_LEN as u64).await?);
            // Chunk-aligned windows, so consecutive plans are contiguous.
            let chunk_size = u64::from(object.header().chunk_size);
            let step = REHASH_BYTES - REHASH_BYTES % chunk_size;
            let mut at = 0;
            while let Some(plan) = object
                .plan(at..(at + step).min(len))
                .map_err(|e| undecryptable(key, e))?
            {
                let mut fetched = self.store.get_range(key, plan.object_range.clone()).await?;
                sealed.update(&fetched);
                let bytes = object
                    .open_planned(&plan, &mut fetched)
                    .map_err(|e| undecryptable(key, e))?;
                plain.update(&bytes);
                at += plan.take;
            }
        }
        Ok((
            crate::hex::encode(plain.finish().as_ref()),
            sealed.finish_hex(),
        ))
    }

    /// The file's sealed metadata, opened.
    async fn file_meta(
        &self,
        case_key: &CaseKey,
        upload: &UploadRow,
    ) -> Result<FileMeta, UploadError> {
        let sealed = db::files::meta_sealed(&self.db, &upload.file_id)
            .await?
            .ok_or(UploadError::NotFound)?;
        case_key
            .open_field(&upload.case_id, FILE_META, upload.file_id.as_str(), &sealed)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                UploadError::Internal(format!("file {} metadata does not open", upload.file_id))
            })
    }

    pub async fn finalize(
        &self,
        ctx: &RequestContext,
        case: &CaseRow,
        upload: &UploadRow,
    ) -> Result<(), UploadError> {
        let key = object_key(&upload.case_id, &upload.file_id);
        let case_key = self.case_key(case)?;
        // The cipher carries the header this upload's object was written with.
        let object = Decryptor::from_cipher(self.cipher(&case_key, upload).await?, upload.length);
        self.store
            .complete_write(&key, &upload.resume, object.object_len())
            .await?;

        let (sha256, object_sha256) = match self
            .registry
            .take_hash(upload.upload_id.as_str(), upload.length)
        {
            Some(h) => (
                crate::hex::encode(h.plain.finish().as_ref()),
                h.sealed.finish_hex(),
            ),
            None => self.rehash(&object, &key).await?,
        };
        let head = self
            .read_plain(&object, &key, 0..upload.length.min(dicom::HEAD_BYTES))
            .await?;
        let mut meta = self.file_meta(&case_key, upload).await?;
        let (state, note, index) = classify(&mut meta, &head);
        meta.sha256 = Some(sha256);
        let index_sealed = index.and_then(|i| serde_json::to_vec(&i).ok()).map(|json| {
            let id = upload.file_id.as_str();
            case_key.seal_field(&upload.case_id, dicom::DICOM_INDEX, id, &json)
        });
        let meta_json =
            serde_json::to_vec(&meta).map_err(|e| UploadError::Internal(e.to_string()))?;
        let meta_sealed = case_key.seal_field(
            &upload.case_id,
            FILE_META,
            upload.file_id.as_str(),
            &meta_json,
        );
        let done = Finished {
            note,
            record: db::files::Finished {
                state,
                meta_sealed: &meta_sealed,
                object_sha256: &object_sha256,
                // The header this upload's object was written with.
                chunk_size: object.header().chunk_size,
                dicom_index_sealed: index_sealed.as_deref(),
            },
        };
        self.record_complete(ctx, upload, done).await
    }

    /// Marks the upload complete and its file finished, with the audit
    /// entry, in one transaction.
    async fn record_complete(
        &self,
        ctx: &RequestContext,
        upload: &UploadRow,
        done: Finished<'_>,
    ) -> Result<(), UploadError> {
        // The action and its audit entry share this transaction: if it cannot
        // be opened or committed, the audit log cannot be written.
        let mut tx = self.db.begin().await.map_err(audit_unavailable)?;
        if !db::uploads::set_state(
            &mut tx,
            &upload.upload_id,
            UploadState::Active,
            UploadState::Complete,
        )
        .await?
        {
            // Finished by someone else meanwhile.
            return Ok(());
        }
        db::files::finish(&mut tx, &upload.file_id, &done.record).await?;
        let outcome = NewEntry::new("upload.complete", Outcome::Allow)
            .case(&upload.case_id)
            .file(&upload.file_id)
            .reason(format!(
                "{} bytes, sha256 recorded, {}: {}",
                upload.length, done.record.state, done.note
            ));
        self.audit_in(&mut tx, ctx, &outcome).await?;
        tx.commit().await.map_err(audit_unavailable)?;
        self.registry.forget(upload.upload_id.as_str());
        Ok(())
    }
}

/// What completion found: the file's record and a note for the audit entry.
struct Finished<'a> {
    note: &'static str,
    record: db::files::Finished<'a>,
}

/// The file's state after its first bytes were inspected: DICOM fields go
/// into `meta` and the DICOMweb index is returned (sealed apart, in its own
/// column); a file that claims to be DICOM and is not is flagged.
fn classify(
    meta: &mut FileMeta,
    head: &[u8],
) -> (&'static str, &'static str, Option<Box<DicomIndex>>) {
    let claims = dicom::claims_dicom(&meta.category, meta.filetype.as_deref(), &meta.filename);
    match dicom::inspect(head) {
        Inspection::Dicom(fields, index) => {
            meta.dicom = Some(fields);
            ("complete", "DICOM header indexed", Some(index))
        }
        Inspection::Broken => (
            "flagged",
            "has a DICOM marker but the header does not parse",
            None,
        ),
        Inspection::NotDicom if claims => {
            ("flagged", "declared as DICOM but is not a DICOM file", None)
        }
        Inspection::NotDicom => ("complete", "not DICOM", None),
    }
}
