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

use std::ops::Range;

pub use budget::{Budget, Kind};
pub use head::read_plain;
pub use lease::{LEASE_TTL_SECS, Lease, Stop};
pub use range::{RangeSpec, Unsatisfiable};

use super::Services;
use super::audit::{self, centre_alerts};
use super::grants::GrantError;
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::crypto::CaseKey;
use crate::crypto::format::{ChunkCipher, HEADER_LEN, Layout};
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

/// A download the grant allows, its use counted and its bytes leased:
/// everything the response needs.
pub struct Download {
    pub file_id: FileId,
    pub kind: Kind,
    /// The audit action of its entries (the route it was asked on).
    pub action: &'static str,
    /// Plaintext size of the file.
    pub size: u64,
    /// Length of the representation served.
    pub total: u64,
    /// The bytes served.
    pub span: Range<u64>,
    /// Whether a range was asked for (206 with `Content-Range`).
    pub partial: bool,
    /// SHA-256 (hex) of what is served, if known: of the plaintext or of
    /// the sealed object.
    pub sha256: Option<String>,
    pub filename: String,
    /// The file key sealed to the centre (sealed downloads), encoded for
    /// the `Casegate-Sealed-Key` header.
    pub sealed_key: Option<String>,
    /// The object's chunk cipher, for the header as stored (plaintext
    /// downloads decrypt with it, at the object's own chunk size).
    pub cipher: ChunkCipher,
    pub lease: Lease,
}

/// A grant's view of one download: what its refusals and entries name.
struct Attempt<'a> {
    svc: &'a Services,
    ctx: &'a RequestContext,
    grant: &'a GrantRow,
    centre: &'a CentreRow,
    file_id: &'a FileId,
    kind: Kind,
    action: &'static str,
}

impl Attempt<'_> {
    fn entry(&self, outcome: Outcome) -> NewEntry {
        NewEntry::new(self.action, outcome)
            .case(&self.grant.case_id)
            .centre(&self.centre.centre_id)
            .grant(&self.grant.grant_id)
    }

    /// The span of a representation of `total` bytes the range asks for
    /// (`None`: all of it), and the object's header as stored (its first
    /// [`HEADER_LEN`] bytes: the chunk size and key id to read it with).
    /// The store must answer before a use is counted: a download asked for
    /// while it is away gets 503 and costs nothing, instead of a 200 cut at
    /// 0 bytes that used up one of the grant's downloads.
    async fn servable(
        &self,
        total: u64,
        range: Result<Option<RangeSpec>, Unsatisfiable>,
    ) -> Result<(Option<Range<u64>>, Vec<u8>), GrantError> {
        let file_id = self.file_id;
        let Ok(requested) = range.and_then(|r| r.map(|r| r.resolve(total)).transpose()) else {
            let reason = format!("range not satisfiable for {file_id}");
            let error = GrantError::RangeNotSatisfiable(total);
            return Err(self.refuse(reason, error).await);
        };
        let key = crate::store::object_key(&self.grant.case_id, file_id);
        match self.svc.store.get_range(&key, 0..HEADER_LEN as u64).await {
            Ok(header) => Ok((requested, header)),
            Err(e) => {
                tracing::warn!(error = %e, "object store unavailable for a download");
                let reason = format!("object store unavailable for {file_id}");
                Err(self.refuse(reason, GrantError::StorageUnavailable).await)
            }
        }
    }

    /// Audits a refusal and returns its error.
    async fn refuse(&self, reason: String, error: GrantError) -> GrantError {
        let entry = self.entry(Outcome::Deny).file(self.file_id).reason(reason);
        match audit::record(self.svc, self.ctx, entry).await {
            Ok(()) => error,
            Err(e) => e.into(),
        }
    }
}

/// Opens a file of the grant for a download of `kind`: finds it in the
/// grant, resolves the range, reads the object's header from the store and
/// opens the keys for it, then counts the use and leases the bytes in one
/// audited transaction. Each refusal is audited with its reason.
pub async fn start(
    svc: &Services,
    ctx: &RequestContext,
    grant: (&GrantRow, &CentreRow),
    file_id: &FileId,
    kind: Kind,
    range: Result<Option<RangeSpec>, Unsatisfiable>,
) -> Result<Download, GrantError> {
    start_as(svc, ctx, grant, file_id, (kind, kind.action()), range).await
}

/// [`start`], audited under `action` (a DICOMweb retrieval is a plaintext
/// download asked for on another route).
pub async fn start_as(
    svc: &Services,
    ctx: &RequestContext,
    (grant, centre): (&GrantRow, &CentreRow),
    file_id: &FileId,
    (kind, action): (Kind, &'static str),
    range: Result<Option<RangeSpec>, Unsatisfiable>,
) -> Result<Download, GrantError> {
    let at = Attempt {
        svc,
        ctx,
        grant,
        centre,
        file_id,
        kind,
        action,
    };
    let (case_key, mut files) = granted_files(svc, grant, Some(file_id)).await?;
    let Some(file) = files.pop() else {
        let reason = format!("file {file_id} is not in the grant");
        let entry = at.entry(Outcome::Deny).reason(reason);
        audit::record(svc, ctx, entry).await?;
        centre_alerts::outside_grant(svc, ctx, (grant, centre), file_id).await;
        return Err(GrantError::NotFound);
    };
    let total = match kind {
        Kind::Plaintext => file.size,
        Kind::Sealed => file.sealed_size(),
    };
    let (requested, stored_header) = at.servable(total, range).await?;
    let span = requested.clone().unwrap_or(0..total);
    let budget = Budget {
        kind,
        size: file.size,
        total,
    };
    // Keys before the use is counted: a file whose key does not open costs
    // the grant nothing.
    let opened =
        keys::open_keys(svc, &case_key, (grant, centre), &file, &stored_header, kind).await?;
    // Before the lease: nothing may wait between a committed lease and the
    // body that settles it if the client goes away.
    let upcoming = budget.charge(span.end - span.start);
    centre_alerts::download_starting(svc, ctx, (grant, centre), file_id, file.size, upcoming).await;
    let lease = reserve(&at, &file, budget, &span).await?;
    Ok(Download {
        file_id: file_id.clone(),
        kind,
        action,
        size: file.size,
        total,
        partial: requested.is_some(),
        span,
        sha256: match kind {
            Kind::Plaintext => file.meta.sha256,
            Kind::Sealed => opened.object_sha256,
        },
        filename: file.meta.filename,
        sealed_key: opened.sealed_key,
        cipher: opened.cipher,
        lease,
    })
}

/// Counts the use (a request from byte 0) and leases the span's bytes of
/// the file's budget, with the download event and its audit entry, in one
/// transaction. Refused when the grant's downloads of the file are used up.
async fn reserve(
    at: &Attempt<'_>,
    file: &GrantedFile,
    budget: Budget,
    span: &Range<u64>,
) -> Result<Lease, GrantError> {
    let (svc, grant, file_id) = (at.svc, at.grant, at.file_id);
    let starts = span.start == 0;
    let now = svc.timestamp().unix_seconds();
    let mut tx = audit::begin(svc).await?;
    let Some(lease) = db::grants::reserve(
        &mut tx,
        &grant.grant_id,
        file_id,
        starts,
        budget.charge(span.end - span.start),
        grant.max_downloads,
        file.size as i64,
        now,
        now - LEASE_TTL_SECS,
    )
    .await?
    else {
        drop(tx);
        let reason = format!("downloads of {file_id} used up");
        let refused = at.refuse(reason, GrantError::Exhausted).await;
        centre_alerts::download_exhausted(svc, at.ctx, (grant, at.centre), file_id).await;
        return Err(refused);
    };
    let event = db::disclosures::DownloadEvent {
        grant,
        file_id,
        lease,
        at: svc.timestamp(),
        kind: at.kind.as_str(),
        range_start: span.start as i64,
        bytes: (span.end - span.start) as i64,
        total: budget.total as i64,
    };
    let event_id = db::disclosures::record_download(&mut tx, &event).await?;
    let entry = at.entry(Outcome::Allow).file(file_id).reason(format!(
        "start: bytes {}-{} of {}{}",
        span.start,
        span.end.saturating_sub(1),
        budget.total,
        if starts { "" } else { " (continuation)" }
    ));
    let seq = audit::append(svc, &mut tx, at.ctx, &entry).await?;
    db::disclosures::set_start_entry(&mut tx, event_id, seq).await?;
    audit::commit_appended(tx).await?;
    Ok(Lease {
        id: lease,
        grant_id: grant.grant_id.clone(),
        budget,
    })
}
