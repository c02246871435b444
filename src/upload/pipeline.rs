//! Plaintext of an upload in → sealed object bytes out, in constant memory.
//! The declared length is known, so each chunk is sealed as last exactly
//! when it ends the file. What is not yet a whole chunk stays in `tail`,
//! and is made durable sealed as a tail record (never in plaintext).

use crate::crypto::format::{ChunkCipher, FormatError};

pub struct ChunkPipeline {
    cipher: ChunkCipher,
    chunk_size: usize,
    length: u64,
    offset: u64,
    tail: Vec<u8>,
    header_pending: bool,
}

impl ChunkPipeline {
    /// Resumes at `offset` durable bytes with the sealed tail record (if the
    /// offset is not on a chunk boundary).
    pub fn resume(
        cipher: ChunkCipher,
        length: u64,
        offset: u64,
        tail_sealed: Option<&[u8]>,
    ) -> Result<ChunkPipeline, FormatError> {
        let chunk_size = cipher.header().chunk_size as usize;
        let expected_tail = (offset % chunk_size as u64) as usize;
        let tail = match (tail_sealed, expected_tail) {
            (_, 0) => Vec::with_capacity(chunk_size),
            (Some(sealed), n) => {
                let mut tail = cipher.open_tail(offset / chunk_size as u64, sealed)?;
                if tail.len() != n {
                    return Err(FormatError::Length);
                }
                tail.reserve(chunk_size - tail.len());
                tail
            }
            (None, _) => return Err(FormatError::Length),
        };
        Ok(ChunkPipeline {
            cipher,
            chunk_size,
            length,
            offset,
            tail,
            header_pending: offset == 0,
        })
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn remaining(&self) -> u64 {
        self.length - self.offset
    }

    pub fn cipher(&self) -> &ChunkCipher {
        &self.cipher
    }

    fn write_header(&mut self, out: &mut Vec<u8>) {
        if self.header_pending {
            out.extend_from_slice(&self.cipher.header().encode());
            self.header_pending = false;
        }
    }

    /// Absorbs `input` (the caller checked it fits in the declared length)
    /// and appends every chunk it completes to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        debug_assert!(input.len() as u64 <= self.remaining());
        self.write_header(out);
        let cs = self.chunk_size;
        while !input.is_empty() {
            let index = self.offset / cs as u64;
            if self.tail.is_empty() && input.len() >= cs {
                // A whole chunk straight from the input.
                self.offset += cs as u64;
                self.cipher
                    .seal_into(index, self.offset == self.length, &input[..cs], out);
                input = &input[cs..];
                continue;
            }
            let take = (cs - self.tail.len()).min(input.len());
            self.tail.extend_from_slice(&input[..take]);
            self.offset += take as u64;
            input = &input[take..];
            if self.tail.len() == cs || self.offset == self.length {
                self.cipher
                    .seal_into(index, self.offset == self.length, &self.tail, out);
                self.tail.clear();
            }
        }
    }

    /// For a zero-length upload: the header and the single empty last chunk.
    pub fn finish_empty(&mut self, out: &mut Vec<u8>) {
        if self.length == 0 && self.header_pending {
            self.write_header(out);
            self.cipher.seal_into(0, true, &[], out);
        }
    }

    /// The partial chunk sealed for durable storage, if there is one.
    pub fn tail_record(&self) -> Option<Vec<u8>> {
        (!self.tail.is_empty()).then(|| {
            self.cipher
                .seal_tail(self.offset / self.chunk_size as u64, &self.tail)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::FileKey;
    use crate::crypto::format::{ObjectHeader, decrypt_object};

    fn cipher(key: &FileKey) -> ChunkCipher {
        ChunkCipher::new(
            key,
            ObjectHeader {
                chunk_size: 16,
                key_id: *key.id(),
            },
            "case_a",
            "file_b",
        )
        .unwrap()
    }

    /// Uploads `plain` in PATCHes of `patch` bytes, each resumed from the
    /// durable state the previous one left (object prefix + sealed tail).
    fn upload(key: &FileKey, plain: &[u8], patch: usize) -> Vec<u8> {
        let len = plain.len() as u64;
        let mut object = Vec::new();
        let mut tail: Option<Vec<u8>> = None;
        let mut offset = 0u64;
        if plain.is_empty() {
            let mut p = ChunkPipeline::resume(cipher(key), 0, 0, None).unwrap();
            p.finish_empty(&mut object);
            return object;
        }
        for piece in plain.chunks(patch) {
            let mut p = ChunkPipeline::resume(cipher(key), len, offset, tail.as_deref()).unwrap();
            p.feed(piece, &mut object);
            offset = p.offset();
            tail = p.tail_record();
        }
        assert!(tail.is_none());
        object
    }

    #[test]
    fn any_patch_sizes_give_a_valid_object() {
        let key = FileKey::generate();
        for len in [0usize, 1, 15, 16, 17, 32, 33, 100] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 5) as u8).collect();
            for patch in [1, 5, 16, 17, 200] {
                let object = upload(&key, &plain, patch);
                assert_eq!(
                    decrypt_object(&key, "case_a", "file_b", &object).unwrap(),
                    plain,
                    "len {len} patch {patch}"
                );
            }
        }
    }

    #[test]
    fn tails_are_sealed_and_bound_to_their_index() {
        let key = FileKey::generate();
        let mut p = ChunkPipeline::resume(cipher(&key), 100, 0, None).unwrap();
        let mut out = Vec::new();
        p.feed(b"twenty bytes of data", &mut out);
        let tail = p.tail_record().unwrap();
        assert!(!tail.windows(4).any(|w| w == b"data"), "tail is ciphertext");
        assert!(ChunkPipeline::resume(cipher(&key), 100, 20, Some(&tail)).is_ok());
        assert!(
            ChunkPipeline::resume(cipher(&key), 100, 36, Some(&tail)).is_err(),
            "wrong chunk index"
        );
        assert!(
            ChunkPipeline::resume(cipher(&key), 100, 21, Some(&tail)).is_err(),
            "wrong length"
        );
        assert!(ChunkPipeline::resume(cipher(&key), 100, 20, None).is_err());
        // A tail record never opens as a chunk.
        let mut as_chunk = tail.clone();
        assert!(cipher(&key).open_in_place(1, false, &mut as_chunk).is_err());
        let mut as_last = tail;
        assert!(cipher(&key).open_in_place(1, true, &mut as_last).is_err());
    }
}
