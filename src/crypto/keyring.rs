//! The keyring: the one place that turns wrapped keys back into usable
//! ones, down the hierarchy master key → case key → file key → chunk
//! cipher. Everything outside `crypto` asks it; the raw unwrap functions of
//! [`CaseKey`] and [`FileKey`] are private to this module tree, so which
//! associated data binds a key to its case, file and key id is decided here
//! and nowhere else.

use std::sync::Arc;

use super::format::{ChunkCipher, ObjectHeader};
use super::{CaseKey, DecryptError, FileKey, KeyEncryptionKey, WrappedKey};
use crate::ids::{CaseId, FileId};

/// The master key (any [`KeyEncryptionKey`]) and what can be unwrapped
/// under it. Cheap to clone.
#[derive(Clone)]
pub struct Keyring {
    kek: Arc<dyn KeyEncryptionKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring(master key v{})", self.kek.current_version())
    }
}

impl From<Arc<dyn KeyEncryptionKey>> for Keyring {
    fn from(kek: Arc<dyn KeyEncryptionKey>) -> Keyring {
        Keyring { kek }
    }
}

impl Keyring {
    pub fn new(kek: Arc<dyn KeyEncryptionKey>) -> Keyring {
        Keyring { kek }
    }

    /// A fresh case key for a new case, and its wrapped form to store.
    pub fn new_case_key(&self, case_id: &CaseId) -> (CaseKey, WrappedKey) {
        let key = CaseKey::generate();
        let wrapped = key.wrap(self.kek.as_ref(), case_id);
        (key, wrapped)
    }

    /// A fresh case key wrapped under master key `version` (the active one
    /// several gateways agree on; `None`: the newest held), or `None` if
    /// this gateway does not hold that version.
    pub fn new_case_key_under(
        &self,
        case_id: &CaseId,
        version: Option<u32>,
    ) -> Option<(CaseKey, WrappedKey)> {
        let Some(version) = version else {
            return Some(self.new_case_key(case_id));
        };
        let key = CaseKey::generate();
        let wrapped = key.wrap_under(self.kek.as_ref(), version, case_id)?;
        Some((key, wrapped))
    }

    /// The key of case `case_id` from its stored wrapped form.
    pub fn case_key(
        &self,
        case_id: &CaseId,
        wrapped: &WrappedKey,
    ) -> Result<CaseKey, DecryptError> {
        CaseKey::unwrap(self.kek.as_ref(), case_id, wrapped)
    }

    /// The same case key wrapped under the current master key version
    /// (rotation). The case key itself does not change.
    pub fn rewrap_case_key(
        &self,
        case_id: &CaseId,
        wrapped: &WrappedKey,
    ) -> Result<WrappedKey, DecryptError> {
        let version = self.kek.current_version();
        self.rewrap_case_key_under(case_id, wrapped, version)
    }

    /// The same case key wrapped under master key `version`.
    pub fn rewrap_case_key_under(
        &self,
        case_id: &CaseId,
        wrapped: &WrappedKey,
        version: u32,
    ) -> Result<WrappedKey, DecryptError> {
        self.case_key(case_id, wrapped)?
            .wrap_under(self.kek.as_ref(), version, case_id)
            .ok_or(DecryptError)
    }

    /// The data key of file `file_id`, from its wrapped form and key id as
    /// stored with the file.
    pub fn file_key(
        &self,
        case_key: &CaseKey,
        case_id: &CaseId,
        file_id: &FileId,
        key_id: [u8; 16],
        wrapped: &[u8],
    ) -> Result<FileKey, DecryptError> {
        FileKey::unwrap(case_key, case_id, file_id, key_id, wrapped)
    }

    /// The chunk cipher of file `file_id`'s object with `header` (the header
    /// as stored, or the one a writer is about to store). Fails when the
    /// wrapped key does not open or the header names another key.
    pub fn file_cipher(
        &self,
        case_key: &CaseKey,
        case_id: &CaseId,
        file_id: &FileId,
        key_id: [u8; 16],
        wrapped: &[u8],
        header: ObjectHeader,
    ) -> Result<ChunkCipher, DecryptError> {
        let file_key = self.file_key(case_key, case_id, file_id, key_id, wrapped)?;
        ChunkCipher::new(&file_key, header, case_id.as_str(), file_id.as_str())
            .map_err(|_| DecryptError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::LocalMasterKeys;

    #[test]
    fn unwraps_down_the_hierarchy_and_binds_every_level() {
        let dir = tempfile::tempdir().unwrap();
        let kek = LocalMasterKeys::load_or_create(&dir.path().join("m")).unwrap();
        let keyring = Keyring::new(Arc::new(kek));
        let (case, other_case) = (CaseId::generate(), CaseId::generate());
        let (file, other_file) = (FileId::generate(), FileId::generate());
        let (case_key, wrapped_case) = keyring.new_case_key(&case);
        let back = keyring.case_key(&case, &wrapped_case).unwrap();
        assert!(keyring.case_key(&other_case, &wrapped_case).is_err());
        let rewrapped = keyring.rewrap_case_key(&case, &wrapped_case).unwrap();
        assert_ne!(rewrapped, wrapped_case, "fresh nonce");
        assert!(keyring.case_key(&case, &rewrapped).is_ok());

        let file_key = FileKey::generate();
        let wrapped_file = file_key.wrap(&case_key, &case, &file);
        let opened = keyring
            .file_key(&back, &case, &file, *file_key.id(), &wrapped_file)
            .unwrap();
        assert_eq!(opened.secret(), file_key.secret());
        assert!(
            keyring
                .file_key(&back, &case, &other_file, *file_key.id(), &wrapped_file)
                .is_err()
        );
        let header = ObjectHeader::new(*file_key.id());
        assert!(
            keyring
                .file_cipher(&back, &case, &file, *file_key.id(), &wrapped_file, header)
                .is_ok()
        );
        let foreign = ObjectHeader::new([0u8; 16]);
        assert!(
            keyring
                .file_cipher(&back, &case, &file, *file_key.id(), &wrapped_file, foreign)
                .is_err()
        );
    }
}
