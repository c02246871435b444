//! Files of a case: state and size in the clear (needed for quotas and
//! listings), everything describing the content sealed under the case key.

use sqlx::Row;

use super::{Db, DbError};
use crate::clock::Timestamp;
use crate::ids::{CaseId, FileId};

#[derive(Debug, Clone)]
pub struct FileRow {
    pub file_id: FileId,
    pub state: String,
    pub size: i64,
    pub created_at: Timestamp,
    pub meta_sealed: Vec<u8>,
}

pub async fn list_for_case(db: &Db, case_id: &CaseId) -> Result<Vec<FileRow>, DbError> {
    let rows = sqlx::query(
        "SELECT file_id, state, size, created_at, meta_sealed FROM files WHERE case_id = ?
         ORDER BY created_at, file_id",
    )
    .bind(case_id.as_str())
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("file_id")?;
            Ok(FileRow {
                file_id: FileId::parse(&id).ok_or(DbError::Corrupt("files.file_id"))?,
                state: row.try_get("state")?,
                size: row.try_get("size")?,
                created_at: row.try_get("created_at")?,
                meta_sealed: row.try_get("meta_sealed")?,
            })
        })
        .collect()
}

pub struct NewFile<'a> {
    pub file_id: &'a FileId,
    pub case_id: &'a CaseId,
    pub state: &'a str,
    pub size: i64,
    pub created_at: Timestamp,
    pub meta_sealed: &'a [u8],
    pub key_id: &'a [u8; 16],
    pub wrapped_key: &'a [u8],
}

pub async fn insert(tx: &mut super::Tx<'_>, f: &NewFile<'_>) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO files (file_id, case_id, state, size, created_at, meta_sealed, key_id, wrapped_key)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(f.file_id.as_str())
    .bind(f.case_id.as_str())
    .bind(f.state)
    .bind(f.size)
    .bind(f.created_at)
    .bind(f.meta_sealed)
    .bind(f.key_id.as_slice())
    .bind(f.wrapped_key)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A file's key id and wrapped data key.
pub async fn wrapped_key(
    db: &Db,
    case_id: &CaseId,
    file_id: &FileId,
) -> Result<Option<([u8; 16], Vec<u8>)>, DbError> {
    type KeyColumns = (Option<Vec<u8>>, Option<Vec<u8>>);
    let row: Option<KeyColumns> =
        sqlx::query_as("SELECT key_id, wrapped_key FROM files WHERE case_id = ? AND file_id = ?")
            .bind(case_id.as_str())
            .bind(file_id.as_str())
            .fetch_optional(db.pool())
            .await?;
    match row {
        Some((Some(id), Some(wrapped))) => {
            let id: [u8; 16] = id
                .try_into()
                .map_err(|_| DbError::Corrupt("files.key_id"))?;
            Ok(Some((id, wrapped)))
        }
        _ => Ok(None),
    }
}

/// Removes a file record (its upload was terminated or expired).
pub async fn delete(tx: &mut super::Tx<'_>, file_id: &FileId) -> Result<(), DbError> {
    sqlx::query("DELETE FROM files WHERE file_id = ?")
        .bind(file_id.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records a finished file: its final state and completed sealed metadata.
pub async fn finish(
    tx: &mut super::Tx<'_>,
    file_id: &FileId,
    state: &str,
    meta_sealed: &[u8],
    object_sha256: &str,
) -> Result<(), DbError> {
    sqlx::query("UPDATE files SET state = ?, meta_sealed = ?, object_sha256 = ? WHERE file_id = ?")
        .bind(state)
        .bind(meta_sealed)
        .bind(object_sha256)
        .bind(file_id.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A file's sealed metadata.
pub async fn meta_sealed(db: &Db, file_id: &FileId) -> Result<Option<Vec<u8>>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT meta_sealed FROM files WHERE file_id = ?")
            .bind(file_id.as_str())
            .fetch_optional(db.pool())
            .await?,
    )
}

/// SHA-256 of a completed file's stored object (the sealed download's ETag).
pub async fn object_sha256(db: &Db, file_id: &FileId) -> Result<Option<String>, DbError> {
    Ok(
        sqlx::query_scalar::<_, Option<String>>(
            "SELECT object_sha256 FROM files WHERE file_id = ?",
        )
        .bind(file_id.as_str())
        .fetch_optional(db.pool())
        .await?
        .flatten(),
    )
}
