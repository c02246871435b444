//! The audit log in the database. [`append`] is the one place an entry is
//! written: inside the transaction of the action it records, together with
//! its leaf and the tree nodes it completes ([`tree`]), so none of them is
//! committed without the others. The leaf is exactly the entry's JSONL
//! export line ([`AuditEntry::to_json_line`]), built here from the values
//! the row stores. Every writer (services, uploads, key
//! rotation, bootstrap) goes through it, and an entry that cannot be
//! written is [`AuditUnavailable`]: the caller refuses the action (fail
//! closed).

pub mod checkpoints;
mod read;
pub mod tree;

pub use read::{AuditFilter, alerts, head, page};

use super::{Db, DbError, Tx};
use crate::audit::{AuditEntry, NewEntry, RequestContext};
use crate::clock::Timestamp;

/// The audit log cannot be written (disk full, database locked or
/// read-only, a damaged tree), so the action it would record is refused.
/// The cause is logged where it happens; callers answer vaguely.
#[derive(Debug, thiserror::Error)]
#[error("the audit log cannot be written: {0}")]
pub struct AuditUnavailable(#[source] pub DbError);

/// Begins the transaction an action and its entry share.
pub async fn begin(db: &Db) -> Result<Tx<'static>, AuditUnavailable> {
    db.begin().await.map_err(|e| {
        tracing::error!(error = %e, "cannot begin an audited transaction; refusing the action");
        AuditUnavailable(e)
    })
}

/// Appends one entry inside `tx` and returns its sequence number. The
/// caller commits it together with the action.
pub async fn append(
    tx: &mut Tx<'_>,
    ctx: &RequestContext,
    time: Timestamp,
    entry: &NewEntry,
) -> Result<i64, AuditUnavailable> {
    insert(tx, ctx, time, entry).await.map_err(|e| {
        tracing::error!(error = %e, action = entry.action, "audit append failed; refusing the action");
        AuditUnavailable(e)
    })
}

/// Appends the entry to `tx` and commits both.
pub async fn commit(
    mut tx: Tx<'_>,
    ctx: &RequestContext,
    time: Timestamp,
    entry: &NewEntry,
) -> Result<i64, AuditUnavailable> {
    let seq = append(&mut tx, ctx, time, entry).await?;
    tx.commit().await.map_err(|e| {
        tracing::error!(error = %e, action = entry.action, "commit of an audited action failed");
        AuditUnavailable(e.into())
    })?;
    Ok(seq)
}

/// Records an entry on its own transaction (denials, reads).
pub async fn record(
    db: &Db,
    ctx: &RequestContext,
    time: Timestamp,
    entry: &NewEntry,
) -> Result<i64, AuditUnavailable> {
    let tx = begin(db).await?;
    commit(tx, ctx, time, entry).await
}

/// Inserts the entry with the next sequence number and its tree nodes.
/// The transaction holds SQLite's write lock (`BEGIN IMMEDIATE`), so the
/// sequence read here is gapless and cannot race.
async fn insert(
    tx: &mut Tx<'_>,
    ctx: &RequestContext,
    time: Timestamp,
    entry: &NewEntry,
) -> Result<i64, DbError> {
    // One query for the next sequence number and the tree's node count.
    let (seq, nodes_held): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_log),
                (SELECT COALESCE(MAX(pos) + 1, 0) FROM audit_tree)",
    )
    .fetch_one(&mut **tx)
    .await?;
    let row = AuditEntry {
        action: entry.action.to_owned(),
        actor: ctx.actor.clone(),
        case_id: entry.case_id.clone(),
        centre_id: entry.centre_id.clone(),
        client_addr: ctx.client_addr.clone(),
        client_cert_sha256: ctx.client_cert_sha256.clone(),
        file_id: entry.file_id.clone(),
        grant_id: entry.grant_id.clone(),
        outcome: entry.outcome.as_str().to_owned(),
        reason: entry.reason.clone(),
        request_id: ctx.request_id.clone(),
        role: ctx.role.clone(),
        seq,
        time: time.to_string(),
    };
    sqlx::query(
        "INSERT INTO audit_log (seq, time, actor, role, action, case_id, file_id, centre_id, grant_id,
             outcome, reason, client_addr, client_cert_sha256, request_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(row.seq)
    .bind(&row.time)
    .bind(&row.actor)
    .bind(&row.role)
    .bind(&row.action)
    .bind(&row.case_id)
    .bind(&row.file_id)
    .bind(&row.centre_id)
    .bind(&row.grant_id)
    .bind(&row.outcome)
    .bind(&row.reason)
    .bind(&row.client_addr)
    .bind(&row.client_cert_sha256)
    .bind(&row.request_id)
    .execute(&mut **tx)
    .await?;
    let line = row.to_json_line();
    tree::append_leaf(tx, (seq - 1) as u64, nodes_held as u64, line.as_bytes()).await?;
    Ok(seq)
}
