//! Files of a case: state and size in the clear (needed for quotas and
//! listings), everything describing the content sealed under the case key.

use sqlx::Row;

use super::{Db, DbError};
use crate::ids::{CaseId, FileId};

#[derive(Debug, Clone)]
pub struct FileRow {
    pub file_id: FileId,
    pub state: String,
    pub size: i64,
    pub created_at: String,
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
