//! The audit log in the database. [`append`] is the one place an entry is
//! written: inside the transaction of the action it records, so neither is
//! committed without the other. Every writer (services, uploads, key
//! rotation, bootstrap) goes through it, and an entry that cannot be
//! written is [`AuditUnavailable`]: the caller refuses the action (fail
//! closed).

mod read;

pub use read::{AuditFilter, head, page};

use super::{Db, DbError, Tx};
use crate::audit::{NewEntry, RequestContext};
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

async fn insert(
    tx: &mut Tx<'_>,
    ctx: &RequestContext,
    time: Timestamp,
    entry: &NewEntry,
) -> Result<i64, DbError> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO audit_log (seq, time, actor, role, action, case_id, file_id, centre_id, grant_id,
             outcome, reason, client_addr, client_cert_sha256, request_id)
         SELECT COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM audit_log
         RETURNING seq",
    )
    .bind(time)
    .bind(&ctx.actor)
    .bind(&ctx.role)
    .bind(entry.action)
    .bind(&entry.case_id)
    .bind(&entry.file_id)
    .bind(&entry.centre_id)
    .bind(&entry.grant_id)
    .bind(entry.outcome.as_str())
    .bind(&entry.reason)
    .bind(&ctx.client_addr)
    .bind(&ctx.client_cert_sha256)
    .bind(&ctx.request_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(seq)
}
