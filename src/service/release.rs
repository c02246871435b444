//! Returning documents to the patient: a coordinator releases a file of a
//! case — a centre's written opinion or a coordinator's translation — and
//! from then on the patient's token can download it, decrypted, until the
//! case is deleted. Nothing reaches the patient without a release. The
//! patient's own uploads are not released back (they are the patient's
//! already); unfinished files cannot be released. A second release of the
//! same file changes nothing and is answered like the first.

use std::ops::Range;

use super::Services;
use super::audit::{self, AuditError};
use super::downloads::{RangeSpec, Unsatisfiable};
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::crypto::format::{ChunkCipher, HEADER_LEN, ObjectHeader};
use crate::db::cases::CaseRow;
use crate::db::centres::CentreRow;
use crate::db::files::{FileRow, Source};
use crate::db::grants::GrantRow;
use crate::db::{self, DbError};
use crate::ids::{CaseId, FileId};
use crate::manifest::{self, FILE_META, FileMeta, ManifestError, ManifestFile, View};

/// The release service's one error.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("range not satisfiable")]
    RangeNotSatisfiable(u64),
    #[error("storage is unavailable")]
    StorageUnavailable,
    /// Ours: a key or stored value that does not open.
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Db(#[from] DbError),
}

const RELEASE: &str = "file.release";
const DOWNLOAD: &str = "patient.download";

/// Audits a refusal of `action` on a file of a case and returns `error`.
async fn refuse(
    svc: &Services,
    ctx: &RequestContext,
    entry: NewEntry,
    error: ReleaseError,
) -> ReleaseError {
    match audit::record(svc, ctx, entry).await {
        Ok(()) => error,
        Err(e) => e.into(),
    }
}

/// Releases a complete centre or coordinator file of an open case to the
/// case's patient (idempotent).
pub async fn release(
    svc: &Services,
    ctx: &RequestContext,
    case_id: &CaseId,
    file_id: &FileId,
) -> Result<(), ReleaseError> {
    let deny = |reason: &str| {
        NewEntry::new(RELEASE, Outcome::Deny)
            .case(case_id)
            .file(file_id)
            .reason(reason)
    };
    let file = match db::cases::get(&svc.db, case_id).await? {
        Some(_) => db::files::get(&svc.db, case_id, file_id).await?,
        None => None,
    };
    let Some(file) = file else {
        let entry = deny("no such file in an open case");
        return Err(refuse(svc, ctx, entry, ReleaseError::NotFound).await);
    };
    if file.source == Source::Patient {
        let entry = deny("the patient's own upload is not released back");
        let error = ReleaseError::Conflict("the file is the patient's own upload".into());
        return Err(refuse(svc, ctx, entry, error).await);
    }
    if file.state != "complete" {
        let entry = deny(&format!("file is {}, not complete", file.state));
        let error = ReleaseError::Conflict("only a complete file can be released".into());
        return Err(refuse(svc, ctx, entry, error).await);
    }
    let mut tx = audit::begin(svc).await?;
    let first = db::files::release(&mut tx, case_id, file_id, svc.timestamp(), &ctx.actor).await?;
    let mut entry = NewEntry::new(RELEASE, Outcome::Allow)
        .case(case_id)
        .file(file_id)
        .reason(if first {
            format!("released to the patient; from the {}", file.source.kind())
        } else {
            "already released".to_owned()
        });
    if let Some(centre) = file.source.centre_id() {
        entry = entry.centre(centre);
    }
    audit::commit(svc, tx, ctx, entry).await?;
    Ok(())
}

/// What a centre uploaded itself into its grant's case (its replies, in
/// any state, so `casegate reply` can resume and the centre can check what
/// arrived). Other centres' replies are never listed.
pub async fn centre_replies(
    svc: &Services,
    (grant, centre): (&GrantRow, &CentreRow),
) -> Result<Vec<ManifestFile>, ReleaseError> {
    let case = db::cases::get(&svc.db, &grant.case_id)
        .await?
        .ok_or(ReleaseError::NotFound)?;
    let key = svc
        .case_key(&case)
        .map_err(|e| ReleaseError::Internal(e.to_string()))?;
    let view = View::Centre(centre.centre_id.clone());
    match manifest::build(&svc.db, &key, &case, &view).await {
        Ok(m) => Ok(m.files),
        Err(ManifestError::Db(e)) => Err(e.into()),
        Err(e) => Err(ReleaseError::Internal(e.to_string())),
    }
}

/// A released file opened for the patient: everything the response needs.
pub struct PatientDownload {
    pub file_id: FileId,
    /// Plaintext size.
    pub size: u64,
    pub span: Range<u64>,
    /// Whether a range was asked for (206).
    pub partial: bool,
    /// SHA-256 (hex) of the plaintext.
    pub sha256: Option<String>,
    pub filename: String,
    /// The object's chunk cipher, for its header as stored.
    pub cipher: ChunkCipher,
}

/// Opens a file released to `case`'s patient for a download of `range`
/// (audited `patient.download`). A file that is not released, or not in
/// the case, is not found — the patient learns nothing of it.
pub async fn open_for_patient(
    svc: &Services,
    ctx: &RequestContext,
    case: &CaseRow,
    file_id: &FileId,
    range: Result<Option<RangeSpec>, Unsatisfiable>,
) -> Result<PatientDownload, ReleaseError> {
    let case_id = &case.case_id;
    let deny = |reason: String| {
        NewEntry::new(DOWNLOAD, Outcome::Deny)
            .case(case_id)
            .file(file_id)
            .reason(reason)
    };
    let file = db::files::get(&svc.db, case_id, file_id).await?;
    let Some(file) = file.filter(|f| f.released_at.is_some() && f.state == "complete") else {
        let entry = deny("no file released to the patient with this id".into());
        return Err(refuse(svc, ctx, entry, ReleaseError::NotFound).await);
    };
    let size = file.size.max(0) as u64;
    let requested = match range.and_then(|r| r.map(|r| r.resolve(size)).transpose()) {
        Ok(r) => r,
        Err(Unsatisfiable) => {
            let entry = deny("range not satisfiable".into());
            let error = ReleaseError::RangeNotSatisfiable(size);
            return Err(refuse(svc, ctx, entry, error).await);
        }
    };
    let (meta, cipher) = open_file(svc, case, &file).await?;
    let span = requested.clone().unwrap_or(0..size);
    let entry = NewEntry::new(DOWNLOAD, Outcome::Allow)
        .case(case_id)
        .file(file_id)
        .reason(format!(
            "bytes {}-{} of {size}{}",
            span.start,
            span.end.saturating_sub(1),
            if span.start == 0 {
                ""
            } else {
                " (continuation)"
            }
        ));
    audit::record(svc, ctx, entry).await?;
    Ok(PatientDownload {
        file_id: file_id.clone(),
        size,
        partial: requested.is_some(),
        span,
        sha256: meta.sha256,
        filename: meta.filename,
        cipher,
    })
}

/// The file's metadata and its object's chunk cipher, for the header as
/// the store holds it (checked against the file's key and chunk size).
async fn open_file(
    svc: &Services,
    case: &CaseRow,
    file: &FileRow,
) -> Result<(FileMeta, ChunkCipher), ReleaseError> {
    let (case_id, file_id) = (&case.case_id, &file.file_id);
    let internal = |what: &str| ReleaseError::Internal(format!("file {file_id}: {what}"));
    let case_key = svc
        .case_key(case)
        .map_err(|e| ReleaseError::Internal(e.to_string()))?;
    let meta: FileMeta = case_key
        .open_field(case_id, FILE_META, file_id.as_str(), &file.meta_sealed)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| internal("metadata does not open"))?;
    let (key_id, wrapped) = db::files::wrapped_key(&svc.db, case_id, file_id)
        .await?
        .ok_or_else(|| internal("no key"))?;
    let key = crate::store::object_key(case_id, file_id);
    let stored = svc
        .store
        .get_range(&key, 0..HEADER_LEN as u64)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "object store unavailable for a patient download");
            ReleaseError::StorageUnavailable
        })?;
    let header = ObjectHeader::decode(&stored).map_err(|_| internal("header"))?;
    if header.key_id != key_id || header.chunk_size != file.chunk_size {
        return Err(internal("stored header does not match the record"));
    }
    let file_key = svc
        .keyring
        .file_key(&case_key, case_id, file_id, key_id, &wrapped)
        .map_err(|_| internal("file key does not unwrap"))?;
    let cipher = ChunkCipher::new(&file_key, header, case_id.as_str(), file_id.as_str())
        .map_err(|_| internal("chunk cipher"))?;
    Ok((meta, cipher))
}
