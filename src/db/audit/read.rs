//! Reading audit rows back: in sequence order, with the export's filters.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::AuditEntry;
use crate::clock::Timestamp;
use crate::db::{Db, DbError, Tx};

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
         WHERE seq > $1
           AND ($2 IS NULL OR case_id = $3)
           AND ($4 IS NULL OR centre_id = $5)
           AND ($6 IS NULL OR actor = $7)
           AND ($8 IS NULL OR action = $9)
           AND ($10 IS NULL OR outcome = $11)
           AND ($12 IS NULL OR time >= $13)
           AND ($14 IS NULL OR time < $15)
         ORDER BY seq
         LIMIT $16",
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

pub(super) fn entry_from_row(row: &AnyRow) -> Result<AuditEntry, DbError> {
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

/// Whether any entry after sequence number `seq` records an action other
/// than `except` (a range on the primary key: only the entries since).
pub async fn written_since(db: &Db, seq: u64, except: &str) -> Result<bool, DbError> {
    let found: i64 = sqlx::query_scalar(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM audit_log WHERE seq > $1 AND action <> $2)
         THEN 1 ELSE 0 END",
    )
    .bind(seq as i64)
    .bind(except)
    .fetch_one(db.pool())
    .await?;
    Ok(found != 0)
}

/// The alert queries; their `WHERE` is the partial index
/// `audit_log_alerts`'s (migration 0007), word for word, so they read it.
pub(super) const RECENT_ALERTS: &str =
    "SELECT seq, time, actor, role, action, case_id, file_id, centre_id, grant_id, outcome, reason,
        client_addr, client_cert_sha256, request_id
 FROM audit_log WHERE action LIKE 'alert.%' ORDER BY seq DESC LIMIT $1";
pub(super) const ALERT_COUNTS: &str = "SELECT action, COUNT(*) FROM audit_log WHERE action LIKE 'alert.%' GROUP BY action ORDER BY action";

/// The latest `limit` alert entries (`action` starting `alert.`), newest
/// first, and how many of each kind the whole log holds.
pub async fn alerts(db: &Db, limit: i64) -> Result<(Vec<AuditEntry>, Vec<(String, i64)>), DbError> {
    let rows = sqlx::query(RECENT_ALERTS)
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    let recent = rows.iter().map(entry_from_row).collect::<Result<_, _>>()?;
    let counts = sqlx::query_as(ALERT_COUNTS).fetch_all(db.pool()).await?;
    Ok((recent, counts))
}

/// Whether a matching alert exists (1 or 0: the engines disagree on the
/// type of `EXISTS`); its `WHERE` starts with the partial index's.
pub(super) const ALERTED: &str =
    "SELECT CASE WHEN EXISTS (SELECT 1 FROM audit_log WHERE action LIKE 'alert.%' AND action = $1
       AND ($2 IS NULL OR grant_id = $3)
       AND ($4 IS NULL OR file_id = $5)
       AND ($6 IS NULL OR centre_id = $7)
       AND ($8 IS NULL OR time >= $9)) THEN 1 ELSE 0 END";

/// What an earlier alert must match to make a new one a repeat: its kind
/// and, where given, its grant, file and centre, written at or after
/// `since` (unset: ever).
#[derive(Debug, Clone, Default)]
pub struct AlertKey {
    pub action: &'static str,
    pub grant_id: Option<String>,
    pub file_id: Option<String>,
    pub centre_id: Option<String>,
    pub since: Option<Timestamp>,
}

/// Whether the log holds an alert matching `key`, read inside `tx` (which
/// holds the write lock, so a repeat cannot slip in between the check and
/// the append). Reads the alerts' partial index, not the log.
pub async fn alerted(tx: &mut Tx<'_>, key: &AlertKey) -> Result<bool, DbError> {
    let found: i64 = sqlx::query_scalar(ALERTED)
        .bind(key.action)
        .bind(&key.grant_id)
        .bind(&key.grant_id)
        .bind(&key.file_id)
        .bind(&key.file_id)
        .bind(&key.centre_id)
        .bind(&key.centre_id)
        .bind(key.since)
        .bind(key.since)
        .fetch_one(&mut **tx)
        .await?;
    Ok(found != 0)
}
