//! The per-case key: random, wrapped under the master key, and used to seal
//! the case's metadata (reference, filenames, DICOM fields) and, in the
//! object format, to wrap per-file data keys. Destroying its wrapped form
//! crypto-shreds the case.

use zeroize::Zeroizing;

use super::{DecryptError, KeyEncryptionKey, WrappedKey, aead};
use crate::ids::CaseId;
use crate::random as rng;

/// A case key in memory. Zeroized on drop, never printed.
pub struct CaseKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for CaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaseKey(<redacted>)")
    }
}

pub(super) fn wrap_aad(case_id: &CaseId) -> Vec<u8> {
    aead::aad(&[b"casegate case key v1", case_id.as_str().as_bytes()])
}

impl CaseKey {
    /// The raw key, for wrapping file keys under it.
    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn generate() -> CaseKey {
        CaseKey(Zeroizing::new(rng::array::<32>()))
    }

    /// Wraps under the current master key version, bound to `case_id`.
    pub fn wrap(&self, kek: &dyn KeyEncryptionKey, case_id: &CaseId) -> WrappedKey {
        kek.wrap(&self.0, &wrap_aad(case_id))
    }

    /// Wraps under master key `version`, if `kek` holds it.
    pub fn wrap_under(
        &self,
        kek: &dyn KeyEncryptionKey,
        version: u32,
        case_id: &CaseId,
    ) -> Option<WrappedKey> {
        kek.wrap_under(version, &self.0, &wrap_aad(case_id))
    }

    /// Only the [`super::Keyring`] unwraps; callers outside `crypto` ask it.
    pub(super) fn unwrap(
        kek: &dyn KeyEncryptionKey,
        case_id: &CaseId,
        wrapped: &WrappedKey,
    ) -> Result<CaseKey, DecryptError> {
        kek.unwrap(wrapped, &wrap_aad(case_id)).map(CaseKey)
    }

    /// Seals a metadata field. `purpose` and `subject` (e.g. a file id) are
    /// bound, so a sealed value cannot be moved to another field or record.
    pub fn seal_field(
        &self,
        case_id: &CaseId,
        purpose: &str,
        subject: &str,
        plaintext: &[u8],
    ) -> Vec<u8> {
        aead::seal(&self.0, &field_aad(case_id, purpose, subject), plaintext)
    }

    pub fn open_field(
        &self,
        case_id: &CaseId,
        purpose: &str,
        subject: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, DecryptError> {
        aead::open(&self.0, &field_aad(case_id, purpose, subject), sealed)
    }
}

fn field_aad(case_id: &CaseId, purpose: &str, subject: &str) -> Vec<u8> {
    aead::aad(&[
        b"casegate field v1",
        case_id.as_str().as_bytes(),
        purpose.as_bytes(),
        subject.as_bytes(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::LocalMasterKeys;

    #[test]
    fn wrapped_key_is_bound_to_its_case() {
        let dir = tempfile::tempdir().unwrap();
        let kek = LocalMasterKeys::load_or_create(&dir.path().join("m")).unwrap();
        let (a, b) = (CaseId::generate(), CaseId::generate());
        let key = CaseKey::generate();
        let wrapped = key.wrap(&kek, &a);
        let back = CaseKey::unwrap(&kek, &a, &wrapped).unwrap();
        assert!(CaseKey::unwrap(&kek, &b, &wrapped).is_err());
        let sealed = key.seal_field(&a, "reference", "", b"MRN 12345");
        assert_eq!(
            back.open_field(&a, "reference", "", &sealed).unwrap(),
            b"MRN 12345"
        );
        assert!(back.open_field(&a, "filename", "", &sealed).is_err());
        assert!(back.open_field(&b, "reference", "", &sealed).is_err());
    }
}
