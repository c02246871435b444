//! Writing the audit log and reading it back; its checkpoints
//! ([`checkpoints`]) and proofs ([`proofs`]). An action and its entry are
//! one transaction ([`begin`], [`commit`]), written by the one writer
//! `db::audit`; an entry that cannot be written refuses the action (fail
//! closed). The export reads entries page by page
//! up to the head at the time it was asked for, so a long export ends.

pub mod alerts;
pub mod centre_alerts;
pub mod checkpoints;
pub mod proofs;

use super::Services;
use crate::audit::{AuditEntry, NewEntry, Outcome, RequestContext};
use crate::clock::Timestamp;
use crate::db::audit::{self, AuditFilter, AuditUnavailable};
use crate::db::{DbError, Tx};

/// The audit log's one error.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The entry (and so the action) could not be committed.
    #[error(transparent)]
    Unavailable(#[from] AuditUnavailable),
    /// Reading the log failed.
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    BadQuery(String),
    /// The tree no longer extends the last signed checkpoint: nothing is
    /// signed over it.
    #[error("the audit tree does not extend the last signed checkpoint of {0} entries")]
    HistoryRewritten(u64),
}

/// Begins the transaction an action and its audit entry share.
pub async fn begin(svc: &Services) -> Result<Tx<'static>, AuditError> {
    Ok(audit::begin(&svc.db).await?)
}

/// Appends the entry to `tx` and commits both. If the entry cannot be
/// written nothing is committed and the action is refused.
pub async fn commit(
    svc: &Services,
    tx: Tx<'_>,
    ctx: &RequestContext,
    entry: NewEntry,
) -> Result<(), AuditError> {
    audit::commit(&svc.db, tx, ctx, svc.timestamp(), &entry).await?;
    Ok(())
}

/// Appends the entry to `tx` without committing, for an action whose rows
/// name their entry's sequence number (returned); [`commit_appended`]
/// then commits both.
pub async fn append(
    svc: &Services,
    tx: &mut Tx<'_>,
    ctx: &RequestContext,
    entry: &NewEntry,
) -> Result<i64, AuditError> {
    Ok(audit::append(&svc.db, tx, ctx, svc.timestamp(), entry).await?)
}

/// Commits a transaction an entry was [`append`]ed to; if the commit fails
/// the action is refused, as with [`commit`].
pub async fn commit_appended(tx: Tx<'_>) -> Result<(), AuditError> {
    tx.commit().await.map_err(|e| {
        tracing::error!(error = %e, "commit of an audited action failed");
        AuditUnavailable(e.into())
    })?;
    Ok(())
}

/// Records an entry on its own (denials, reads).
pub async fn record(
    svc: &Services,
    ctx: &RequestContext,
    entry: NewEntry,
) -> Result<(), AuditError> {
    audit::record(&svc.db, ctx, svc.timestamp(), &entry).await?;
    Ok(())
}

/// Entries per page of an export.
const PAGE: i64 = 500;

/// What an export asks for, as the caller gave it.
#[derive(Debug, Default)]
pub struct ExportQuery {
    pub case_id: Option<String>,
    pub centre_id: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

fn time_bound(name: &str, value: Option<String>) -> Result<Option<Timestamp>, AuditError> {
    value
        .map(|v| {
            Timestamp::parse(&v)
                .map_err(|_| AuditError::BadQuery(format!("{name} must be an RFC 3339 time")))
        })
        .transpose()
}

impl ExportQuery {
    fn filter(self) -> Result<AuditFilter, AuditError> {
        if let Some(o) = &self.outcome
            && Outcome::parse(o).is_none()
        {
            return Err(AuditError::BadQuery(
                "outcome must be allow, deny or error".into(),
            ));
        }
        Ok(AuditFilter {
            case_id: self.case_id,
            centre_id: self.centre_id,
            actor: self.actor,
            action: self.action,
            outcome: self.outcome,
            since: time_bound("since", self.since)?,
            until: time_bound("until", self.until)?,
        })
    }
}

/// A running export: its filter, the head it stops at, where it stands,
/// and the tree size its entries are proven in (`proofs`).
pub struct Export {
    filter: AuditFilter,
    head: i64,
    after: i64,
    done: bool,
    proofs_in: Option<u64>,
}

/// Starts an export: validates the query, audits the export itself, and
/// fixes the head it will stop at.
///
/// With `proofs_in` (a tree size, e.g. a checkpoint's), the export stops at
/// that size and each entry comes with its inclusion proof in that tree
/// ([`Export::proof`]), so a filtered export is provable on its own.
pub async fn export(
    svc: &Services,
    ctx: &RequestContext,
    query: ExportQuery,
    proofs_in: Option<u64>,
) -> Result<Export, AuditError> {
    let filter = query.filter()?;
    if let Some(size) = proofs_in {
        proofs::check_size(svc, "tree_size", size).await?;
    }
    let mut entry = NewEntry::new("audit.export", Outcome::Allow);
    if let Some(size) = proofs_in {
        entry = entry.reason(format!("with inclusion proofs in the tree of {size}"));
    }
    record(svc, ctx, entry).await?;
    let head = audit::head(&svc.db).await?;
    let head = proofs_in.map_or(head, |size| head.min(size as i64));
    Ok(Export {
        filter,
        head,
        after: 0,
        done: false,
        proofs_in,
    })
}

impl Export {
    /// Whether entries come with proofs, and in which tree size.
    pub fn proofs_in(&self) -> Option<u64> {
        self.proofs_in
    }

    /// The inclusion proof (hex hashes) of `entry` in the export's tree
    /// size; `None` when the export has no proofs.
    pub async fn proof(
        &self,
        svc: &Services,
        entry: &AuditEntry,
    ) -> Result<Option<Vec<String>>, AuditError> {
        let Some(size) = self.proofs_in else {
            return Ok(None);
        };
        let index = u64::try_from(entry.seq - 1).map_err(|_| DbError::Corrupt("audit_log.seq"))?;
        Ok(Some(proofs::hashes(svc, index, size).await?))
    }

    /// The next page of entries; `Ok(None)` once the head is reached.
    pub async fn next_page(
        &mut self,
        svc: &Services,
    ) -> Result<Option<Vec<AuditEntry>>, AuditError> {
        if self.done {
            return Ok(None);
        }
        let rows = match audit::page(&svc.db, &self.filter, self.after, PAGE).await {
            Ok(rows) => rows,
            Err(e) => {
                self.done = true;
                return Err(e.into());
            }
        };
        let rows: Vec<_> = rows.into_iter().filter(|r| r.seq <= self.head).collect();
        let last = rows.last().map(|r| r.seq);
        self.done = (rows.len() as i64) < PAGE || last.is_none_or(|s| s >= self.head);
        self.after = last.unwrap_or(self.after);
        if rows.is_empty() && self.done {
            return Ok(None);
        }
        Ok(Some(rows))
    }
}
