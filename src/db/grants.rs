//! Download grants: which centre may fetch which files of a case, until
//! when, how often; and what was served under them.

use sqlx::Row;

use super::{Db, DbError, Tx};
use crate::ids::{CaseId, CentreId, FileId, GrantId};
use crate::token::TokenHash;

#[derive(Debug, Clone)]
pub struct GrantRow {
    pub grant_id: GrantId,
    pub case_id: CaseId,
    pub centre_id: CentreId,
    pub created_at: String,
    pub expires_at: String,
    pub max_downloads: i64,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Clone)]
pub struct GrantFile {
    pub file_id: FileId,
    pub downloads: i64,
    pub bytes_served: i64,
}

fn grant_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<GrantRow, DbError> {
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
    })
}

const COLUMNS: &str =
    "grant_id, case_id, centre_id, created_at, expires_at, max_downloads, revoked_at";

pub async fn insert(
    tx: &mut Tx<'_>,
    g: &GrantRow,
    token: &TokenHash,
    files: &[FileId],
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO grants (grant_id, case_id, centre_id, token_hash, created_at, expires_at, max_downloads)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(g.grant_id.as_str())
    .bind(g.case_id.as_str())
    .bind(g.centre_id.as_str())
    .bind(token.as_bytes())
    .bind(&g.created_at)
    .bind(&g.expires_at)
    .bind(g.max_downloads)
    .execute(&mut **tx)
    .await?;
    for f in files {
        sqlx::query("INSERT INTO grant_files (grant_id, file_id) VALUES (?, ?)")
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
        "SELECT {COLUMNS}, token_hash FROM grants WHERE token_hash = ?"
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
        "SELECT {COLUMNS} FROM grants WHERE grant_id = ?"
    )))
    .bind(grant_id.as_str())
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(grant_from_row).transpose()
}

pub async fn list_for_case(db: &Db, case_id: &CaseId) -> Result<Vec<GrantRow>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM grants WHERE case_id = ? ORDER BY created_at, grant_id"
    )))
    .bind(case_id.as_str())
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(grant_from_row).collect()
}

pub async fn files(db: &Db, grant_id: &GrantId) -> Result<Vec<GrantFile>, DbError> {
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT file_id, downloads, bytes_served FROM grant_files WHERE grant_id = ? ORDER BY file_id")
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
    at: &str,
    reason: &str,
) -> Result<bool, DbError> {
    let done = sqlx::query("UPDATE grants SET revoked_at = ?, revoked_reason = ? WHERE grant_id = ? AND revoked_at IS NULL")
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
    at: &str,
    reason: &str,
) -> Result<u64, DbError> {
    let sql = match column {
        "centre_id" => {
            "UPDATE grants SET revoked_at = ?, revoked_reason = ? WHERE centre_id = ? AND revoked_at IS NULL"
        }
        _ => {
            "UPDATE grants SET revoked_at = ?, revoked_reason = ? WHERE case_id = ? AND revoked_at IS NULL"
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

/// Counts the start of a download (a request from byte 0) and reserves
/// `bytes`, atomically against the limits: at most `max_downloads` starts,
/// at most `max_downloads × size` bytes. Continuations reserve bytes only.
pub async fn reserve(
    tx: &mut Tx<'_>,
    grant_id: &GrantId,
    file_id: &FileId,
    starts_download: bool,
    bytes: i64,
    max_downloads: i64,
    size: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE grant_files SET downloads = downloads + ?, bytes_served = bytes_served + ?
         WHERE grant_id = ? AND file_id = ?
           AND downloads + ? <= ? AND bytes_served + ? <= ? * MAX(?, 1)",
    )
    .bind(i64::from(starts_download))
    .bind(bytes)
    .bind(grant_id.as_str())
    .bind(file_id.as_str())
    .bind(i64::from(starts_download))
    .bind(max_downloads)
    .bind(bytes)
    .bind(max_downloads)
    .bind(size)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub struct DownloadEvent<'a> {
    pub grant: &'a GrantRow,
    pub file_id: &'a FileId,
    pub at: &'a str,
    pub kind: &'a str,
    pub range_start: i64,
    pub bytes: i64,
}

pub async fn record_download(tx: &mut Tx<'_>, e: &DownloadEvent<'_>) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO download_events (grant_id, case_id, file_id, centre_id, at, kind, range_start, bytes)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(e.grant.grant_id.as_str())
    .bind(e.grant.case_id.as_str())
    .bind(e.file_id.as_str())
    .bind(e.grant.centre_id.as_str())
    .bind(e.at)
    .bind(e.kind)
    .bind(e.range_start)
    .bind(e.bytes)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// For the patient: downloads of a case's files with the centre's name.
pub async fn access_log(
    db: &Db,
    case_id: &CaseId,
) -> Result<Vec<(String, String, String, String, String, i64)>, DbError> {
    let rows = sqlx::query(
        "SELECT d.file_id, c.name, c.country, d.at, d.kind, d.range_start FROM download_events d
         JOIN centres c ON c.centre_id = d.centre_id WHERE d.case_id = ? ORDER BY d.event_id",
    )
    .bind(case_id.as_str())
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("file_id")?,
                r.try_get("name")?,
                r.try_get("country")?,
                r.try_get("at")?,
                r.try_get("kind")?,
                r.try_get("range_start")?,
            ))
        })
        .collect()
}
