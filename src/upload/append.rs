//! One PATCH's working state between opening the upload's object and its
//! last durable point — the sealing pipeline, the object writer, the
//! running hashes and the lease fence — and how the request body ended.

use bytes::Bytes;

use super::UploadError;
use super::checksum::ExpectedChecksum;
use super::hasher::PlainHasher;
use super::lease::Fence;
use super::pipeline::ChunkPipeline;
use super::registry::RunningHashes;
use crate::crypto::format::ObjectDigest;
use crate::db::uploads::UploadRow;
use crate::store::{ObjectWriter, StoreError};

/// One PATCH between opening the object and its last durable point.
pub(super) struct Append {
    pub(super) upload: UploadRow,
    pub(super) pipeline: ChunkPipeline,
    pub(super) writer: ObjectWriter,
    /// The registry's hashes as this request found them.
    pub(super) hash_at_start: Option<RunningHashes>,
    /// The plaintext's hash and the object's digest, running (`None`:
    /// lost in a restart, completion re-hashes).
    pub(super) plain: Option<PlainHasher>,
    pub(super) sealed: Option<ObjectDigest>,
    /// The most plaintext fed to the pipeline at once.
    pub(super) feed_max: usize,
    /// The most object bytes one feed produces (a sealed chunk and the
    /// header).
    pub(super) out_max: usize,
    /// Plaintext offset of the last durable point.
    pub(super) committed: u64,
    /// Stops the writing once another replica may own the upload.
    pub(super) fence: Fence,
}

impl Append {
    /// Seals a frame of plaintext straight into the object writer's buffer:
    /// the plaintext is copied once, into the place its ciphertext is
    /// written from, and sealed there.
    pub(super) async fn seal(&mut self, frame: Bytes) -> Result<(), StoreError> {
        for piece in frame.chunks(self.feed_max) {
            let out = self.writer.buffer(self.out_max).await?;
            let before = out.len();
            self.pipeline.feed(piece, out);
            if out.len() > before {
                if let Some(sealed) = self.sealed.as_mut() {
                    sealed.update(&out[before..]);
                }
                self.writer.appended().await?;
            }
        }
        if let Some(plain) = self.plain.as_mut() {
            plain.update(frame).await;
        }
        Ok(())
    }
}

/// How a request body ended.
#[derive(Debug, Default)]
pub(super) struct BodyEnd {
    /// Why it stopped before its end (a stall or a transport error).
    pub(super) broke_off: Option<String>,
    /// It carried more bytes than the upload has left.
    pub(super) beyond_length: bool,
}

impl BodyEnd {
    /// Whether the whole request must be discarded — bytes beyond
    /// Upload-Length, a checksum that does not match or that could not be
    /// verified — with the error to answer and the reason to audit.
    pub(super) fn discard(
        &self,
        checksum: Option<ExpectedChecksum>,
    ) -> Option<(UploadError, String)> {
        if self.beyond_length {
            return Some((
                UploadError::BeyondLength,
                "more bytes than Upload-Length".to_string(),
            ));
        }
        match (&self.broke_off, checksum?.matches()) {
            (Some(why), _) => Some((
                UploadError::BadRequest(why.clone()),
                format!("{why}; checksum unverifiable, bytes discarded"),
            )),
            (None, false) => Some((
                UploadError::ChecksumMismatch,
                "checksum mismatch, bytes discarded".to_string(),
            )),
            (None, true) => None,
        }
    }
}
