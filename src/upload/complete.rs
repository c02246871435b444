//! Finishing an upload whose bytes are all durable: the object is completed
//! in the store, its plaintext SHA-256 taken (from the running hash, or by
//! re-reading the object after a restart), its DICOM header read from the
//! first bytes, and the file record sealed and marked `complete` — or
//! `flagged` when it claims to be DICOM and is not. Idempotent: a crash at
//! any point is finished by the next PATCH or by the sweeper.

use ring::digest;

use super::audit_unavailable;
use super::dicom::{self, Inspection};
use super::{UploadError, Uploads};
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::crypto::format::{ChunkCipher, HEADER_LEN, Layout, decrypt_planned, plan_range};
use crate::db::{self, cases::CaseRow, uploads::UploadRow, uploads::UploadState};
use crate::manifest::{FILE_META, FileMeta};
use crate::store::object_key;

/// Plaintext read per store request when re-hashing (64 chunks).
const REHASH_BYTES: u64 = 4 * 1024 * 1024;

impl Uploads {
    /// Plaintext bytes `range` of a stored object.
    pub async fn read_plain(
        &self,
        cipher: &ChunkCipher,
        key: &str,
        len: u64,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<u8>, UploadError> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let layout = Layout::new(cipher.header().chunk_size);
        let plan = plan_range(&layout, len, range);
        let mut fetched = self.store.get_range(key, plan.object_range.clone()).await?;
        decrypt_planned(cipher, &layout, len, &plan, &mut fetched).map_err(|e| {
            UploadError::Internal(format!("{key}: stored object does not decrypt: {e}"))
        })
    }

    /// Re-reads a stored object: SHA-256 of its plaintext and of its bytes.
    async fn rehash(
        &self,
        cipher: &ChunkCipher,
        key: &str,
        len: u64,
    ) -> Result<(String, String), UploadError> {
        let layout = Layout::new(cipher.header().chunk_size);
        let mut plain = digest::Context::new(&digest::SHA256);
        let mut sealed = digest::Context::new(&digest::SHA256);
        if len == 0 {
            sealed.update(&self.store.get_range(key, 0..layout.object_len(0)).await?);
        } else {
            sealed.update(&self.store.get_range(key, 0..HEADER_LEN as u64).await?);
            // Chunk-aligned windows, so consecutive plans are contiguous.
            let step = REHASH_BYTES - REHASH_BYTES % layout.chunk_size();
            let mut at = 0;
            while at < len {
                let end = (at + step).min(len);
                let plan = plan_range(&layout, len, at..end);
                let mut fetched = self.store.get_range(key, plan.object_range.clone()).await?;
                sealed.update(&fetched);
                let bytes =
                    decrypt_planned(cipher, &layout, len, &plan, &mut fetched).map_err(|e| {
                        UploadError::Internal(format!("{key}: stored object does not decrypt: {e}"))
                    })?;
                plain.update(&bytes);
                at = end;
            }
        }
        Ok((
            crate::hex::encode(plain.finish().as_ref()),
            crate::hex::encode(sealed.finish().as_ref()),
        ))
    }

    pub async fn finalize(
        &self,
        ctx: &RequestContext,
        case: &CaseRow,
        upload: &UploadRow,
    ) -> Result<(), UploadError> {
        let key = object_key(&upload.case_id, &upload.file_id);
        let case_key = self.case_key(case)?;
        let cipher = self.cipher(&case_key, upload).await?;
        let layout = Layout::new(cipher.header().chunk_size);
        let writer = self
            .store
            .open_writer(&key, &upload.progress, layout.object_len(upload.length))
            .await?;
        writer.complete().await?;

        let (sha256, object_sha256) = match self
            .registry
            .take_hash(upload.upload_id.as_str(), upload.length)
        {
            Some(h) => (
                crate::hex::encode(h.plain.finish().as_ref()),
                crate::hex::encode(h.sealed.finish().as_ref()),
            ),
            None => self.rehash(&cipher, &key, upload.length).await?,
        };
        let head = self
            .read_plain(
                &cipher,
                &key,
                upload.length,
                0..upload.length.min(dicom::HEAD_BYTES),
            )
            .await?;
        let sealed = db::files::meta_sealed(&self.db, &upload.file_id)
            .await?
            .ok_or(UploadError::NotFound)?;
        let mut meta: FileMeta = case_key
            .open_field(&upload.case_id, FILE_META, upload.file_id.as_str(), &sealed)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                UploadError::Internal(format!("file {} metadata does not open", upload.file_id))
            })?;
        let claims = dicom::claims_dicom(&meta.category, meta.filetype.as_deref(), &meta.filename);
        let (state, note) = match dicom::inspect(&head) {
            Inspection::Dicom(fields) => {
                meta.dicom = Some(fields);
                ("complete", "DICOM header indexed")
            }
            Inspection::Broken => (
                "flagged",
                "has a DICOM marker but the header does not parse",
            ),
            Inspection::NotDicom if claims => {
                ("flagged", "declared as DICOM but is not a DICOM file")
            }
            Inspection::NotDicom => ("complete", "not DICOM"),
        };
        meta.sha256 = Some(sha256);
        let meta_json =
            serde_json::to_vec(&meta).map_err(|e| UploadError::Internal(e.to_string()))?;
        let meta_sealed = case_key.seal_field(
            &upload.case_id,
            FILE_META,
            upload.file_id.as_str(),
            &meta_json,
        );

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
        db::files::finish(
            &mut tx,
            &upload.file_id,
            state,
            &meta_sealed,
            &object_sha256,
        )
        .await?;
        let outcome = NewEntry::new("upload.complete", Outcome::Allow)
            .case(&upload.case_id)
            .file(&upload.file_id)
            .reason(format!(
                "{} bytes, sha256 recorded, {state}: {note}",
                upload.length
            ));
        self.audit_in(&mut tx, ctx, &outcome).await?;
        tx.commit().await.map_err(audit_unavailable)?;
        self.registry.forget(upload.upload_id.as_str());
        Ok(())
    }
}
