//! Object format v1: how one stored file looks. A 32-byte header, then the
//! plaintext in chunks (64 KiB by default), each sealed with AES-256-GCM
//! under the file's data key with a fresh random 96-bit nonce stored in
//! front of it. The associated data of every chunk binds the header, the
//! case id, the file id, the chunk index and a last-chunk flag, so
//! truncation, reordering, swapping chunks or objects between files and bit
//! flips are all detected, and a range read decrypts only the chunks it
//! touches. The byte-level specification is docs/format.md.
//!
//! One [`Encryptor`] writes objects (uploads, tests, benchmarks, vectors);
//! one [`Decryptor`] reads them, whole or by range (upload completion,
//! downloads, `fetch`, tests).

pub mod chunk;
pub mod decrypt;
pub mod digest;
pub mod encrypt;
pub mod header;
pub mod layout;
#[cfg(test)]
#[path = "tests/vectors.rs"]
mod vectors;

pub use chunk::ChunkCipher;
pub use decrypt::{Decryptor, RangePlan, ReadError, StreamError, decrypt_object};
pub use digest::{ObjectDigest, object_digest};
pub use encrypt::Encryptor;
pub use header::ObjectHeader;
pub use layout::Layout;

pub const MAGIC: &[u8; 8] = b"casegate";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 32;
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed chunk adds to its plaintext: nonce and tag.
pub const CHUNK_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Why an object does not decode. Callers facing the outside world report
/// all of these as one vague "decryption failed".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a casegate object (bad magic)")]
    BadMagic,
    #[error("unsupported object format version {0}")]
    UnsupportedVersion(u8),
    #[error("malformed object header")]
    BadHeader,
    #[error("unsupported chunk size {0}")]
    BadChunkSize(u32),
    #[error("object length does not match the format (truncated or extended)")]
    Length,
    #[error("chunk {0} does not authenticate")]
    Chunk(u64),
    #[error("file key does not match the object header")]
    WrongKey,
    #[error("range outside the plaintext")]
    Range,
}
