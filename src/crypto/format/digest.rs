//! The object digest: a strong validator of a stored object (the sealed
//! download's `ETag`) computed without a second pass over its bytes.
//!
//! SHA-256 over the 32-byte header, then, for every chunk in order, its
//! nonce (the chunk's first 12 bytes) and its tag (its last 16 bytes):
//! 28 bytes per 64 KiB chunk. Every write of a chunk draws a fresh random
//! nonce and the tag authenticates the chunk's ciphertext, its index and
//! the header, so any object the gateway writes differently has another
//! digest; bytes changed by anything else no longer decrypt. The plaintext
//! SHA-256 stays the chain-of-custody value. docs/format.md specifies it.

use ring::digest::{Context, SHA256};

use super::{HEADER_LEN, Layout, NONCE_LEN, TAG_LEN};

/// The digest of an object fed in order, in pieces of any size.
#[derive(Clone)]
pub struct ObjectDigest {
    hash: Context,
    /// Object bytes seen so far.
    seen: u64,
    sealed_chunk_len: u64,
    /// The last bytes seen of the current chunk past its nonce: its tag
    /// once the chunk ends.
    last: [u8; TAG_LEN],
}

impl std::fmt::Debug for ObjectDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectDigest({} bytes)", self.seen)
    }
}

impl ObjectDigest {
    pub fn new(layout: Layout) -> ObjectDigest {
        ObjectDigest {
            hash: Context::new(&SHA256),
            seen: 0,
            sealed_chunk_len: layout.sealed_chunk_len(),
            last: [0; TAG_LEN],
        }
    }

    /// Where the next byte falls in its chunk (`None`: in the header).
    fn chunk_offset(&self) -> Option<u64> {
        (self.seen >= HEADER_LEN as u64)
            .then(|| (self.seen - HEADER_LEN as u64) % self.sealed_chunk_len)
    }

    /// Feeds the next object bytes.
    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let take = match self.chunk_offset() {
                None => {
                    let take = (HEADER_LEN as u64 - self.seen).min(bytes.len() as u64) as usize;
                    self.hash.update(&bytes[..take]);
                    take
                }
                Some(at) if at < NONCE_LEN as u64 => {
                    let take = (NONCE_LEN as u64 - at).min(bytes.len() as u64) as usize;
                    self.hash.update(&bytes[..take]);
                    take
                }
                Some(at) => {
                    let take = (self.sealed_chunk_len - at).min(bytes.len() as u64) as usize;
                    self.keep_last(&bytes[..take]);
                    if at + take as u64 == self.sealed_chunk_len {
                        self.hash.update(&self.last);
                    }
                    take
                }
            };
            self.seen += take as u64;
            bytes = &bytes[take..];
        }
    }

    fn keep_last(&mut self, piece: &[u8]) {
        if piece.len() >= TAG_LEN {
            self.last.copy_from_slice(&piece[piece.len() - TAG_LEN..]);
        } else {
            self.last.rotate_left(piece.len());
            self.last[TAG_LEN - piece.len()..].copy_from_slice(piece);
        }
    }

    /// The digest of the object fed so far, which ends with its last
    /// chunk (a full one, or the shorter final chunk).
    pub fn finish(self) -> [u8; 32] {
        let open_chunk = self.chunk_offset().is_some_and(|at| at > NONCE_LEN as u64);
        let mut hash = self.hash;
        if open_chunk {
            hash.update(&self.last);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(hash.finish().as_ref());
        out
    }

    /// [`finish`](ObjectDigest::finish) as lowercase hex, the `ETag`'s
    /// value.
    pub fn finish_hex(self) -> String {
        crate::hex::encode(&self.finish())
    }
}

/// The digest of a whole object in memory.
pub fn object_digest(layout: Layout, object: &[u8]) -> [u8; 32] {
    let mut digest = ObjectDigest::new(layout);
    digest.update(object);
    digest.finish()
}

#[cfg(test)]
mod tests {
    use ring::digest::{SHA256, digest};

    use super::*;
    use crate::crypto::format::CHUNK_OVERHEAD;

    /// The definition, written out: header, then each chunk's nonce and tag.
    fn by_definition(layout: Layout, object: &[u8]) -> [u8; 32] {
        let mut input = object[..HEADER_LEN].to_vec();
        for chunk in object[HEADER_LEN..].chunks(layout.sealed_chunk_len() as usize) {
            assert!(chunk.len() >= CHUNK_OVERHEAD);
            input.extend_from_slice(&chunk[..NONCE_LEN]);
            input.extend_from_slice(&chunk[chunk.len() - TAG_LEN..]);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(digest(&SHA256, &input).as_ref());
        out
    }

    /// Object-shaped bytes (the digest reads positions, not ciphertext).
    fn object(layout: Layout, plain_len: u64) -> Vec<u8> {
        let len = layout.object_len(plain_len);
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn any_split_gives_the_definition() {
        let layout = Layout::new(64);
        for plain_len in [0, 1, 15, 16, 63, 64, 65, 128, 129, 640, 1000] {
            let object = object(layout, plain_len);
            let expected = by_definition(layout, &object);
            assert_eq!(object_digest(layout, &object), expected, "{plain_len}");
            for piece in [1, 2, 5, 13, 28, 91, 92, 93, 500] {
                let mut digest = ObjectDigest::new(layout);
                for part in object.chunks(piece) {
                    digest.update(part);
                }
                assert_eq!(digest.finish(), expected, "{plain_len} in {piece}s");
            }
        }
    }

    /// A copy taken mid-object (the running digest kept between PATCHes)
    /// goes on where it was.
    #[test]
    fn a_clone_continues() {
        let layout = Layout::new(64);
        let object = object(layout, 300);
        let mut first = ObjectDigest::new(layout);
        first.update(&object[..150]);
        let mut second = first.clone();
        second.update(&object[150..]);
        assert_eq!(second.finish(), by_definition(layout, &object));
    }

    /// A changed nonce, tag or header changes it; the digest is not a
    /// SHA-256 of the whole object.
    #[test]
    fn nonce_tag_and_header_count() {
        let layout = Layout::new(64);
        let object = object(layout, 200);
        let base = object_digest(layout, &object);
        let sealed = layout.sealed_chunk_len() as usize;
        for at in [0, HEADER_LEN + 3, HEADER_LEN + sealed - 1, object.len() - 1] {
            let mut changed = object.clone();
            changed[at] ^= 1;
            assert_ne!(object_digest(layout, &changed), base, "byte {at}");
        }
        assert_ne!(base.as_ref(), digest(&SHA256, &object).as_ref());
    }
}
