//! Starting a download under a grant: the bytes asked for resolved against
//! the representation, the object's header read and its keys opened, then
//! the use counted and the bytes leased in one audited transaction. A
//! caller that already holds the grant's files and the case key (a
//! DICOMweb retrieval sending many files in one answer) starts each file
//! from them ([`start_file`]) instead of listing the grant again.

use std::ops::Range;

use super::{
    Budget, GrantedFile, Kind, LEASE_TTL_SECS, Lease, RangeSpec, Unsatisfiable, granted_files, keys,
};
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::crypto::CaseKey;
use crate::crypto::format::{ChunkCipher, HEADER_LEN};
use crate::db;
use crate::db::centres::CentreRow;
use crate::db::grants::GrantRow;
use crate::ids::FileId;
use crate::service::Services;
use crate::service::audit::{self, centre_alerts};
use crate::service::grants::GrantError;

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
    /// The bytes served (for [`Ask::Pieces`], the span that holds them).
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

/// Which bytes of a file a download sends.
pub enum Ask<'a> {
    /// The `Range` header's (`None`: the whole representation).
    Range(Result<Option<RangeSpec>, Unsatisfiable>),
    /// Pieces of the plaintext, in order (a DICOMweb frames answer: the
    /// fragments of the frames asked for). Never a new use of the file:
    /// one lease covers their bytes, each charged to the file's budget.
    Pieces(&'a [Range<u64>]),
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

/// What a download leases: the span of the representation it covers and
/// how many of those bytes it sends.
struct Leased {
    span: Range<u64>,
    bytes: u64,
}

impl Attempt<'_> {
    fn entry(&self, outcome: Outcome) -> NewEntry {
        NewEntry::new(self.action, outcome)
            .case(&self.grant.case_id)
            .centre(&self.centre.centre_id)
            .grant(&self.grant.grant_id)
    }

    /// What `ask` leases of a representation of `total` bytes (`None`: a
    /// range, all of it), or its refusal (416 for a range outside).
    async fn resolve(&self, total: u64, ask: Ask<'_>) -> Result<Option<Leased>, GrantError> {
        let file_id = self.file_id;
        let resolved = match ask {
            Ask::Range(range) => range
                .and_then(|r| r.map(|r| r.resolve(total)).transpose())
                .map(|span| {
                    span.map(|span| Leased {
                        bytes: span.end - span.start,
                        span,
                    })
                }),
            Ask::Pieces(pieces) => pieces_within(pieces, total).map(Some),
        };
        match resolved {
            Ok(leased) => Ok(leased),
            Err(Unsatisfiable) => {
                let reason = format!("range not satisfiable for {file_id}");
                let error = GrantError::RangeNotSatisfiable(total);
                Err(self.refuse(reason, error).await)
            }
        }
    }

    /// The object's header as stored (its first [`HEADER_LEN`] bytes: the
    /// chunk size and key id to read it with). The store must answer
    /// before a use is counted: a download asked for while it is away gets
    /// 503 and costs nothing, instead of a 200 cut at 0 bytes that used up
    /// one of the grant's downloads.
    async fn stored_header(&self) -> Result<Vec<u8>, GrantError> {
        let file_id = self.file_id;
        let key = crate::store::object_key(&self.grant.case_id, file_id);
        match self.svc.store.get_range(&key, 0..HEADER_LEN as u64).await {
            Ok(header) => Ok(header),
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

/// The span holding `pieces` and their total length, if every piece is a
/// non-empty range inside the representation (checked arithmetic: the
/// pieces come from a file's own claims).
fn pieces_within(pieces: &[Range<u64>], total: u64) -> Result<Leased, Unsatisfiable> {
    let (mut start, mut end, mut bytes) = (u64::MAX, 0u64, 0u64);
    for piece in pieces {
        if piece.start >= piece.end || piece.end > total {
            return Err(Unsatisfiable);
        }
        start = start.min(piece.start);
        end = end.max(piece.end);
        bytes = bytes
            .checked_add(piece.end - piece.start)
            .ok_or(Unsatisfiable)?;
    }
    if pieces.is_empty() {
        return Err(Unsatisfiable);
    }
    Ok(Leased {
        span: start..end,
        bytes,
    })
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
    let (case_key, mut files) = granted_files(svc, grant, Some(file_id)).await?;
    let Some(file) = files.pop() else {
        let reason = format!("file {file_id} is not in the grant");
        let entry = NewEntry::new(action, Outcome::Deny)
            .case(&grant.case_id)
            .centre(&centre.centre_id)
            .grant(&grant.grant_id)
            .reason(reason);
        audit::record(svc, ctx, entry).await?;
        centre_alerts::outside_grant(svc, ctx, (grant, centre), file_id).await;
        return Err(GrantError::NotFound);
    };
    let what = (&case_key, &file);
    start_file(
        svc,
        ctx,
        (grant, centre),
        what,
        (kind, action),
        Ask::Range(range),
    )
    .await
}

/// [`start_as`] for a file the caller already found in the grant (with the
/// case key that opens it): no second listing of the grant's files.
pub async fn start_file(
    svc: &Services,
    ctx: &RequestContext,
    (grant, centre): (&GrantRow, &CentreRow),
    (case_key, file): (&CaseKey, &GrantedFile),
    (kind, action): (Kind, &'static str),
    ask: Ask<'_>,
) -> Result<Download, GrantError> {
    let file_id = &file.file_id;
    let at = Attempt {
        svc,
        ctx,
        grant,
        centre,
        file_id,
        kind,
        action,
    };
    let total = match kind {
        Kind::Plaintext => file.size,
        Kind::Sealed => file.sealed_size(),
    };
    let requested = at.resolve(total, ask).await?;
    let stored_header = at.stored_header().await?;
    let partial = requested.is_some();
    let leased = requested.unwrap_or(Leased {
        span: 0..total,
        bytes: total,
    });
    let budget = Budget {
        kind,
        size: file.size,
        total,
    };
    // Keys before the use is counted: a file whose key does not open costs
    // the grant nothing.
    let opened =
        keys::open_keys(svc, case_key, (grant, centre), file, &stored_header, kind).await?;
    // Before the lease: nothing may wait between a committed lease and the
    // body that settles it if the client goes away.
    let upcoming = budget.charge(leased.bytes);
    centre_alerts::download_starting(svc, ctx, (grant, centre), file_id, file.size, upcoming).await;
    let lease = reserve(&at, file, budget, &leased).await?;
    Ok(Download {
        file_id: file_id.clone(),
        kind,
        action,
        size: file.size,
        total,
        partial,
        span: leased.span,
        sha256: match kind {
            Kind::Plaintext => file.meta.sha256.clone(),
            Kind::Sealed => opened.object_sha256,
        },
        filename: file.meta.filename.clone(),
        sealed_key: opened.sealed_key,
        cipher: opened.cipher,
        lease,
    })
}

/// Counts the use (a request from byte 0) and leases the bytes of the
/// file's budget, with the download event and its audit entry, in one
/// transaction. Refused when the grant's downloads of the file are used up.
async fn reserve(
    at: &Attempt<'_>,
    file: &GrantedFile,
    budget: Budget,
    leased: &Leased,
) -> Result<Lease, GrantError> {
    let (svc, grant, file_id) = (at.svc, at.grant, at.file_id);
    let span = &leased.span;
    let starts = span.start == 0;
    let now = svc.timestamp().unix_seconds();
    let mut tx = audit::begin(svc).await?;
    let Some(lease) = db::grants::reserve(
        &mut tx,
        &grant.grant_id,
        file_id,
        starts,
        budget.charge(leased.bytes),
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
        bytes: leased.bytes as i64,
        total: budget.total as i64,
    };
    let event_id = db::disclosures::record_download(&mut tx, &event).await?;
    let pieces = if leased.bytes == span.end - span.start {
        String::new()
    } else {
        format!(" ({} bytes in pieces)", leased.bytes)
    };
    let entry = at.entry(Outcome::Allow).file(file_id).reason(format!(
        "start: bytes {}-{} of {}{pieces}{}",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_lie_inside_the_file_and_lease_their_sum() {
        let leased = pieces_within(&[300..310, 100..200, 300..310], 1000).unwrap();
        assert_eq!(leased.span, 100..310);
        assert_eq!(leased.bytes, 120, "a piece asked twice is sent twice");
        assert!(pieces_within(&[], 1000).is_err());
        assert!(pieces_within(&[0..1, 5..5], 1000).is_err(), "empty piece");
        assert!(
            pieces_within(&[0..1, 990..1001], 1000).is_err(),
            "past the end"
        );
        let huge = vec![0..u64::MAX; 3];
        assert!(pieces_within(&huge, u64::MAX).is_err(), "overflowing sum");
    }
}
