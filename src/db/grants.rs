//! Download grants: which centre may fetch which files of a case, until
//! when, how often; and what was served under them.

use sqlx::Row;

use super::{Backend, Db, DbError, Tx};
use crate::clock::Timestamp;
use crate::ids::{CaseId, CentreId, FileId, GrantId};
use crate::token::TokenHash;

#[derive(Debug, Clone)]
pub struct GrantRow {
    pub grant_id: GrantId,
    pub case_id: CaseId,
    pub centre_id: CentreId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub max_downloads: i64,
    pub revoked_at: Option<Timestamp>,
    /// Whether the centre may upload its reply into the case.
    pub may_reply: bool,
}

#[derive(Debug, Clone)]
pub struct GrantFile {
    pub file_id: FileId,
    pub downloads: i64,
    pub bytes_served: i64,
}

fn grant_from_row(row: &sqlx::any::AnyRow) -> Result<GrantRow, DbError> {
    let (g, c, ctr): (String, String, String) = (
        row.try_get("grant_id")?,
        row.try_get("case_id")?,
        row.try_get("centre_id")?,
    );
    Ok(GrantRow {
        grant_id: GrantId::parse(&g).ok_or(DbError::Corrupt("grants.grant_id"))?,
        case_id: CaseId::parse(&c).ok_or(DbError::Corrupt("grants.case_id"))?,
        centre_id: CentreId::parse(&ctr).ok_or(DbError::Corrupt("grants.centre_id"))?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        max_downloads: row.try_get("max_downloads")?,
        revoked_at: row.try_get("revoked_at")?,
        may_reply: row.try_get::<i64, _>("may_reply")? != 0,
    })
}

const COLUMNS: &str =
    "grant_id, case_id, centre_id, created_at, expires_at, max_downloads, revoked_at, may_reply";

pub async fn insert(
    tx: &mut Tx<'_>,
    g: &GrantRow,
    token: &TokenHash,
    files: &[FileId],
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO grants (grant_id, case_id, centre_id, token_hash, created_at, expires_at, max_downloads, may_reply)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(g.grant_id.as_str())
    .bind(g.case_id.as_str())
    .bind(g.centre_id.as_str())
    .bind(token.as_bytes())
    .bind(g.created_at)
    .bind(g.expires_at)
    .bind(g.max_downloads)
    .bind(i64::from(g.may_reply))
    .execute(&mut **tx)
    .await?;
    for f in files {
        sqlx::query("INSERT INTO grant_files (grant_id, file_id) VALUES ($1, $2)")
            .bind(g.grant_id.as_str())
            .bind(f.as_str())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The grant whose token has this hash (any state), with the stored hash.
pub async fn find_by_token(
    db: &Db,
    hash: &TokenHash,
) -> Result<Option<(GrantRow, Vec<u8>)>, DbError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, token_hash FROM grants WHERE token_hash = $1"
    )))
    .bind(hash.as_bytes())
    .fetch_optional(db.pool())
    .await?;
    match row {
        Some(r) => Ok(Some((grant_from_row(&r)?, r.try_get("token_hash")?))),
        None => Ok(None),
    }
}

pub async fn get(db: &Db, grant_id: &GrantId) -> Result<Option<GrantRow>, DbError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM grants WHERE grant_id = $1"
    )))
    .bind(grant_id.as_str())
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(grant_from_row).transpose()
}

pub async fn list_for_case(db: &Db, case_id: &CaseId) -> Result<Vec<GrantRow>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM grants WHERE case_id = $1 ORDER BY created_at, grant_id"
    )))
    .bind(case_id.as_str())
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(grant_from_row).collect()
}

pub async fn files(db: &Db, grant_id: &GrantId) -> Result<Vec<GrantFile>, DbError> {
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT file_id, downloads, bytes_served FROM grant_files WHERE grant_id = $1 ORDER BY file_id")
            .bind(grant_id.as_str())
            .fetch_all(db.pool())
            .await?;
    rows.into_iter()
        .map(|(f, downloads, bytes_served)| {
            Ok(GrantFile {
                file_id: FileId::parse(&f).ok_or(DbError::Corrupt("grant_files.file_id"))?,
                downloads,
                bytes_served,
            })
        })
        .collect()
}

/// Marks a grant revoked (idempotent); returns whether it was active.
pub async fn revoke(
    tx: &mut Tx<'_>,
    grant_id: &GrantId,
    at: Timestamp,
    reason: &str,
) -> Result<bool, DbError> {
    let done = sqlx::query("UPDATE grants SET revoked_at = $1, revoked_reason = $2 WHERE grant_id = $3 AND revoked_at IS NULL")
        .bind(at)
        .bind(reason)
        .bind(grant_id.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes every grant of a centre or of a case.
pub async fn revoke_where(
    tx: &mut Tx<'_>,
    column: &'static str,
    id: &str,
    at: Timestamp,
    reason: &str,
) -> Result<u64, DbError> {
    let sql = match column {
        "centre_id" => {
            "UPDATE grants SET revoked_at = $1, revoked_reason = $2 WHERE centre_id = $3 AND revoked_at IS NULL"
        }
        _ => {
            "UPDATE grants SET revoked_at = $1, revoked_reason = $2 WHERE case_id = $3 AND revoked_at IS NULL"
        }
    };
    Ok(sqlx::query(sql)
        .bind(at)
        .bind(reason)
        .bind(id)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

/// What a cut download may have had in flight — handed to the connection
/// (TLS and socket buffers, the read-ahead window) but never received. The
/// gateway cannot tell those bytes from received ones, and a continuation
/// asks for them again; without an allowance a download under
/// `max_downloads = 1` that broke once could never be finished. Each cut
/// adds at most `IN_FLIGHT_PER_CUT` (and never more than it sent) to the
/// file's allowance, which never exceeds `IN_FLIGHT_CAP` or the file's size.
/// A download that completed adds nothing.
pub const IN_FLIGHT_PER_CUT: i64 = 16 * 1024 * 1024;
pub const IN_FLIGHT_CAP: i64 = 64 * 1024 * 1024;

/// A download lease as its holder names it: the row's id and the random
/// token it was given when reserved. Ids alone can be handed out again
/// (SQLite reuses a deleted row's id), so every statement on a held lease
/// matches both: the holder of a lease settled as stale can never touch
/// the lease that took its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseKey {
    pub id: i64,
    pub token: i64,
}

/// Counts the start of a download (a request from byte 0) and leases
/// `bytes` of the file's budget, atomically against the limits: at most
/// `max_downloads` starts, and at most `max_downloads × size` bytes (plus
/// the in-flight allowance) settled plus leased. Leases whose heartbeat is older than `stale_before` (their
/// gateway died) are settled first at their recorded progress. Returns the
/// lease, or `None` when the limits refuse.
#[allow(
    clippy::too_many_arguments,
    reason = "the limits are checked and the lease written in one statement, which binds each of these"
)]
pub async fn reserve(
    tx: &mut Tx<'_>,
    grant_id: &GrantId,
    file_id: &FileId,
    starts_download: bool,
    bytes: i64,
    max_downloads: i64,
    size: i64,
    now: i64,
    stale_before: i64,
) -> Result<Option<LeaseKey>, DbError> {
    settle_where(
        tx,
        "grant_id = $1 AND file_id = $2 AND heartbeat_at < $3",
        &[grant_id.as_str(), file_id.as_str()],
        Some(stale_before),
    )
    .await?;
    let done = sqlx::query(
        "UPDATE grant_files SET downloads = downloads + $1
         WHERE grant_id = $2 AND file_id = $3
           AND downloads + $4 <= $5
           AND bytes_served + $6 + COALESCE((SELECT SUM(l.reserved) FROM download_leases l
                 WHERE l.grant_id = grant_files.grant_id AND l.file_id = grant_files.file_id), 0)
               <= $7 * (CASE WHEN $8 > 1 THEN $8 ELSE 1 END)
                  + (CASE WHEN in_flight_allowance < $9 THEN in_flight_allowance ELSE $9 END)",
    )
    .bind(i64::from(starts_download))
    .bind(grant_id.as_str())
    .bind(file_id.as_str())
    .bind(i64::from(starts_download))
    .bind(max_downloads)
    .bind(bytes)
    .bind(max_downloads)
    .bind(size)
    .bind(size)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(None);
    }
    // Never 0, the token of leases from before tokens.
    let token = i64::from_le_bytes(crate::random::array::<8>()) | 1;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO download_leases (grant_id, file_id, reserved, sent, heartbeat_at, starts, token)
         VALUES ($1, $2, $3, 0, $4, $5, $6) RETURNING lease_id",
    )
    .bind(grant_id.as_str())
    .bind(file_id.as_str())
    .bind(bytes)
    .bind(now)
    .bind(i64::from(starts_download))
    .bind(token)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Some(LeaseKey { id, token }))
}

/// Bytes of a file charged to a grant so far: served by ended downloads
/// plus leased to running ones (in plaintext units, as the budget counts).
pub async fn charged(db: &Db, grant_id: &GrantId, file_id: &FileId) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT CAST(g.bytes_served + COALESCE((SELECT SUM(l.reserved) FROM download_leases l
             WHERE l.grant_id = g.grant_id AND l.file_id = g.file_id), 0) AS BIGINT)
         FROM grant_files g WHERE g.grant_id = $1 AND g.file_id = $2",
    )
    .bind(grant_id.as_str())
    .bind(file_id.as_str())
    .fetch_optional(db.pool())
    .await?
    .unwrap_or(0))
}

/// Records a running download's progress. `false`: the lease is gone (it
/// was settled as stale), and the download must stop.
/// `sent` is in the budget's units, `delivered` in bytes of the
/// representation served.
pub async fn heartbeat(
    db: &Db,
    lease: LeaseKey,
    (sent, delivered): (i64, i64),
    now: i64,
) -> Result<bool, DbError> {
    // In a write transaction, so it never lands between the statements
    // of a stale lease's settlement (which would keep the lease alive
    // after its start was given back).
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "UPDATE download_leases SET sent = CASE WHEN $1 < reserved THEN $1 ELSE reserved END, delivered = $2, heartbeat_at = $3
         WHERE lease_id = $4 AND token = $5",
    )
    .bind(sent)
    .bind(delivered)
    .bind(now)
    .bind(lease.id)
    .bind(lease.token)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// Records that a lease is alive while it has no progress to record (a
/// download started ahead of its turn); its `sent` is left as it is.
/// `false`: the lease is gone (settled as stale).
pub async fn touch(db: &Db, lease: LeaseKey, now: i64) -> Result<bool, DbError> {
    // In a write transaction, as `heartbeat`.
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "UPDATE download_leases SET heartbeat_at = $1 WHERE lease_id = $2 AND token = $3",
    )
    .bind(now)
    .bind(lease.id)
    .bind(lease.token)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// Ends a lease: the file's budget is charged the bytes actually sent
/// (never more than were leased) and the rest is given back; a download
/// that did not complete adds to the in-flight allowance. The outcome
/// (`delivered` bytes of the representation, cut or not, ended `now`) is
/// kept on the lease's download event. A lease that is gone (settled as
/// stale meanwhile) is left alone: its bytes were settled then.
pub async fn settle(
    tx: &mut Tx<'_>,
    lease: LeaseKey,
    (sent, delivered): (i64, i64),
    cut: bool,
    now: i64,
) -> Result<(), DbError> {
    let done = sqlx::query(
        "UPDATE download_leases SET sent = CASE WHEN $1 < reserved THEN $1 ELSE reserved END, delivered = $2, cut = $3, heartbeat_at = $4
         WHERE lease_id = $5 AND token = $6",
    )
    .bind(sent)
    .bind(delivered)
    .bind(i64::from(cut))
    .bind(now)
    .bind(lease.id)
    .bind(lease.token)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(());
    }
    settle_where(tx, "lease_id = $1", &[], Some(lease.id)).await
}

/// Settles the leases left by an earlier run of this gateway (a crash or
/// kill -9 mid-download) at their last recorded progress: all of them
/// (`stale_before` unset) for a gateway that is the database's sole user,
/// at start; else those whose heartbeat is older than `stale_before`.
pub async fn settle_orphaned_leases(db: &Db, stale_before: Option<i64>) -> Result<u64, DbError> {
    let mut tx = db.begin().await?;
    let cutoff = stale_before.unwrap_or(i64::MAX);
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM download_leases WHERE heartbeat_at < $1")
        .bind(cutoff)
        .fetch_one(&mut *tx)
        .await?;
    settle_where(&mut tx, "heartbeat_at < $1", &[], Some(cutoff)).await?;
    tx.commit().await?;
    Ok(n.max(0) as u64)
}

/// Charges the matching leases' `sent` to their files, keeps each one's
/// outcome on its download event (ended at its last heartbeat), and
/// deletes them. A lease that counted a start and sent nothing gives the
/// start back. `texts` and then `last` are bound in order to the
/// numbered placeholders of `filter` (`$1`, …).
async fn settle_where(
    tx: &mut Tx<'_>,
    filter: &'static str,
    texts: &[&str],
    last: Option<i64>,
) -> Result<(), DbError> {
    let backend = Backend::of_connection(tx);
    let (least, greatest) = (backend.least(), backend.greatest());
    let ended_at = backend.epoch_as_text("l.heartbeat_at");
    let charge = format!(
        "UPDATE grant_files SET bytes_served = bytes_served + (
             SELECT COALESCE(SUM(l.sent), 0) FROM download_leases l
             WHERE l.grant_id = grant_files.grant_id AND l.file_id = grant_files.file_id AND ({filter})),
           in_flight_allowance = {least}({IN_FLIGHT_CAP}, in_flight_allowance + (
             SELECT COALESCE(SUM({least}(l.sent, {IN_FLIGHT_PER_CUT})), 0) FROM download_leases l
             WHERE l.grant_id = grant_files.grant_id AND l.file_id = grant_files.file_id AND l.cut = 1
               AND ({filter}))),
           downloads = {greatest}(0, downloads - (
             SELECT COUNT(*) FROM download_leases l
             WHERE l.grant_id = grant_files.grant_id AND l.file_id = grant_files.file_id
               AND l.starts = 1 AND l.sent = 0 AND ({filter})))
         WHERE EXISTS (SELECT 1 FROM download_leases l
             WHERE l.grant_id = grant_files.grant_id AND l.file_id = grant_files.file_id AND ({filter}))"
    );
    // Unqualified names in `filter` resolve to the lease table `l`, the
    // innermost scope, as in `charge`.
    let outcome = format!(
        "UPDATE download_events SET
             delivered = (SELECT l.delivered FROM download_leases l WHERE l.event_id = download_events.event_id),
             cut = (SELECT l.cut FROM download_leases l WHERE l.event_id = download_events.event_id),
             ended_at = (SELECT {ended_at}
                 FROM download_leases l WHERE l.event_id = download_events.event_id)
         WHERE event_id IN (SELECT l.event_id FROM download_leases l WHERE ({filter}))"
    );
    let delete = format!("DELETE FROM download_leases WHERE {filter}");
    for sql in [charge, outcome, delete] {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for t in texts {
            q = q.bind(*t);
        }
        if let Some(v) = last {
            q = q.bind(v);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "tests/lease_tokens.rs"]
mod lease_tokens;
