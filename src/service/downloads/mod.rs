//! Downloads under a grant: the grant's file list, opening one file for a
//! download (its object's header as stored, its key, its sealed or
//! plaintext representation, the range asked for), and the rules that
//! keep a file's downloads within the grant: a request from byte 0 counts
//! as a download, a continuation does not; the bytes served per file stay
//! under `max_downloads × size`, leased before anything is sent and
//! settled at what was actually sent; a running download is re-checked by
//! [`Lease::recheck`] and stops when its grant stops being live.

mod budget;
mod head;
mod keys;
mod lease;
mod range;
mod start;

pub use budget::{Budget, Kind};
pub use head::{PlainReader, read_plain};
pub use lease::{LEASE_TTL_SECS, Lease, Stop};
pub use range::{RangeSpec, Unsatisfiable};
pub use start::{Ask, Download, start, start_as, start_file};

use super::Services;
use super::audit;
use super::grants::GrantError;
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::crypto::CaseKey;
use crate::crypto::format::Layout;
use crate::db;
use crate::db::cases::CaseRow;
use crate::db::centres::CentreRow;
use crate::db::grants::GrantRow;
use crate::ids::{CaseId, FileId};
use crate::manifest::{FILE_META, FileMeta};
use crate::upload::dicom::{DICOM_INDEX, DicomIndex};

/// A file in a grant: its plaintext size, metadata and use count.
pub struct GrantedFile {
    pub file_id: FileId,
    pub size: u64,
    /// The chunk size of its stored object, as recorded at completion.
    pub chunk_size: u32,
    /// The sealed download's `ETag` value.
    pub object_digest: Option<String>,
    pub meta: FileMeta,
    pub downloads: i64,
    /// The DICOMweb index, sealed under the case key (DICOM files
    /// completed since it is recorded).
    pub dicom_index_sealed: Option<Vec<u8>>,
    /// Its SOP instance UID, from the index (the grant's file list names
    /// it, so `fetch` can file the instance as `<study>/<series>/<uid>.dcm`).
    pub sop_instance_uid: Option<String>,
}

impl GrantedFile {
    /// Length of the sealed object (format v1 with the object's own chunk
    /// size), known without asking the store.
    pub fn sealed_size(&self) -> u64 {
        Layout::new(self.chunk_size).object_len(self.size)
    }
}

pub(super) fn internal(what: &str) -> GrantError {
    GrantError::Internal(what.to_owned())
}

async fn case_and_key(svc: &Services, case_id: &CaseId) -> Result<(CaseRow, CaseKey), GrantError> {
    let case = db::cases::get(&svc.db, case_id)
        .await?
        .ok_or(GrantError::NotFound)?;
    let key = svc
        .case_key(&case)
        .map_err(|e| GrantError::Internal(e.to_string()))?;
    Ok((case, key))
}

/// The grant's files (or only `only`), with their metadata opened.
pub(in crate::service) async fn granted_files(
    svc: &Services,
    grant: &GrantRow,
    only: Option<&FileId>,
) -> Result<(CaseKey, Vec<GrantedFile>), GrantError> {
    let (case, case_key) = case_and_key(svc, &grant.case_id).await?;
    let uses = db::grants::files(&svc.db, &grant.grant_id).await?;
    let rows = db::files::list_for_case(&svc.db, &case.case_id).await?;
    let mut out = Vec::new();
    for u in uses.iter().filter(|u| only.is_none_or(|f| *f == u.file_id)) {
        let Some(row) = rows.iter().find(|r| r.file_id == u.file_id) else {
            continue;
        };
        let meta: FileMeta = case_key
            .open_field(
                &case.case_id,
                FILE_META,
                row.file_id.as_str(),
                &row.meta_sealed,
            )
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| internal("file metadata does not open"))?;
        out.push(GrantedFile {
            file_id: row.file_id.clone(),
            size: row.size.max(0) as u64,
            chunk_size: row.chunk_size,
            object_digest: row.object_digest.clone(),
            meta,
            downloads: u.downloads,
            dicom_index_sealed: row.dicom_index_sealed.clone(),
            sop_instance_uid: None,
        });
    }
    Ok((case_key, out))
}

/// The grant's file list for its centre (audited as `grant.read`).
pub async fn grant_files(
    svc: &Services,
    ctx: &RequestContext,
    grant: &GrantRow,
    centre: &CentreRow,
) -> Result<Vec<GrantedFile>, GrantError> {
    let (case_key, mut files) = granted_files(svc, grant, None).await?;
    for file in &mut files {
        file.sop_instance_uid = file.dicom_index_sealed.as_ref().and_then(|sealed| {
            let index: DicomIndex = case_key
                .open_field(&grant.case_id, DICOM_INDEX, file.file_id.as_str(), sealed)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())?;
            Some(index.sop_instance_uid).filter(|uid| !uid.is_empty())
        });
    }
    let entry = NewEntry::new("grant.read", Outcome::Allow)
        .case(&grant.case_id)
        .centre(&centre.centre_id)
        .grant(&grant.grant_id);
    audit::record(svc, ctx, entry).await?;
    Ok(files)
}
