//! Cases: the wrapped case key, the sealed reference, the patient's upload
//! token hash and expiry. Deleting a case destroys its wrapped key.

use sqlx::Row;

use super::{Db, DbError, Tx};
use crate::clock::Timestamp;
use crate::crypto::WrappedKey;
use crate::ids::CaseId;
use crate::token::TokenHash;

#[derive(Debug, Clone)]
pub struct CaseRow {
    pub case_id: CaseId,
    pub created_at: Timestamp,
    pub wrapped_key: WrappedKey,
    pub reference_sealed: Option<Vec<u8>>,
    pub upload_expires_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct CaseSummary {
    pub case_id: CaseId,
    pub created_at: Timestamp,
    pub state: String,
    pub file_count: i64,
    pub total_bytes: i64,
}

pub struct NewCase<'a> {
    pub case_id: &'a CaseId,
    pub created_at: Timestamp,
    pub wrapped_key: &'a WrappedKey,
    pub reference_sealed: Option<&'a [u8]>,
    pub upload_token_hash: &'a TokenHash,
    pub upload_expires_at: Timestamp,
}

pub async fn insert(tx: &mut Tx<'_>, c: &NewCase<'_>) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO cases (case_id, created_at, state, wrapped_key, kek_version, reference_sealed,
                            upload_token_hash, upload_expires_at)
         VALUES ($1, $2, 'open', $3, $4, $5, $6, $7)",
    )
    .bind(c.case_id.as_str())
    .bind(c.created_at)
    .bind(&c.wrapped_key.bytes)
    .bind(i64::from(c.wrapped_key.kek_version))
    .bind(c.reference_sealed)
    .bind(c.upload_token_hash.as_bytes())
    .bind(c.upload_expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn case_from_row(row: &sqlx::any::AnyRow) -> Result<CaseRow, DbError> {
    let id: String = row.try_get("case_id")?;
    let version: i64 = row.try_get("kek_version")?;
    Ok(CaseRow {
        case_id: CaseId::parse(&id).ok_or(DbError::Corrupt("cases.case_id"))?,
        created_at: row.try_get("created_at")?,
        wrapped_key: WrappedKey {
            kek_version: u32::try_from(version)
                .map_err(|_| DbError::Corrupt("cases.kek_version"))?,
            bytes: row.try_get("wrapped_key")?,
        },
        reference_sealed: row.try_get("reference_sealed")?,
        upload_expires_at: row.try_get("upload_expires_at")?,
    })
}

const CASE_COLUMNS: &str =
    "case_id, created_at, wrapped_key, kek_version, reference_sealed, upload_expires_at";

/// An open (not deleted) case.
pub async fn get(db: &Db, id: &CaseId) -> Result<Option<CaseRow>, DbError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CASE_COLUMNS} FROM cases WHERE case_id = $1 AND state = 'open'"
    )))
    .bind(id.as_str())
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(case_from_row).transpose()
}

/// The open case whose current upload token has this hash.
pub async fn find_by_upload_token(
    db: &Db,
    hash: &TokenHash,
) -> Result<Option<(CaseRow, Vec<u8>)>, DbError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CASE_COLUMNS}, upload_token_hash FROM cases WHERE upload_token_hash = $1 AND state = 'open'"
    )))
    .bind(hash.as_bytes())
    .fetch_optional(db.pool())
    .await?;
    match row {
        Some(row) => Ok(Some((
            case_from_row(&row)?,
            row.try_get("upload_token_hash")?,
        ))),
        None => Ok(None),
    }
}

pub async fn list(db: &Db) -> Result<Vec<CaseSummary>, DbError> {
    let rows = sqlx::query(
        "SELECT c.case_id, c.created_at, c.state,
                COUNT(f.file_id) AS file_count, CAST(COALESCE(SUM(f.size), 0) AS BIGINT) AS total_bytes
         FROM cases c LEFT JOIN files f ON f.case_id = c.case_id
         GROUP BY c.case_id ORDER BY c.created_at, c.case_id",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("case_id")?;
            Ok(CaseSummary {
                case_id: CaseId::parse(&id).ok_or(DbError::Corrupt("cases.case_id"))?,
                created_at: row.try_get("created_at")?,
                state: row.try_get("state")?,
                file_count: row.try_get("file_count")?,
                total_bytes: row.try_get("total_bytes")?,
            })
        })
        .collect()
}

/// Replaces the upload token; the old one stops working at once.
pub async fn set_upload_token(
    tx: &mut Tx<'_>,
    id: &CaseId,
    hash: &TokenHash,
    expires_at: Timestamp,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE cases SET upload_token_hash = $1, upload_expires_at = $2 WHERE case_id = $3 AND state = 'open'",
    )
    .bind(hash.as_bytes())
    .bind(expires_at)
    .bind(id.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Crypto-shreds a case: its wrapped key, sealed reference and file metadata
/// are destroyed, its token stops working. The row stays as a tombstone so
/// audit entries keep pointing at something. Returns false if there was no
/// open case with this id.
pub async fn shred(tx: &mut Tx<'_>, id: &CaseId, at: Timestamp) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE cases SET state = 'deleted', deleted_at = $1, wrapped_key = NULL, kek_version = NULL,
                          reference_sealed = NULL, upload_token_hash = NULL
         WHERE case_id = $2 AND state = 'open'",
    )
    .bind(at)
    .bind(id.as_str())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE uploads SET state = 'terminated', tail_sealed = NULL, metadata_sealed = NULL
         WHERE case_id = $1 AND state = 'active'",
    )
    .bind(id.as_str())
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM files WHERE case_id = $1")
        .bind(id.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(true)
}

/// Up to `limit` open cases whose key is wrapped under a version other than
/// `version`.
pub async fn keys_not_at(
    db: &Db,
    version: u32,
    limit: i64,
) -> Result<Vec<(CaseId, WrappedKey)>, DbError> {
    let rows: Vec<(String, Vec<u8>, i64)> = sqlx::query_as(
        "SELECT case_id, wrapped_key, kek_version FROM cases
         WHERE state = 'open' AND kek_version != $1 ORDER BY case_id LIMIT $2",
    )
    .bind(i64::from(version))
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|(id, bytes, v)| {
            Ok((
                CaseId::parse(&id).ok_or(DbError::Corrupt("cases.case_id"))?,
                WrappedKey {
                    kek_version: u32::try_from(v)
                        .map_err(|_| DbError::Corrupt("cases.kek_version"))?,
                    bytes,
                },
            ))
        })
        .collect()
}

/// Replaces a wrapped case key only if it is still exactly `old` (a case
/// shredded meanwhile stays shredded). Returns whether it was replaced.
pub async fn rewrap(
    tx: &mut Tx<'_>,
    id: &CaseId,
    old: &WrappedKey,
    new: &WrappedKey,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE cases SET wrapped_key = $1, kek_version = $2
         WHERE case_id = $3 AND state = 'open' AND kek_version = $4 AND wrapped_key = $5",
    )
    .bind(&new.bytes)
    .bind(i64::from(new.kek_version))
    .bind(id.as_str())
    .bind(i64::from(old.kek_version))
    .bind(&old.bytes)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// How many open cases each master key version wraps.
pub async fn key_versions(db: &Db) -> Result<Vec<(u32, i64)>, DbError> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT kek_version, COUNT(*) FROM cases WHERE state = 'open' GROUP BY kek_version ORDER BY kek_version",
    )
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|(v, n)| {
            Ok((
                u32::try_from(v).map_err(|_| DbError::Corrupt("cases.kek_version"))?,
                n,
            ))
        })
        .collect()
}
