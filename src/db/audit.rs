//! Audit rows: appended inside the transaction of the action they record,
//! read back in sequence order with filters.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Db, DbError, Tx};
use crate::audit::{AuditEntry, NewEntry, RequestContext};
use crate::clock::Timestamp;

/// Appends one entry inside `tx` and returns its sequence number. The caller
/// commits it together with the action, so neither exists without the other.
pub async fn append(
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

/// Filters of the audit export; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub case_id: Option<String>,
    pub centre_id: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// One page of entries with `seq > after`, in order.
pub async fn page(
    db: &Db,
    filter: &AuditFilter,
    after: i64,
    limit: i64,
) -> Result<Vec<AuditEntry>, DbError> {
    let rows = sqlx::query(
        "SELECT seq, time, actor, role, action, case_id, file_id, centre_id, grant_id, outcome, reason,
                client_addr, client_cert_sha256, request_id
         FROM audit_log
         WHERE seq > ?
           AND (? IS NULL OR case_id = ?)
           AND (? IS NULL OR centre_id = ?)
           AND (? IS NULL OR actor = ?)
           AND (? IS NULL OR action = ?)
           AND (? IS NULL OR outcome = ?)
           AND (? IS NULL OR time >= ?)
           AND (? IS NULL OR time < ?)
         ORDER BY seq
         LIMIT ?",
    )
    .bind(after)
    .bind(&filter.case_id)
    .bind(&filter.case_id)
    .bind(&filter.centre_id)
    .bind(&filter.centre_id)
    .bind(&filter.actor)
    .bind(&filter.actor)
    .bind(&filter.action)
    .bind(&filter.action)
    .bind(&filter.outcome)
    .bind(&filter.outcome)
    .bind(filter.since)
    .bind(filter.since)
    .bind(filter.until)
    .bind(filter.until)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(entry_from_row).collect()
}

fn entry_from_row(row: &SqliteRow) -> Result<AuditEntry, DbError> {
    Ok(AuditEntry {
        seq: row.try_get("seq")?,
        time: row.try_get("time")?,
        actor: row.try_get("actor")?,
        role: row.try_get("role")?,
        action: row.try_get("action")?,
        case_id: row.try_get("case_id")?,
        file_id: row.try_get("file_id")?,
        centre_id: row.try_get("centre_id")?,
        grant_id: row.try_get("grant_id")?,
        outcome: row.try_get("outcome")?,
        reason: row.try_get("reason")?,
        client_addr: row.try_get("client_addr")?,
        client_cert_sha256: row.try_get("client_cert_sha256")?,
        request_id: row.try_get("request_id")?,
    })
}

/// The highest sequence number written so far (0 for an empty log).
pub async fn head(db: &Db) -> Result<i64, DbError> {
    Ok(
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_log")
            .fetch_one(db.pool())
            .await?,
    )
}
