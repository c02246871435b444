//! A granted file's key material for one download: the chunk cipher of
//! its object, and for sealed downloads its file key sealed to the centre.

use super::Kind;
use super::{GrantError, internal};
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

pub(super) async fn open_keys(
    svc: &Services,
    case_key: &CaseKey,
    grant: &GrantRow,
    centre: &CentreRow,
    file_id: &FileId,
    kind: Kind,
) -> Result<OpenedKeys, GrantError> {
    let case_id = &grant.case_id;
    let (key_id, wrapped) = db::files::wrapped_key(&svc.db, case_id, file_id)
        .await?
        .ok_or_else(|| internal("file has no key"))?;
    let file_key = svc
        .keyring
        .file_key(case_key, case_id, file_id, key_id, &wrapped)
        .map_err(|_| internal("file key does not unwrap"))?;
    let object_sha256 = db::files::object_sha256(&svc.db, file_id).await?;
    let header = ObjectHeader::new(*file_key.id());
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
