//! Sealing and opening single chunks. A sealed chunk is
//! `nonce (12) ‖ ciphertext ‖ tag (16)`; its associated data is
//!
//! `header (32) ‖ u16 len ‖ case id ‖ u16 len ‖ file id ‖ u64 index ‖ u8 last`
//!
//! (integers big-endian, ids UTF-8, `last` 1 for the final chunk, else 0).
//!
//! Outside the format module a `ChunkCipher` is only a key bound to one
//! object: sealing and opening go through the `Encryptor` and `Decryptor`.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use super::{CHUNK_OVERHEAD, FormatError, HEADER_LEN, NONCE_LEN, ObjectHeader, TAG_LEN};
use crate::crypto::file_key::FileKey;
use crate::random as rng;

pub struct ChunkCipher {
    key: LessSafeKey,
    aad_prefix: Vec<u8>,
    header: ObjectHeader,
}

impl std::fmt::Debug for ChunkCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChunkCipher(<key>)")
    }
}

fn push_id(out: &mut Vec<u8>, id: &str) {
    // Ids are short ASCII; a longer one would be a programming error that
    // the length prefix still encodes unambiguously up to 64 KiB.
    let len = u16::try_from(id.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&id.as_bytes()[..usize::from(len)]);
}

impl ChunkCipher {
    /// A cipher for the object `header` of file `file_id` in case `case_id`.
    /// Fails if `key` is not the key the header names.
    pub fn new(
        key: &FileKey,
        header: ObjectHeader,
        case_id: &str,
        file_id: &str,
    ) -> Result<ChunkCipher, FormatError> {
        if key.id() != &header.key_id {
            return Err(FormatError::WrongKey);
        }
        let unbound =
            UnboundKey::new(&AES_256_GCM, key.secret()).map_err(|_| FormatError::WrongKey)?;
        let mut aad_prefix = Vec::with_capacity(HEADER_LEN + 4 + case_id.len() + file_id.len());
        aad_prefix.extend_from_slice(&header.encode());
        push_id(&mut aad_prefix, case_id);
        push_id(&mut aad_prefix, file_id);
        Ok(ChunkCipher {
            key: LessSafeKey::new(unbound),
            aad_prefix,
            header,
        })
    }

    pub fn header(&self) -> &ObjectHeader {
        &self.header
    }

    fn aad(&self, index: u64, last: bool) -> Vec<u8> {
        let mut aad = Vec::with_capacity(self.aad_prefix.len() + 9);
        aad.extend_from_slice(&self.aad_prefix);
        aad.extend_from_slice(&index.to_be_bytes());
        aad.push(u8::from(last));
        aad
    }

    /// Appends chunk `index` sealed under a fresh random nonce to `out`.
    pub(super) fn seal_into(&self, index: u64, last: bool, plaintext: &[u8], out: &mut Vec<u8>) {
        self.seal_with_nonce(rng::array::<NONCE_LEN>(), index, last, plaintext, out);
    }

    /// Appends chunk `index` sealed under `nonce`. Only the test vectors
    /// choose nonces, so this stays private to the format module; everything
    /// else goes through [`ChunkCipher::seal_into`].
    pub(super) fn seal_with_nonce(
        &self,
        nonce: [u8; NONCE_LEN],
        index: u64,
        last: bool,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) {
        out.reserve(plaintext.len() + CHUNK_OVERHEAD);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let aad = self.aad(index, last);
        match self.key.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad),
            &mut out[start..],
        ) {
            Ok(tag) => out.extend_from_slice(tag.as_ref()),
            // Only possible for inputs above ~64 GiB; chunks are ≤ 1 MiB.
            Err(_) => unreachable!("chunk far below the AES-GCM limit"),
        }
    }

    /// Seals the partial tail of an unfinished upload (chunk `index`, not
    /// yet full). Its associated data ends in flag byte 2 instead of the
    /// last flag 0/1, so a tail record can never pass as a chunk of an
    /// object. Fresh random nonce on every call: a tail is re-sealed each
    /// time it grows.
    pub(super) fn seal_tail(&self, index: u64, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + CHUNK_OVERHEAD);
        let nonce = rng::array::<NONCE_LEN>();
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let aad = self.tail_aad(index);
        match self.key.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad),
            &mut out[NONCE_LEN..],
        ) {
            Ok(tag) => out.extend_from_slice(tag.as_ref()),
            Err(_) => unreachable!("tail far below the AES-GCM limit"),
        }
        out
    }

    /// Opens a tail record sealed by [`ChunkCipher::seal_tail`].
    pub(super) fn open_tail(&self, index: u64, sealed: &[u8]) -> Result<Vec<u8>, FormatError> {
        let mut buf = sealed.to_vec();
        if buf.len() < CHUNK_OVERHEAD
            || buf.len() >= self.header.chunk_size as usize + CHUNK_OVERHEAD
        {
            return Err(FormatError::Length);
        }
        let (nonce, body) = buf.split_at_mut(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| FormatError::Chunk(index))?;
        let aad = self.tail_aad(index);
        let len = self
            .key
            .open_in_place(nonce, Aad::from(&aad), body)
            .map_err(|_| FormatError::Chunk(index))?
            .len();
        Ok(buf[NONCE_LEN..NONCE_LEN + len].to_vec())
    }

    fn tail_aad(&self, index: u64) -> Vec<u8> {
        let mut aad = self.aad(index, false);
        if let Some(flag) = aad.last_mut() {
            *flag = 2;
        }
        aad
    }

    /// Opens sealed chunk `index` in place; returns its plaintext.
    pub(crate) fn open_in_place<'a>(
        &self,
        index: u64,
        last: bool,
        sealed: &'a mut [u8],
    ) -> Result<&'a [u8], FormatError> {
        if sealed.len() < CHUNK_OVERHEAD
            || sealed.len() > self.header.chunk_size as usize + CHUNK_OVERHEAD
        {
            return Err(FormatError::Length);
        }
        let (nonce, body) = sealed.split_at_mut(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| FormatError::Chunk(index))?;
        debug_assert!(body.len() >= TAG_LEN);
        let aad = self.aad(index, last);
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(&aad), body)
            .map_err(|_| FormatError::Chunk(index))?;
        Ok(plain)
    }
}
