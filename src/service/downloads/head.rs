//! Reading plaintext of a granted file without counting a download: the
//! header of a DICOM instance, which DICOMweb answers as metadata and
//! indexes for files completed before the index existed. Never pixel data
//! in bulk: callers read the first bytes, growing the read only while the
//! header does not end within it.

use std::ops::Range;

use super::{GrantError, GrantedFile, Kind, internal, keys};
use crate::crypto::CaseKey;
use crate::crypto::format::{Decryptor, HEADER_LEN, ReadError};
use crate::db::centres::CentreRow;
use crate::db::grants::GrantRow;
use crate::service::Services;
use crate::store::object_key;

/// Plaintext bytes `range` of a granted file (clamped to its size),
/// decrypting only the chunks the range touches.
pub async fn read_plain(
    svc: &Services,
    case_key: &CaseKey,
    grant: (&GrantRow, &CentreRow),
    file: &GrantedFile,
    range: Range<u64>,
) -> Result<Vec<u8>, GrantError> {
    let key = object_key(&grant.0.case_id, &file.file_id);
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::warn!(error = %e, "object store unavailable for a header read");
        GrantError::StorageUnavailable
    };
    let stored_header = svc
        .store
        .get_range(&key, 0..HEADER_LEN as u64)
        .await
        .map_err(|e| unavailable(&e))?;
    let opened =
        keys::open_keys(svc, case_key, grant, file, &stored_header, Kind::Plaintext).await?;
    let object = Decryptor::from_cipher(opened.cipher, file.size);
    let range = range.start.min(file.size)..range.end.min(file.size);
    if range.is_empty() {
        return Ok(Vec::new());
    }
    object
        .read_range(range, |r| svc.store.get_range(&key, r))
        .await
        .map_err(|e| match e {
            ReadError::Fetch(e) => unavailable(&e),
            ReadError::Format(e) => internal(&format!("{}: does not decrypt: {e}", file.file_id)),
        })
}
