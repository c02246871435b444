//! Signed checkpoints of the audit log, one row per signed tree size.

use sqlx::Row;

use crate::audit::merkle::Hash;
use crate::clock::Timestamp;
use crate::db::{Db, DbError};

/// A stored checkpoint: the tree size and root it signs, the signed note
/// itself, and when it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    pub tree_size: u64,
    pub root: Hash,
    pub note: String,
    pub created_at: Timestamp,
}

/// The checkpoint of the largest tree size, if any.
pub async fn latest(db: &Db) -> Result<Option<CheckpointRow>, DbError> {
    let row = sqlx::query(
        "SELECT tree_size, root, note, created_at FROM audit_checkpoints
         ORDER BY tree_size DESC LIMIT 1",
    )
    .fetch_optional(db.pool())
    .await?;
    row.map(|row| {
        let root: Vec<u8> = row.try_get("root")?;
        Ok(CheckpointRow {
            tree_size: row.try_get::<i64, _>("tree_size")? as u64,
            root: Hash::try_from(root).map_err(|_| DbError::Corrupt("audit_checkpoints.root"))?,
            note: row.try_get("note")?,
            created_at: row.try_get("created_at")?,
        })
    })
    .transpose()
}

/// Stores a checkpoint; a second one for the same size (another replica
/// signed it first) is ignored. Returns whether this one was stored.
pub async fn insert(db: &Db, checkpoint: &CheckpointRow) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO audit_checkpoints (tree_size, root, note, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tree_size) DO NOTHING",
    )
    .bind(checkpoint.tree_size as i64)
    .bind(&checkpoint.root[..])
    .bind(&checkpoint.note)
    .bind(checkpoint.created_at)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}
