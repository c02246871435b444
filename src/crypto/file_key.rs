//! Per-file data keys (DEKs): random, identified by a random 16-byte key id
//! that the object header carries, wrapped under the case key with
//! associated data binding case id, file id and key id — a wrapped key
//! copied onto another file or case does not unwrap.

use zeroize::Zeroizing;

use super::{CaseKey, DecryptError, aead};
use crate::ids::{CaseId, FileId};
use crate::random as rng;

pub struct FileKey {
    id: [u8; 16],
    secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FileKey(id {}, <redacted>)",
            crate::hex::encode(&self.id)
        )
    }
}

pub(super) fn wrap_aad(case_id: &str, file_id: &str, key_id: &[u8; 16]) -> Vec<u8> {
    aead::aad(&[
        b"casegate file key v1",
        case_id.as_bytes(),
        file_id.as_bytes(),
        crate::hex::encode(key_id).as_bytes(),
    ])
}

impl FileKey {
    pub fn generate() -> FileKey {
        FileKey {
            id: rng::array::<16>(),
            secret: Zeroizing::new(rng::array::<32>()),
        }
    }

    /// A key from known bytes (test vectors, and `fetch` after unsealing).
    pub fn from_parts(id: [u8; 16], secret: [u8; 32]) -> FileKey {
        FileKey {
            id,
            secret: Zeroizing::new(secret),
        }
    }

    pub fn id(&self) -> &[u8; 16] {
        &self.id
    }

    /// The raw key, for the AEAD and for sealing to a centre.
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    pub fn wrap(&self, case_key: &CaseKey, case_id: &CaseId, file_id: &FileId) -> Vec<u8> {
        aead::seal(
            case_key.secret(),
            &wrap_aad(case_id.as_str(), file_id.as_str(), &self.id),
            self.secret.as_ref(),
        )
    }

    /// Only the [`super::Keyring`] unwraps; callers outside `crypto` ask it.
    pub(super) fn unwrap(
        case_key: &CaseKey,
        case_id: &CaseId,
        file_id: &FileId,
        key_id: [u8; 16],
        wrapped: &[u8],
    ) -> Result<FileKey, DecryptError> {
        let plain = Zeroizing::new(aead::open(
            case_key.secret(),
            &wrap_aad(case_id.as_str(), file_id.as_str(), &key_id),
            wrapped,
        )?);
        let secret: [u8; 32] = plain.as_slice().try_into().map_err(|_| DecryptError)?;
        Ok(FileKey::from_parts(key_id, secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_file_key_is_bound_to_case_file_and_id() {
        let case_key = CaseKey::generate();
        let (case, other_case) = (CaseId::generate(), CaseId::generate());
        let (file, other_file) = (FileId::generate(), FileId::generate());
        let key = FileKey::generate();
        let wrapped = key.wrap(&case_key, &case, &file);
        let back = FileKey::unwrap(&case_key, &case, &file, *key.id(), &wrapped).unwrap();
        assert_eq!(back.secret(), key.secret());
        assert!(FileKey::unwrap(&case_key, &other_case, &file, *key.id(), &wrapped).is_err());
        assert!(FileKey::unwrap(&case_key, &case, &other_file, *key.id(), &wrapped).is_err());
        assert!(FileKey::unwrap(&case_key, &case, &file, [0u8; 16], &wrapped).is_err());
        assert!(FileKey::unwrap(&CaseKey::generate(), &case, &file, *key.id(), &wrapped).is_err());
        assert!(!format!("{key:?}").contains(&crate::hex::encode(key.secret())));
    }
}
