//! The one format v1 decryptor: built from the object header as stored (so
//! the chunk size is the object's own), it reads a whole object in order
//! (`fetch`, tests) or any plaintext range, fetching and opening only the
//! chunks the range touches (upload completion, the plaintext download
//! body). Every chunk is opened with its own index and the last flag that
//! follows from the plaintext length, so a reader that stops before the
//! last chunk has not yet proved the object complete.

use std::io::Read;
use std::ops::Range;

use super::{CHUNK_OVERHEAD, ChunkCipher, FormatError, HEADER_LEN, Layout, ObjectHeader};
use crate::crypto::file_key::FileKey;

/// Decrypts one object of a known plaintext length.
#[derive(Debug)]
pub struct Decryptor {
    cipher: ChunkCipher,
    layout: Layout,
    len: u64,
}

/// What to fetch and keep for a plaintext range: only the chunks it touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePlan {
    /// Object bytes to read (whole sealed chunks).
    pub object_range: Range<u64>,
    pub chunks: Range<u64>,
    /// Plaintext bytes to drop from the first chunk.
    pub skip: u64,
    /// Plaintext bytes to return in total.
    pub take: u64,
}

/// A range read failed: fetching the object bytes, or opening them.
#[derive(Debug, thiserror::Error)]
pub enum ReadError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Fetch(E),
    #[error("stored object does not decrypt: {0}")]
    Format(#[from] FormatError),
}

/// A sequential decryption from a reader failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("sealed object is truncated")]
    Truncated,
    #[error("sealed object is longer than expected")]
    Extended,
    #[error("decryption failed: the object was altered ({0})")]
    Format(#[from] FormatError),
    #[error("reading the sealed object: {0}")]
    Input(std::io::Error),
    #[error("writing the plaintext: {0}")]
    Output(std::io::Error),
}

impl Decryptor {
    /// For the object whose first bytes (at least the header) are
    /// `stored_header`, holding `len` plaintext bytes.
    pub fn new(
        key: &FileKey,
        stored_header: &[u8],
        case_id: &str,
        file_id: &str,
        len: u64,
    ) -> Result<Decryptor, FormatError> {
        let header = ObjectHeader::decode(stored_header)?;
        Ok(Decryptor::from_cipher(
            ChunkCipher::new(key, header, case_id, file_id)?,
            len,
        ))
    }

    /// For an object `len` plaintext bytes long, read with `cipher` (built
    /// from the object's header).
    pub fn from_cipher(cipher: ChunkCipher, len: u64) -> Decryptor {
        let layout = Layout::new(cipher.header().chunk_size);
        Decryptor {
            cipher,
            layout,
            len,
        }
    }

    pub fn header(&self) -> &ObjectHeader {
        self.cipher.header()
    }

    pub fn plaintext_len(&self) -> u64 {
        self.len
    }

    pub fn object_len(&self) -> u64 {
        self.layout.object_len(self.len)
    }

    /// Plans reading plaintext bytes `range`; `None` for an empty range.
    /// A range reaching past the plaintext is refused.
    pub fn plan(&self, range: Range<u64>) -> Result<Option<RangePlan>, FormatError> {
        if range.start > range.end || range.end > self.len {
            return Err(FormatError::Range);
        }
        if range.is_empty() {
            return Ok(None);
        }
        let layout = &self.layout;
        let chunks = layout.chunks_for(&range);
        let start = layout.chunk_offset(chunks.start);
        let end = layout.chunk_span(chunks.end - 1, self.len).end;
        Ok(Some(RangePlan {
            object_range: start..end,
            skip: range.start - chunks.start * layout.chunk_size(),
            take: range.end - range.start,
            chunks,
        }))
    }

    /// Opens sealed chunk `index` in place; returns its plaintext.
    pub fn open_chunk<'a>(
        &self,
        index: u64,
        sealed: &'a mut [u8],
    ) -> Result<&'a [u8], FormatError> {
        let last = index + 1 == self.layout.chunk_count(self.len);
        self.cipher.open_in_place(index, last, sealed)
    }

    /// Opens the chunks `plan` fetched (`fetched` = the object bytes of
    /// `plan.object_range`) and returns exactly the planned plaintext.
    pub fn open_planned(
        &self,
        plan: &RangePlan,
        fetched: &mut [u8],
    ) -> Result<Vec<u8>, FormatError> {
        if fetched.len() as u64 != plan.object_range.end - plan.object_range.start {
            return Err(FormatError::Length);
        }
        let mut out = Vec::with_capacity(plan.take as usize);
        let mut rest = fetched;
        for index in plan.chunks.clone() {
            let span = self.layout.chunk_span(index, self.len);
            let (sealed, after) = rest.split_at_mut((span.end - span.start) as usize);
            rest = after;
            let plain = self.open_chunk(index, sealed)?;
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

    /// Plaintext bytes `range`, reading object bytes through `fetch` (one
    /// call, for whole chunks only).
    pub async fn read_range<F, Fut, E>(
        &self,
        range: Range<u64>,
        fetch: F,
    ) -> Result<Vec<u8>, ReadError<E>>
    where
        F: FnOnce(Range<u64>) -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
        E: std::error::Error + 'static,
    {
        let Some(plan) = self.plan(range)? else {
            return Ok(Vec::new());
        };
        let mut fetched = fetch(plan.object_range.clone())
            .await
            .map_err(ReadError::Fetch)?;
        Ok(self.open_planned(&plan, &mut fetched)?)
    }

    /// Opens every chunk from `input` (positioned just after the header)
    /// in order, handing each chunk's plaintext to `sink`, then checks that
    /// nothing follows the last chunk. `sink` sees plaintext before the last
    /// chunk has verified: a caller that must not release an unverified
    /// file holds it back until this returns `Ok`.
    pub fn read_all(
        &self,
        input: &mut impl Read,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(), StreamError> {
        let count = self.layout.chunk_count(self.len);
        let mut buf = vec![0u8; self.header().chunk_size as usize + CHUNK_OVERHEAD];
        for index in 0..count {
            let span = self.layout.chunk_span(index, self.len);
            let sealed = &mut buf[..(span.end - span.start) as usize];
            input
                .read_exact(sealed)
                .map_err(|_| StreamError::Truncated)?;
            sink(self.open_chunk(index, sealed)?).map_err(StreamError::Output)?;
        }
        let mut extra = [0u8; 1];
        match input.read(&mut extra).map_err(StreamError::Input)? {
            0 => Ok(()),
            _ => Err(StreamError::Extended),
        }
    }
}

/// Decrypts a whole object held in memory (tests, vectors, small files);
/// the plaintext length follows from the object's length.
pub fn decrypt_object(
    key: &FileKey,
    case_id: &str,
    file_id: &str,
    object: &[u8],
) -> Result<Vec<u8>, FormatError> {
    let header = ObjectHeader::decode(object)?;
    let cipher = ChunkCipher::new(key, header, case_id, file_id)?;
    let len = Layout::new(header.chunk_size).plaintext_len(object.len() as u64)?;
    let decryptor = Decryptor::from_cipher(cipher, len);
    let mut out = Vec::with_capacity(len as usize);
    let mut body = &object[HEADER_LEN..];
    decryptor
        .read_all(&mut body, |plain| {
            out.extend_from_slice(plain);
            Ok(())
        })
        .map_err(|e| match e {
            StreamError::Format(f) => f,
            _ => FormatError::Length,
        })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::format::Encryptor;

    fn small_header(key: &FileKey) -> ObjectHeader {
        ObjectHeader {
            chunk_size: 16,
            key_id: *key.id(),
        }
    }

    fn encrypt(key: &FileKey, plaintext: &[u8]) -> Vec<u8> {
        let mut enc = Encryptor::with_header(key, small_header(key), "case_a", "file_b").unwrap();
        let mut out = Vec::new();
        enc.update(plaintext, &mut out);
        enc.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn detects_tampering() {
        let key = FileKey::generate();
        let plaintext = vec![9u8; 40];
        let object = encrypt(&key, &plaintext);
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
        let object = encrypt(&key, &plaintext);
        let dec = Decryptor::new(&key, &object, "case_a", "file_b", 100).unwrap();
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
            let plan = dec.plan(a..b).unwrap().unwrap();
            let mut fetched =
                object[plan.object_range.start as usize..plan.object_range.end as usize].to_vec();
            let got = dec.open_planned(&plan, &mut fetched).unwrap();
            assert_eq!(got, &plaintext[a as usize..b as usize], "{a}..{b}");
            assert_eq!(
                plan.chunks.end - plan.chunks.start,
                layout.chunks_for(&(a..b)).count() as u64
            );
        }
        // A single-chunk range fetches one chunk only.
        let plan = dec.plan(20..30).unwrap().unwrap();
        assert_eq!(plan.object_range.end - plan.object_range.start, 16 + 28);
        assert_eq!(dec.plan(7..7), Ok(None));
        assert_eq!(dec.plan(90..101), Err(FormatError::Range));
    }

    #[tokio::test]
    async fn range_reads_through_a_fetch() {
        let key = FileKey::generate();
        let plaintext: Vec<u8> = (0..50u8).collect();
        let object = encrypt(&key, &plaintext);
        let dec = Decryptor::new(&key, &object, "case_a", "file_b", 50).unwrap();
        let got = dec
            .read_range(10..40, |r| {
                let bytes = object[r.start as usize..r.end as usize].to_vec();
                async move { Ok::<_, std::io::Error>(bytes) }
            })
            .await
            .unwrap();
        assert_eq!(got, &plaintext[10..40]);
        let failed = dec
            .read_range(0..1, |_| async { Err(std::io::Error::other("store away")) })
            .await;
        assert!(matches!(failed, Err(ReadError::Fetch(_))));
    }

    #[test]
    fn streams_in_order_and_refuses_truncation_and_extension() {
        let key = FileKey::generate();
        let plaintext: Vec<u8> = (0..40u8).collect();
        let object = encrypt(&key, &plaintext);
        let dec = Decryptor::new(&key, &object, "case_a", "file_b", 40).unwrap();
        let mut out = Vec::new();
        let mut body = &object[HEADER_LEN..];
        dec.read_all(&mut body, |p| {
            out.extend_from_slice(p);
            Ok(())
        })
        .unwrap();
        assert_eq!(out, plaintext);
        let mut short = &object[HEADER_LEN..object.len() - 1];
        assert!(matches!(
            dec.read_all(&mut short, |_| Ok(())),
            Err(StreamError::Truncated)
        ));
        let longer = [&object[HEADER_LEN..], b"x"].concat();
        assert!(matches!(
            dec.read_all(&mut longer.as_slice(), |_| Ok(())),
            Err(StreamError::Extended)
        ));
    }
}
