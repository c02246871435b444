//! Plaintext of an upload in → sealed object bytes out, in constant memory,
//! through the format's one [`Encryptor`]. The declared length is known, so
//! each chunk is sealed as last exactly when it ends the file. What is not
//! yet a whole chunk stays in memory across the PATCH and is made durable
//! sealed as a tail record (never in plaintext), from which the next PATCH
//! resumes.

use crate::crypto::format::{ChunkCipher, Encryptor, FormatError};

/// An upload's encryptor, resumed from its durable state for one PATCH.
#[derive(Debug)]
pub struct ChunkPipeline(Encryptor);

impl ChunkPipeline {
    /// Resumes at `offset` durable bytes with the sealed tail record (if the
    /// offset is not on a chunk boundary).
    pub fn resume(
        cipher: ChunkCipher,
        length: u64,
        offset: u64,
        tail_sealed: Option<&[u8]>,
    ) -> Result<ChunkPipeline, FormatError> {
        Encryptor::resume(cipher, length, offset, tail_sealed).map(ChunkPipeline)
    }

    pub fn offset(&self) -> u64 {
        self.0.offset()
    }

    pub fn remaining(&self) -> u64 {
        self.0.remaining()
    }

    pub fn cipher(&self) -> &ChunkCipher {
        self.0.cipher()
    }

    /// Absorbs `input` (the caller checked it fits in the declared length)
    /// and appends every chunk it completes to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.0.update(input, out);
    }

    /// For a zero-length upload: the header and the single empty last chunk.
    /// Does nothing for any other upload.
    pub fn finish_empty(&mut self, out: &mut Vec<u8>) {
        if self.remaining() == 0 {
            // Cannot fail: every declared byte was absorbed.
            let _ = self.0.finish(out);
        }
    }

    /// The partial chunk sealed for durable storage, if there is one.
    pub fn tail_record(&self) -> Option<Vec<u8>> {
        self.0.tail_record()
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
