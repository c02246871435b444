//! Cryptography: the key hierarchy (master key → case key → file key, asked
//! through one [`Keyring`]), object format v1, and the small AEAD helpers
//! they are built from. Primitives come from ring; this module only
//! composes them.

pub mod aead;
pub mod case_key;
#[cfg(test)]
#[path = "tests/committed.rs"]
mod committed;
pub mod file_key;
pub mod format;
#[cfg(test)]
#[path = "tests/key_vectors.rs"]
mod key_vectors;
pub mod keyring;
pub mod master;
pub mod sealed_key;

pub use case_key::CaseKey;
pub use file_key::FileKey;
pub use keyring::Keyring;
pub use master::{KeyEncryptionKey, LocalMasterKeys, WrappedKey};

/// Decryption or unwrapping failed. Deliberately says nothing more: the
/// caller knows what it tried, an attacker learns nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("decryption failed")]
pub struct DecryptError;
