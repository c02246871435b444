//! The one format v1 encryptor: plaintext in pieces of any size → the header
//! and sealed chunks, holding at most one chunk of plaintext. A chunk is
//! sealed as soon as it is known whether it is the last one: at once when
//! the total length was declared up front (uploads: tus announces it), else
//! when more input arrives or at [`Encryptor::finish`]. Whole chunks are
//! sealed straight from the input, without a copy.
//!
//! An encryptor with a declared length can stop after any piece and be
//! resumed later from the offset it reached and its sealed tail record (the
//! plaintext of the unfinished chunk, never stored in the clear).

use super::{ChunkCipher, FormatError, ObjectHeader};
use crate::crypto::file_key::FileKey;

pub struct Encryptor {
    cipher: ChunkCipher,
    chunk_size: usize,
    /// The declared plaintext length, when known.
    length: Option<u64>,
    /// Plaintext bytes absorbed: sealed or in `pending`.
    offset: u64,
    /// Plaintext of the chunk not yet sealed: less than a chunk, or a whole
    /// one while the length is unknown and nothing followed it yet.
    pending: Vec<u8>,
    header_pending: bool,
    /// The last chunk is sealed; nothing more is written.
    done: bool,
}

impl std::fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Encryptor(offset {}, {:?})", self.offset, self.length)
    }
}

impl Encryptor {
    /// An encryptor with the default chunk size, length unknown.
    pub fn new(key: &FileKey, case_id: &str, file_id: &str) -> Result<Encryptor, FormatError> {
        Encryptor::with_header(key, ObjectHeader::new(*key.id()), case_id, file_id)
    }

    /// An encryptor writing `header` (its chunk size), length unknown.
    pub fn with_header(
        key: &FileKey,
        header: ObjectHeader,
        case_id: &str,
        file_id: &str,
    ) -> Result<Encryptor, FormatError> {
        let cipher = ChunkCipher::new(key, header, case_id, file_id)?;
        Ok(Encryptor::start(cipher, None, 0, Vec::new()))
    }

    /// An encryptor for exactly `length` plaintext bytes, resumed after
    /// `offset` of them were absorbed. `tail_sealed` is the tail record
    /// [`Encryptor::tail_record`] returned then; it is required exactly when
    /// `offset` is not on a chunk boundary and not the end.
    pub fn resume(
        cipher: ChunkCipher,
        length: u64,
        offset: u64,
        tail_sealed: Option<&[u8]>,
    ) -> Result<Encryptor, FormatError> {
        if offset > length {
            return Err(FormatError::Length);
        }
        let chunk_size = u64::from(cipher.header().chunk_size);
        let tail = match (tail_sealed, offset % chunk_size) {
            // On a chunk boundary, or finished: the last chunk is sealed.
            (_, 0) => Vec::new(),
            _ if offset == length => Vec::new(),
            (Some(sealed), n) => {
                let tail = cipher.open_tail(offset / chunk_size, sealed)?;
                if tail.len() as u64 != n {
                    return Err(FormatError::Length);
                }
                tail
            }
            (None, _) => return Err(FormatError::Length),
        };
        Ok(Encryptor::start(cipher, Some(length), offset, tail))
    }

    fn start(cipher: ChunkCipher, length: Option<u64>, offset: u64, tail: Vec<u8>) -> Encryptor {
        let chunk_size = cipher.header().chunk_size as usize;
        let mut pending = Vec::with_capacity(chunk_size);
        pending.extend_from_slice(&tail);
        Encryptor {
            cipher,
            chunk_size,
            length,
            offset,
            pending,
            header_pending: offset == 0,
            // A declared, non-empty length already reached: its last chunk
            // was sealed before this resumption.
            done: length.is_some_and(|len| len > 0 && offset == len),
        }
    }

    /// Plaintext bytes absorbed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes still to come of a declared length (unbounded when unknown).
    pub fn remaining(&self) -> u64 {
        self.length.map_or(u64::MAX, |len| len - self.offset)
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

    /// Index of the chunk `pending` belongs to.
    fn index(&self) -> u64 {
        (self.offset - self.pending.len() as u64) / self.chunk_size as u64
    }

    fn seal_pending(&mut self, last: bool, out: &mut Vec<u8>) {
        self.cipher
            .seal_into(self.index(), last, &self.pending, out);
        self.pending.clear();
        self.done = last;
    }

    /// Absorbs `input` and appends to `out` the header (first call) and
    /// every chunk now complete and known to be last or not. With a declared
    /// length, `input` must fit in [`Encryptor::remaining`].
    pub fn update(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        debug_assert!(input.len() as u64 <= self.remaining());
        debug_assert!(input.is_empty() || !self.done);
        self.write_header(out);
        let cs = self.chunk_size;
        while !input.is_empty() {
            if self.pending.len() == cs {
                // Only with an unknown length: more follows, so not last.
                self.seal_pending(false, out);
            }
            let whole = self.pending.is_empty() && input.len() >= cs;
            let last = match self.length {
                Some(len) => Some(self.offset + cs as u64 == len),
                None => (input.len() > cs).then_some(false),
            };
            if let (true, Some(last)) = (whole, last) {
                let index = self.offset / cs as u64;
                self.offset += cs as u64;
                self.cipher.seal_into(index, last, &input[..cs], out);
                self.done = last;
                input = &input[cs..];
                continue;
            }
            let take = (cs - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            self.offset += take as u64;
            input = &input[take..];
            if let Some(len) = self.length
                && (self.pending.len() == cs || self.offset == len)
            {
                self.seal_pending(self.offset == len, out);
            }
        }
    }

    /// Ends the object: seals the last chunk if it is not sealed yet (an
    /// empty file has one empty last chunk). With a declared length, fails
    /// unless all of it was absorbed. Calling it again does nothing.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), FormatError> {
        if self.length.is_some_and(|len| len != self.offset) {
            return Err(FormatError::Length);
        }
        if !self.done {
            self.write_header(out);
            self.seal_pending(true, out);
        }
        Ok(())
    }

    /// The unfinished chunk sealed for durable storage, if there is one
    /// (see [`ChunkCipher::seal_tail`]); [`Encryptor::resume`] takes it back.
    pub fn tail_record(&self) -> Option<Vec<u8>> {
        (!self.pending.is_empty() && !self.done)
            .then(|| self.cipher.seal_tail(self.index(), &self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::format::{Layout, decrypt_object};

    fn header(key: &FileKey) -> ObjectHeader {
        ObjectHeader {
            chunk_size: 16,
            key_id: *key.id(),
        }
    }

    fn cipher(key: &FileKey) -> ChunkCipher {
        ChunkCipher::new(key, header(key), "case_a", "file_b").unwrap()
    }

    fn encrypt(key: &FileKey, plaintext: &[u8], pieces: usize) -> Vec<u8> {
        let mut enc = Encryptor::with_header(key, header(key), "case_a", "file_b").unwrap();
        let mut out = Vec::new();
        for piece in plaintext.chunks(pieces.max(1)) {
            enc.update(piece, &mut out);
        }
        enc.finish(&mut out).unwrap();
        out
    }

    /// Encrypts `plain` with its length declared, in pieces of `patch`
    /// bytes, each resumed from the durable state the previous one left
    /// (offset + sealed tail), as PATCH requests do.
    fn encrypt_resumed(key: &FileKey, plain: &[u8], patch: usize) -> Vec<u8> {
        let len = plain.len() as u64;
        let mut object = Vec::new();
        let (mut offset, mut tail) = (0u64, None::<Vec<u8>>);
        for piece in plain.chunks(patch) {
            let mut e = Encryptor::resume(cipher(key), len, offset, tail.as_deref()).unwrap();
            e.update(piece, &mut object);
            offset = e.offset();
            tail = e.tail_record();
        }
        assert!(tail.is_none());
        let mut e = Encryptor::resume(cipher(key), len, offset, None).unwrap();
        e.finish(&mut object).unwrap();
        object
    }

    #[test]
    fn round_trips_any_length_and_piece_size() {
        let key = FileKey::generate();
        for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 100] {
            let plaintext: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for pieces in [1, 3, 16, 17, 1000] {
                for object in [
                    encrypt(&key, &plaintext, pieces),
                    encrypt_resumed(&key, &plaintext, pieces),
                ] {
                    assert_eq!(object.len() as u64, Layout::new(16).object_len(len as u64));
                    assert_eq!(
                        decrypt_object(&key, "case_a", "file_b", &object).unwrap(),
                        plaintext,
                        "len {len} pieces {pieces}"
                    );
                }
            }
        }
    }

    #[test]
    fn declared_length_seals_the_last_chunk_without_finish() {
        let key = FileKey::generate();
        let mut e = Encryptor::resume(cipher(&key), 32, 0, None).unwrap();
        let mut out = Vec::new();
        e.update(&[1u8; 32], &mut out);
        assert_eq!(out.len() as u64, Layout::new(16).object_len(32));
        let before = out.len();
        e.finish(&mut out).unwrap();
        assert_eq!(out.len(), before, "nothing after the last chunk");
        let mut short = Encryptor::resume(cipher(&key), 32, 0, None).unwrap();
        short.update(&[1u8; 5], &mut Vec::new());
        assert_eq!(short.finish(&mut Vec::new()), Err(FormatError::Length));
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let key = FileKey::generate();
        let a = encrypt(&key, b"same plaintext", 100);
        let b = encrypt(&key, b"same plaintext", 100);
        assert_ne!(a[32..44], b[32..44]);
    }
}
