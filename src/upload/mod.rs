//! Resumable encrypted uploads (tus 1.0 semantics, transport-free): create,
//! append (PATCH), complete, terminate, expire. Bytes are sealed into object
//! format v1 as they arrive; the durable state of an upload is its database
//! row (offset, sealed tail, the store's resume token) written after the store
//! synced.
//! The HTTP mapping lives in `http::tus`.

mod append;
pub mod checksum;
pub mod complete;
pub mod create;
pub mod dicom;
pub mod hasher;
pub mod lease;
pub mod lifecycle;
pub mod metadata;
pub mod owner;
pub mod patch;
pub mod pipeline;
pub mod registry;

use std::sync::Arc;

use crate::audit::{NewEntry, RequestContext};
use crate::clock::{SharedClock, Timestamp};
use crate::config::Config;
use crate::crypto::format::{ChunkCipher, ObjectHeader};
use crate::crypto::{CaseKey, KeyEncryptionKey, Keyring};
use crate::db::{self, Db, DbError, Tx, cases::CaseRow, uploads::UploadRow};
use crate::store::{ObjectStore, StoreError};
pub use registry::UploadRegistry;

/// What can go wrong with an upload request; mapped to tus status codes in
/// one place (`http::tus`).
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("no such upload")]
    NotFound,
    #[error("the upload has expired or was terminated")]
    Gone,
    #[error("another request is writing this upload")]
    Locked,
    #[error("this gateway lost the upload's lease; resume from the stored offset")]
    LeaseLost,
    #[error("Upload-Offset {sent} does not match the stored offset {stored}")]
    OffsetMismatch { sent: u64, stored: u64 },
    #[error("more bytes than Upload-Length")]
    BeyondLength,
    #[error("Upload-Length is over the maximum upload size")]
    OverMaxSize,
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("too many uploads running for this case")]
    TooManyRunning,
    #[error("checksum mismatch; the bytes of this request were discarded")]
    ChecksumMismatch,
    #[error("{0}")]
    BadRequest(String),
    #[error("storage unavailable: {0}")]
    Db(#[from] DbError),
    #[error("storage unavailable: {0}")]
    Store(#[from] StoreError),
    #[error("the audit log cannot be written")]
    Audit,
    #[error("internal error: {0}")]
    Internal(String),
}

/// A transaction that carries an audit entry could not be opened or
/// committed (disk full, database locked): the action is refused as the
/// audit log's, logged here with the cause.
pub(crate) fn audit_unavailable(e: impl std::fmt::Display) -> UploadError {
    tracing::error!(error = %e, "audited transaction failed; refusing the action");
    UploadError::Audit
}

/// The upload service: everything an upload request needs.
#[derive(Clone)]
pub struct Uploads {
    pub db: Db,
    pub store: ObjectStore,
    pub kek: Arc<dyn KeyEncryptionKey>,
    pub clock: SharedClock,
    pub config: Arc<Config>,
    pub registry: Arc<UploadRegistry>,
}

impl Uploads {
    pub fn now(&self) -> Timestamp {
        self.clock.timestamp()
    }

    /// When an upload touched now expires.
    pub fn next_expiry(&self) -> Timestamp {
        self.now().plus_secs(self.config.uploads.upload_ttl_secs)
    }

    pub fn case_key(&self, case: &CaseRow) -> Result<CaseKey, UploadError> {
        self.keyring()
            .case_key(&case.case_id, &case.wrapped_key)
            .map_err(|_| {
                UploadError::Internal(format!("case {} key does not unwrap", case.case_id))
            })
    }

    fn keyring(&self) -> Keyring {
        Keyring::new(self.kek.clone())
    }

    /// The chunk cipher of an upload's object.
    pub async fn cipher(
        &self,
        case_key: &CaseKey,
        upload: &UploadRow,
    ) -> Result<ChunkCipher, UploadError> {
        let (key_id, wrapped) = db::files::wrapped_key(&self.db, &upload.case_id, &upload.file_id)
            .await?
            .ok_or_else(|| UploadError::Internal(format!("file {} has no key", upload.file_id)))?;
        self.keyring()
            .file_cipher(
                case_key,
                &upload.case_id,
                &upload.file_id,
                key_id,
                &wrapped,
                ObjectHeader::new(key_id),
            )
            .map_err(|_| {
                UploadError::Internal(format!("file {} key does not unwrap", upload.file_id))
            })
    }

    /// Appends an audit entry in `tx` (fail closed: an error refuses the
    /// action; `db::audit` logs the cause).
    pub async fn audit_in(
        &self,
        tx: &mut Tx<'_>,
        ctx: &RequestContext,
        entry: &NewEntry,
    ) -> Result<(), UploadError> {
        db::audit::append(&self.db, tx, ctx, self.now(), entry)
            .await
            .map_err(|_| UploadError::Audit)?;
        Ok(())
    }

    /// Records an entry on its own.
    pub async fn audit(&self, ctx: &RequestContext, entry: NewEntry) -> Result<(), UploadError> {
        db::audit::record(&self.db, ctx, self.now(), &entry)
            .await
            .map_err(|_| UploadError::Audit)?;
        Ok(())
    }
}
