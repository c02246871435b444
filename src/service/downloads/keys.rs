//! A granted file's key material for one download, for its object as
//! stored: the object's header (read from the store) checked against the
//! file's record, the chunk cipher built from that header (so the chunk
//! size is the object's own), and for sealed downloads the file key sealed
//! to the centre and bound to that header.

use super::{GrantError, GrantedFile, Kind, internal};
use crate::crypto::format::{ChunkCipher, ObjectHeader};
use crate::crypto::{CaseKey, FileKey, sealed_key};
use crate::db;
use crate::db::centres::CentreRow;
use crate::db::grants::GrantRow;
use crate::ids::FileId;
use crate::service::Services;

/// The file's key material for one download.
pub(super) struct OpenedKeys {
    pub(super) cipher: ChunkCipher,
    pub(super) sealed_key: Option<String>,
    pub(super) object_sha256: Option<String>,
}

/// Opens the file key of `file` and binds it to `stored_header`, the first
/// bytes of its object as the store holds them. A header that does not
/// parse, names another key or another chunk size than the file's record
/// is an internal error, found before the download counts as a use.
pub(super) async fn open_keys(
    svc: &Services,
    case_key: &CaseKey,
    (grant, centre): (&GrantRow, &CentreRow),
    file: &GrantedFile,
    stored_header: &[u8],
    kind: Kind,
) -> Result<OpenedKeys, GrantError> {
    let (case_id, file_id) = (&grant.case_id, &file.file_id);
    let (key_id, wrapped) = db::files::wrapped_key(&svc.db, case_id, file_id)
        .await?
        .ok_or_else(|| internal("file has no key"))?;
    let header = checked_header(stored_header, file, &key_id)?;
    let file_key = svc
        .keyring
        .file_key(case_key, case_id, file_id, key_id, &wrapped)
        .map_err(|_| internal("file key does not unwrap"))?;
    let object_sha256 = db::files::object_sha256(&svc.db, file_id).await?;
    let sealed_key = match kind {
        Kind::Plaintext => None,
        Kind::Sealed => Some(seal_to_centre(grant, centre, file_id, &header, &file_key)?),
    };
    let cipher = ChunkCipher::new(&file_key, header, case_id.as_str(), file_id.as_str())
        .map_err(|_| internal("chunk cipher"))?;
    Ok(OpenedKeys {
        cipher,
        sealed_key,
        object_sha256,
    })
}

/// The stored object's header, if it is the one the file's record
/// describes: it parses, names the file's key and the chunk size recorded
/// at completion (from which the sealed length was computed).
fn checked_header(
    stored: &[u8],
    file: &GrantedFile,
    key_id: &[u8; 16],
) -> Result<ObjectHeader, GrantError> {
    let file_id = &file.file_id;
    let header = ObjectHeader::decode(stored)
        .map_err(|e| internal(&format!("stored object {file_id}: header: {e}")))?;
    if &header.key_id != key_id {
        return Err(internal(&format!(
            "stored object {file_id} names another file key"
        )));
    }
    if header.chunk_size != file.chunk_size {
        return Err(internal(&format!(
            "stored object {file_id} has chunk size {}, its record {}",
            header.chunk_size, file.chunk_size
        )));
    }
    Ok(header)
}

/// The file key sealed to the centre's X25519 key, bound to the grant,
/// case and file and to the object's header.
fn seal_to_centre(
    grant: &GrantRow,
    centre: &CentreRow,
    file_id: &FileId,
    header: &ObjectHeader,
    file_key: &FileKey,
) -> Result<String, GrantError> {
    let centre_key: [u8; 32] = centre
        .x25519_public_key
        .as_slice()
        .try_into()
        .map_err(|_| internal("centre key is not 32 bytes"))?;
    let info = sealed_key::info(
        grant.grant_id.as_str(),
        grant.case_id.as_str(),
        file_id.as_str(),
    );
    let sealed = sealed_key::seal(&centre_key, &info, &header.encode(), file_key.secret())
        .map_err(|_| internal("sealing the file key"))?;
    Ok(sealed_key::encode(&sealed))
}
