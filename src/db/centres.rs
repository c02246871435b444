//! Reviewing centres: pinned by the SHA-256 of their client certificate,
//! with the X25519 public key file keys are sealed to.

use sqlx::Row;

use super::{Db, DbError, Tx};
use crate::clock::Timestamp;
use crate::ids::CentreId;

#[derive(Debug, Clone)]
pub struct CentreRow {
    pub centre_id: CentreId,
    pub name: String,
    pub country: String,
    pub cert_sha256: String,
    pub x25519_public_key: Vec<u8>,
    pub created_at: Timestamp,
    pub disabled_at: Option<Timestamp>,
}

pub struct NewCentre<'a> {
    pub centre_id: &'a CentreId,
    pub name: &'a str,
    pub country: &'a str,
    pub cert_sha256: &'a str,
    pub cert_der: &'a [u8],
    pub x25519_public_key: &'a [u8],
    pub created_at: Timestamp,
}

/// Inserts a centre; `Ok(false)` when the certificate is already registered.
pub async fn insert(tx: &mut Tx<'_>, c: &NewCentre<'_>) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO centres (centre_id, name, country, cert_sha256, cert_der, x25519_public_key, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (cert_sha256) DO NOTHING",
    )
    .bind(c.centre_id.as_str())
    .bind(c.name)
    .bind(c.country)
    .bind(c.cert_sha256)
    .bind(c.cert_der)
    .bind(c.x25519_public_key)
    .bind(c.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

const COLUMNS: &str =
    "centre_id, name, country, cert_sha256, x25519_public_key, created_at, disabled_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<CentreRow, DbError> {
    let id: String = row.try_get("centre_id")?;
    Ok(CentreRow {
        centre_id: CentreId::parse(&id).ok_or(DbError::Corrupt("centres.centre_id"))?,
        name: row.try_get("name")?,
        country: row.try_get("country")?,
        cert_sha256: row.try_get("cert_sha256")?,
        x25519_public_key: row.try_get("x25519_public_key")?,
        created_at: row.try_get("created_at")?,
        disabled_at: row.try_get("disabled_at")?,
    })
}

pub async fn list(db: &Db) -> Result<Vec<CentreRow>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM centres ORDER BY created_at, centre_id"
    )))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// One centre (also a disabled one), by id.
pub async fn get(db: &Db, centre_id: &CentreId) -> Result<Option<CentreRow>, DbError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM centres WHERE centre_id = $1"
    )))
    .bind(centre_id.as_str())
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// The centre (also a disabled one) whose pinned certificate has this
/// SHA-256 (lowercase hex).
pub async fn find_by_cert(db: &Db, cert_sha256: &str) -> Result<Option<CentreRow>, DbError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM centres WHERE cert_sha256 = $1"
    )))
    .bind(cert_sha256)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Replaces a centre's certificate and/or X25519 key. `Ok(false)` when the
/// certificate is registered to another centre.
pub async fn update(
    tx: &mut Tx<'_>,
    centre_id: &CentreId,
    cert: Option<(&str, &[u8])>,
    x25519_public_key: Option<&[u8]>,
    at: Timestamp,
) -> Result<bool, DbError> {
    if let Some((sha, der)) = cert {
        let taken: Option<String> = sqlx::query_scalar(
            "SELECT centre_id FROM centres WHERE cert_sha256 = $1 AND centre_id != $2",
        )
        .bind(sha)
        .bind(centre_id.as_str())
        .fetch_optional(&mut **tx)
        .await?;
        if taken.is_some() {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE centres SET cert_sha256 = $1, cert_der = $2, updated_at = $3 WHERE centre_id = $4",
        )
        .bind(sha)
        .bind(der)
        .bind(at)
        .bind(centre_id.as_str())
        .execute(&mut **tx)
        .await?;
    }
    if let Some(key) = x25519_public_key {
        sqlx::query(
            "UPDATE centres SET x25519_public_key = $1, updated_at = $2 WHERE centre_id = $3",
        )
        .bind(key)
        .bind(at)
        .bind(centre_id.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(true)
}

/// Disables a centre; returns whether it was active.
pub async fn disable(
    tx: &mut Tx<'_>,
    centre_id: &CentreId,
    at: Timestamp,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE centres SET disabled_at = $1 WHERE centre_id = $2 AND disabled_at IS NULL",
    )
    .bind(at)
    .bind(centre_id.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}
