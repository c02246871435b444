//! The 32-byte object header:
//!
//! | offset | len | field |
//! |---|---|---|
//! | 0 | 8 | magic `casegate` |
//! | 8 | 1 | format version, 1 |
//! | 9 | 3 | reserved, zero |
//! | 12 | 4 | chunk size (plaintext bytes per chunk), big-endian |
//! | 16 | 16 | file key id |

use super::{DEFAULT_CHUNK_SIZE, FormatError, HEADER_LEN, MAGIC, VERSION};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectHeader {
    pub chunk_size: u32,
    pub key_id: [u8; 16],
}

/// Chunk sizes a reader accepts: powers of two from 16 B to 1 MiB, both
/// inclusive. Writers use 64 KiB; small sizes exist for readable test
/// vectors.
pub fn valid_chunk_size(size: u32) -> bool {
    size.is_power_of_two() && (16..=1 << 20).contains(&size)
}

impl ObjectHeader {
    pub fn new(key_id: [u8; 16]) -> ObjectHeader {
        ObjectHeader {
            chunk_size: DEFAULT_CHUNK_SIZE,
            key_id,
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(MAGIC);
        out[8] = VERSION;
        out[12..16].copy_from_slice(&self.chunk_size.to_be_bytes());
        out[16..32].copy_from_slice(&self.key_id);
        out
    }

    /// Parses the first `HEADER_LEN` bytes of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<ObjectHeader, FormatError> {
        let header: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(FormatError::Length)?;
        if &header[..8] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        if header[8] != VERSION {
            return Err(FormatError::UnsupportedVersion(header[8]));
        }
        if header[9..12] != [0, 0, 0] {
            return Err(FormatError::BadHeader);
        }
        let chunk_size = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
        if !valid_chunk_size(chunk_size) {
            return Err(FormatError::BadChunkSize(chunk_size));
        }
        let mut key_id = [0u8; 16];
        key_id.copy_from_slice(&header[16..32]);
        Ok(ObjectHeader { chunk_size, key_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let h = ObjectHeader::new([7u8; 16]);
        let bytes = h.encode();
        assert_eq!(ObjectHeader::decode(&bytes), Ok(h));
        let mut bad = bytes;
        bad[0] ^= 1;
        assert_eq!(ObjectHeader::decode(&bad), Err(FormatError::BadMagic));
        let mut bad = bytes;
        bad[8] = 2;
        assert_eq!(
            ObjectHeader::decode(&bad),
            Err(FormatError::UnsupportedVersion(2))
        );
        let mut bad = bytes;
        bad[10] = 1;
        assert_eq!(ObjectHeader::decode(&bad), Err(FormatError::BadHeader));
        let mut bad = bytes;
        bad[12..16].copy_from_slice(&100u32.to_be_bytes());
        assert_eq!(
            ObjectHeader::decode(&bad),
            Err(FormatError::BadChunkSize(100))
        );
        assert_eq!(ObjectHeader::decode(&bytes[..31]), Err(FormatError::Length));
    }
}
