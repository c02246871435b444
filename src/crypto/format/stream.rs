//! Streaming encryption: plaintext in any pieces → header and sealed chunks,
//! holding at most one chunk of plaintext. A chunk is sealed only once it is
//! known whether it is the last one.

use super::{CHUNK_OVERHEAD, ChunkCipher, FormatError, HEADER_LEN, Layout, ObjectHeader};
use crate::crypto::file_key::FileKey;

pub struct Encryptor {
    cipher: ChunkCipher,
    chunk_size: usize,
    /// Plaintext of the chunk not yet sealed (≤ one chunk).
    pending: Vec<u8>,
    index: u64,
    header_written: bool,
}

impl Encryptor {
    pub fn new(key: &FileKey, case_id: &str, file_id: &str) -> Result<Encryptor, FormatError> {
        Encryptor::with_header(key, ObjectHeader::new(*key.id()), case_id, file_id)
    }

    pub fn with_header(
        key: &FileKey,
        header: ObjectHeader,
        case_id: &str,
        file_id: &str,
    ) -> Result<Encryptor, FormatError> {
        let chunk_size = header.chunk_size as usize;
        Ok(Encryptor {
            cipher: ChunkCipher::new(key, header, case_id, file_id)?,
            chunk_size,
            pending: Vec::with_capacity(chunk_size),
            index: 0,
            header_written: false,
        })
    }

    fn write_header(&mut self, out: &mut Vec<u8>) {
        if !self.header_written {
            out.extend_from_slice(&self.cipher.header().encode());
            self.header_written = true;
        }
    }

    /// Appends to `out` the header (first call) and every chunk now known
    /// not to be the last.
    pub fn update(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        self.write_header(out);
        while !input.is_empty() {
            if self.pending.len() == self.chunk_size {
                self.cipher.seal_into(self.index, false, &self.pending, out);
                self.index += 1;
                self.pending.clear();
            }
            if self.pending.is_empty() && input.len() > self.chunk_size {
                // More follows this chunk: seal straight from the input.
                self.cipher
                    .seal_into(self.index, false, &input[..self.chunk_size], out);
                self.index += 1;
                input = &input[self.chunk_size..];
                continue;
            }
            let take = (self.chunk_size - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
        }
    }

    /// Seals the final chunk (possibly empty, for an empty file).
    pub fn finish(mut self, out: &mut Vec<u8>) {
        self.write_header(out);
        self.cipher.seal_into(self.index, true, &self.pending, out);
    }
}

/// Decrypts a whole object held in memory (tests, vectors, small files).
pub fn decrypt_object(
    key: &FileKey,
    case_id: &str,
    file_id: &str,
    object: &[u8],
) -> Result<Vec<u8>, FormatError> {
    let header = ObjectHeader::decode(object)?;
    let cipher = ChunkCipher::new(key, header, case_id, file_id)?;
    let layout = Layout::new(header.chunk_size);
    let len = layout.plaintext_len(object.len() as u64)?;
    let count = layout.chunk_count(len);
    let mut out = Vec::with_capacity(len as usize);
    let mut buf = Vec::with_capacity(header.chunk_size as usize + CHUNK_OVERHEAD);
    for index in 0..count {
        let span = layout.chunk_span(index, len);
        buf.clear();
        buf.extend_from_slice(&object[span.start as usize..span.end as usize]);
        out.extend_from_slice(cipher.open_in_place(index, index + 1 == count, &mut buf)?);
    }
    debug_assert!(object.len() >= HEADER_LEN);
    Ok(out)
}

/// What to fetch and keep for a plaintext range: only the chunks it touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePlan {
    /// Object bytes to read (whole sealed chunks).
    pub object_range: std::ops::Range<u64>,
    pub chunks: std::ops::Range<u64>,
    /// Plaintext bytes to drop from the first chunk.
    pub skip: u64,
    /// Plaintext bytes to return in total.
    pub take: u64,
}

/// Plans reading plaintext bytes `range` of a `len`-byte file. `range` must
/// be non-empty and within `len`.
pub fn plan_range(layout: &Layout, len: u64, range: std::ops::Range<u64>) -> RangePlan {
    let chunks = layout.chunks_for(&range);
    let start = layout.chunk_offset(chunks.start);
    let end = layout.chunk_span(chunks.end - 1, len).end;
    RangePlan {
        object_range: start..end,
        skip: range.start - chunks.start * layout.chunk_size(),
        take: range.end - range.start,
        chunks,
    }
}

/// Decrypts the chunks `plan` fetched (`fetched` = the object bytes of
/// `plan.object_range`) and returns exactly the planned plaintext.
pub fn decrypt_planned(
    cipher: &ChunkCipher,
    layout: &Layout,
    len: u64,
    plan: &RangePlan,
    fetched: &mut [u8],
) -> Result<Vec<u8>, FormatError> {
    let count = layout.chunk_count(len);
    let mut out = Vec::with_capacity(plan.take as usize);
    let mut offset = 0usize;
    for index in plan.chunks.clone() {
        let span = layout.chunk_span(index, len);
        let sealed_len = (span.end - span.start) as usize;
        let sealed = fetched
            .get_mut(offset..offset + sealed_len)
            .ok_or(FormatError::Length)?;
        offset += sealed_len;
        let plain = cipher.open_in_place(index, index + 1 == count, sealed)?;
        let skip = if index == plan.chunks.start {
            plan.skip as usize
        } else {
            0
        };
        let want = (plan.take as usize - out.len()).min(plain.len().saturating_sub(skip));
        out.extend_from_slice(&plain[skip..skip + want]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_header(key: &FileKey) -> ObjectHeader {
        ObjectHeader {
            chunk_size: 16,
            key_id: *key.id(),
        }
    }

    fn encrypt(key: &FileKey, plaintext: &[u8], pieces: usize) -> Vec<u8> {
        let mut enc = Encryptor::with_header(key, small_header(key), "case_a", "file_b").unwrap();
        let mut out = Vec::new();
        for piece in plaintext.chunks(pieces.max(1)) {
            enc.update(piece, &mut out);
        }
        enc.finish(&mut out);
        out
    }

    #[test]
    fn round_trips_any_length_and_piece_size() {
        let key = FileKey::generate();
        for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 100] {
            let plaintext: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for pieces in [1, 3, 16, 17, 1000] {
                let object = encrypt(&key, &plaintext, pieces);
                assert_eq!(object.len() as u64, Layout::new(16).object_len(len as u64));
                assert_eq!(
                    decrypt_object(&key, "case_a", "file_b", &object).unwrap(),
                    plaintext,
                    "len {len} pieces {pieces}"
                );
            }
        }
    }

    #[test]
    fn detects_tampering() {
        let key = FileKey::generate();
        let plaintext = vec![9u8; 40];
        let object = encrypt(&key, &plaintext, 7);
        for i in 0..object.len() {
            let mut t = object.clone();
            t[i] ^= 0x80;
            assert!(
                decrypt_object(&key, "case_a", "file_b", &t).is_err(),
                "flip at {i}"
            );
        }
        assert!(decrypt_object(&key, "case_a", "file_c", &object).is_err());
        assert!(decrypt_object(&key, "case_x", "file_b", &object).is_err());
        // Truncated at a chunk boundary: the new last chunk was sealed as non-last.
        let cut = 32 + 2 * (16 + 28);
        assert!(decrypt_object(&key, "case_a", "file_b", &object[..cut]).is_err());
        assert!(decrypt_object(&FileKey::generate(), "case_a", "file_b", &object).is_err());
    }

    #[test]
    fn range_reads_decrypt_only_needed_chunks() {
        let key = FileKey::generate();
        let plaintext: Vec<u8> = (0..100u32).map(|i| (i * 3) as u8).collect();
        let object = encrypt(&key, &plaintext, 13);
        let header = ObjectHeader::decode(&object).unwrap();
        let cipher = ChunkCipher::new(&key, header, "case_a", "file_b").unwrap();
        let layout = Layout::new(16);
        for (a, b) in [
            (0u64, 1u64),
            (15, 17),
            (16, 32),
            (5, 100),
            (99, 100),
            (0, 100),
            (33, 34),
        ] {
            let plan = plan_range(&layout, 100, a..b);
            let mut fetched =
                object[plan.object_range.start as usize..plan.object_range.end as usize].to_vec();
            let got = decrypt_planned(&cipher, &layout, 100, &plan, &mut fetched).unwrap();
            assert_eq!(got, &plaintext[a as usize..b as usize], "{a}..{b}");
            assert_eq!(
                plan.chunks.end - plan.chunks.start,
                layout.chunks_for(&(a..b)).count() as u64
            );
        }
        // A single-chunk range fetches one chunk only.
        let plan = plan_range(&layout, 100, 20..30);
        assert_eq!(plan.object_range.end - plan.object_range.start, 16 + 28);
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let key = FileKey::generate();
        let a = encrypt(&key, b"same plaintext", 100);
        let b = encrypt(&key, b"same plaintext", 100);
        assert_ne!(a[32..44], b[32..44]);
    }
}
