//! Reading plaintext of a granted file without counting a download: the
//! header of a DICOM instance, which DICOMweb answers as metadata and
//! indexes for files completed before the index existed, and the item
//! headers of encapsulated pixel data that locate its frames. Never pixel
//! data in bulk: callers read the first bytes, growing the read only while
//! the header does not end within it, and item headers eight bytes at a
//! time.
//!
//! A [`PlainReader`] opens the file's key once and keeps the chunks it
//! last decrypted, so a walk over many small neighbouring reads (a
//! fragment list) costs one key unwrap and at most one decryption per
//! chunk, not one of each per read.

use std::ops::Range;

use super::{GrantError, GrantedFile, Kind, internal, keys};
use crate::crypto::CaseKey;
use crate::crypto::format::{Decryptor, HEADER_LEN, ReadError};
use crate::db::centres::CentreRow;
use crate::db::grants::GrantRow;
use crate::ids::FileId;
use crate::service::Services;
use crate::store::object_key;

/// A granted file opened for plaintext reads by range.
pub struct PlainReader<'a> {
    svc: &'a Services,
    key: String,
    file_id: FileId,
    object: Decryptor,
    size: u64,
    /// The plaintext last read: whole chunks, at most one read's worth.
    last: Option<(Range<u64>, Vec<u8>)>,
}

impl<'a> PlainReader<'a> {
    /// Opens `file`: reads its object's header from the store and opens
    /// its key for that header.
    pub async fn open(
        svc: &'a Services,
        case_key: &CaseKey,
        grant: (&GrantRow, &CentreRow),
        file: &GrantedFile,
    ) -> Result<PlainReader<'a>, GrantError> {
        let key = object_key(&grant.0.case_id, &file.file_id);
        let stored_header = svc
            .store
            .get_range(&key, 0..HEADER_LEN as u64)
            .await
            .map_err(|e| unavailable(&e))?;
        let opened =
            keys::open_keys(svc, case_key, grant, file, &stored_header, Kind::Plaintext).await?;
        Ok(PlainReader {
            svc,
            key,
            file_id: file.file_id.clone(),
            object: Decryptor::from_cipher(opened.cipher, file.size),
            size: file.size,
            last: None,
        })
    }

    /// The file's plaintext size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Plaintext bytes `range` (clamped to the file's size), decrypting
    /// only the chunks the range touches, each whole; the chunks read are
    /// kept until the next read that needs others.
    pub async fn read(&mut self, range: Range<u64>) -> Result<Vec<u8>, GrantError> {
        let range = range.start.min(self.size)..range.end.min(self.size);
        if range.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(bytes) = self.cached(&range) {
            return Ok(bytes);
        }
        let chunk = u64::from(self.object.header().chunk_size).max(1);
        let start = range.start - range.start % chunk;
        let end = range
            .end
            .div_ceil(chunk)
            .saturating_mul(chunk)
            .min(self.size);
        let (svc, key) = (self.svc, &self.key);
        let bytes = self
            .object
            .read_range(start..end, |r| svc.store.get_range(key, r))
            .await
            .map_err(|e| match e {
                ReadError::Fetch(e) => unavailable(&e),
                ReadError::Format(e) => {
                    internal(&format!("{}: does not decrypt: {e}", self.file_id))
                }
            })?;
        if bytes.len() as u64 != end - start {
            return Err(internal(&format!("{}: stored object short", self.file_id)));
        }
        self.last = Some((start..end, bytes));
        Ok(self.cached(&range).unwrap_or_default())
    }

    fn cached(&self, range: &Range<u64>) -> Option<Vec<u8>> {
        let (at, bytes) = self.last.as_ref()?;
        if range.start < at.start || range.end > at.end {
            return None;
        }
        let from = usize::try_from(range.start - at.start).ok()?;
        let to = usize::try_from(range.end - at.start).ok()?;
        bytes.get(from..to).map(<[u8]>::to_vec)
    }
}

fn unavailable(e: &dyn std::fmt::Display) -> GrantError {
    tracing::warn!(error = %e, "object store unavailable for a header read");
    GrantError::StorageUnavailable
}

/// Plaintext bytes `range` of a granted file (clamped to its size),
/// decrypting only the chunks the range touches.
pub async fn read_plain(
    svc: &Services,
    case_key: &CaseKey,
    grant: (&GrantRow, &CentreRow),
    file: &GrantedFile,
    range: Range<u64>,
) -> Result<Vec<u8>, GrantError> {
    let mut reader = PlainReader::open(svc, case_key, grant, file).await?;
    reader.read(range).await
}
