//! Where chunks sit in an object, and the lengths that follow from a chunk
//! size. Canonical: every chunk but the last holds exactly `chunk_size`
//! plaintext bytes; the last holds 1..=`chunk_size` bytes, or 0 only when
//! the whole file is empty (then it is the only chunk).

use std::ops::Range;

use super::{CHUNK_OVERHEAD, FormatError, HEADER_LEN};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    chunk_size: u64,
}

impl Layout {
    pub fn new(chunk_size: u32) -> Layout {
        Layout {
            chunk_size: u64::from(chunk_size),
        }
    }

    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    pub fn sealed_chunk_len(&self) -> u64 {
        self.chunk_size + CHUNK_OVERHEAD as u64
    }

    /// Number of chunks for a plaintext of `len` bytes (at least one).
    pub fn chunk_count(&self, len: u64) -> u64 {
        len.div_ceil(self.chunk_size).max(1)
    }

    /// Object length for a plaintext of `len` bytes.
    pub fn object_len(&self, len: u64) -> u64 {
        HEADER_LEN as u64 + len + self.chunk_count(len) * CHUNK_OVERHEAD as u64
    }

    /// Plaintext length of a canonical object of `object_len` bytes.
    pub fn plaintext_len(&self, object_len: u64) -> Result<u64, FormatError> {
        let body = object_len
            .checked_sub(HEADER_LEN as u64)
            .ok_or(FormatError::Length)?;
        let sealed = self.sealed_chunk_len();
        let (full, rem) = (body / sealed, body % sealed);
        let overhead = CHUNK_OVERHEAD as u64;
        match (full, rem) {
            (0, 0) => Err(FormatError::Length),
            (_, 0) => Ok(full * self.chunk_size),
            (0, r) if r >= overhead => Ok(r - overhead),
            // A partial last chunk after full ones must hold ≥ 1 byte.
            (f, r) if r > overhead => Ok(f * self.chunk_size + r - overhead),
            _ => Err(FormatError::Length),
        }
    }

    /// Byte offset of chunk `index` in the object.
    pub fn chunk_offset(&self, index: u64) -> u64 {
        HEADER_LEN as u64 + index * self.sealed_chunk_len()
    }

    /// Plaintext bytes in chunk `index` of a `len`-byte plaintext.
    pub fn chunk_plain_len(&self, index: u64, len: u64) -> u64 {
        let start = index * self.chunk_size;
        len.saturating_sub(start).min(self.chunk_size)
    }

    /// The object byte range holding chunk `index`.
    pub fn chunk_span(&self, index: u64, len: u64) -> Range<u64> {
        let start = self.chunk_offset(index);
        start..start + self.chunk_plain_len(index, len) + CHUNK_OVERHEAD as u64
    }

    /// Chunks covering the plaintext range `range` (non-empty, within `len`).
    pub fn chunks_for(&self, range: &Range<u64>) -> Range<u64> {
        let first = range.start / self.chunk_size;
        let last = (range.end.max(range.start + 1) - 1) / self.chunk_size;
        first..last + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        let l = Layout::new(16);
        for len in 0..100u64 {
            let obj = l.object_len(len);
            assert_eq!(l.plaintext_len(obj), Ok(len), "len {len}");
        }
        // Lengths no writer produces are refused.
        assert!(l.plaintext_len(31).is_err());
        assert!(l.plaintext_len(32).is_err());
        assert!(l.plaintext_len(32 + 27).is_err());
        assert!(
            l.plaintext_len(32 + 44 + 28).is_err(),
            "empty chunk after a full one"
        );
    }

    #[test]
    fn ranges_to_chunks() {
        let l = Layout::new(16);
        assert_eq!(l.chunks_for(&(0..1)), 0..1);
        assert_eq!(l.chunks_for(&(15..17)), 0..2);
        assert_eq!(l.chunks_for(&(16..32)), 1..2);
        assert_eq!(l.chunk_span(2, 40), 32 + 88..32 + 88 + 8 + 28);
    }
}
