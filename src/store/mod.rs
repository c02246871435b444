//! Object storage for ciphertext. Keys are `cases/<case_id>/<file_id>`
//! (built from validated ids only). The `fs` backend is a directory; the S3
//! backend and streaming/multipart writes arrive with resumable uploads.

pub mod fs;

pub use fs::FsStore;

use crate::ids::{CaseId, FileId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object not found")]
    NotFound,
    #[error("object store: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid object key")]
    BadKey,
}

/// The object key of a file's ciphertext.
pub fn object_key(case_id: &CaseId, file_id: &FileId) -> String {
    format!("cases/{case_id}/{file_id}")
}

/// The key prefix of everything belonging to a case.
pub fn case_prefix(case_id: &CaseId) -> String {
    format!("cases/{case_id}/")
}
