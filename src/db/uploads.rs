//! tus upload sessions: the durable state of each upload in one row.

use sqlx::Row;

use super::files::Source;
use super::{Db, DbError, Tx};
use crate::clock::Timestamp;
use crate::ids::{CaseId, FileId, UploadId};
use crate::store::ResumeToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadState {
    Active,
    Complete,
    Terminated,
    Expired,
}

impl UploadState {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadState::Active => "active",
            UploadState::Complete => "complete",
            UploadState::Terminated => "terminated",
            UploadState::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Option<UploadState> {
        Some(match s {
            "active" => UploadState::Active,
            "complete" => UploadState::Complete,
            "terminated" => UploadState::Terminated,
            "expired" => UploadState::Expired,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct UploadRow {
    pub upload_id: UploadId,
    pub case_id: CaseId,
    pub file_id: FileId,
    pub length: u64,
    pub offset: u64,
    pub tail_sealed: Option<Vec<u8>>,
    /// The object store's resume token, kept as the store wrote it.
    pub resume: ResumeToken,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub state: UploadState,
    pub metadata_sealed: Option<Vec<u8>>,
    /// Who created the upload; only the same uploader may resume or end it.
    pub uploader: Source,
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<UploadRow, DbError> {
    let u64_col = |name: &'static str| -> Result<u64, DbError> {
        let v: i64 = row.try_get(name)?;
        u64::try_from(v).map_err(|_| DbError::Corrupt(name))
    };
    let resume: String = row.try_get("store_progress")?;
    let state: String = row.try_get("state")?;
    let uploader: String = row.try_get("uploader")?;
    let (upload_id, case_id, file_id): (String, String, String) = (
        row.try_get("upload_id")?,
        row.try_get("case_id")?,
        row.try_get("file_id")?,
    );
    Ok(UploadRow {
        upload_id: UploadId::parse(&upload_id).ok_or(DbError::Corrupt("uploads.upload_id"))?,
        case_id: CaseId::parse(&case_id).ok_or(DbError::Corrupt("uploads.case_id"))?,
        file_id: FileId::parse(&file_id).ok_or(DbError::Corrupt("uploads.file_id"))?,
        length: u64_col("upload_length")?,
        offset: u64_col("upload_offset")?,
        tail_sealed: row.try_get("tail_sealed")?,
        resume: ResumeToken::from_stored(resume),
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        state: UploadState::parse(&state).ok_or(DbError::Corrupt("uploads.state"))?,
        metadata_sealed: row.try_get("metadata_sealed")?,
        uploader: Source::from_stored(&uploader).ok_or(DbError::Corrupt("uploads.uploader"))?,
    })
}

const COLUMNS: &str = "upload_id, case_id, file_id, upload_length, upload_offset, tail_sealed, store_progress, \
                       created_at, expires_at, state, metadata_sealed, uploader";

pub async fn insert(tx: &mut Tx<'_>, u: &UploadRow) -> Result<(), DbError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO uploads ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    )))
    .bind(u.upload_id.as_str())
    .bind(u.case_id.as_str())
    .bind(u.file_id.as_str())
    .bind(u.length as i64)
    .bind(u.offset as i64)
    .bind(&u.tail_sealed)
    .bind(u.resume.as_str())
    .bind(u.created_at)
    .bind(u.expires_at)
    .bind(u.state.as_str())
    .bind(&u.metadata_sealed)
    .bind(u.uploader.to_stored())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The upload with this id in this case (any state).
pub async fn get(
    db: &Db,
    case_id: &CaseId,
    upload_id: &UploadId,
) -> Result<Option<UploadRow>, DbError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM uploads WHERE upload_id = $1 AND case_id = $2"
    )))
    .bind(upload_id.as_str())
    .bind(case_id.as_str())
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// The upload with this id, whatever its case (a coordinator's requests
/// name only the upload).
pub async fn find(db: &Db, upload_id: &UploadId) -> Result<Option<UploadRow>, DbError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM uploads WHERE upload_id = $1"
    )))
    .bind(upload_id.as_str())
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Records a new durable point, only if the row is still at `from_offset`
/// and active (a concurrent writer or a termination wins otherwise).
pub async fn advance(
    tx: &mut Tx<'_>,
    upload_id: &UploadId,
    from_offset: u64,
    to_offset: u64,
    tail_sealed: Option<&[u8]>,
    resume: &ResumeToken,
    expires_at: Timestamp,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE uploads SET upload_offset = $1, tail_sealed = $2, store_progress = $3, expires_at = $4
         WHERE upload_id = $5 AND upload_offset = $6 AND state = 'active'",
    )
    .bind(to_offset as i64)
    .bind(tail_sealed)
    .bind(resume.as_str())
    .bind(expires_at)
    .bind(upload_id.as_str())
    .bind(from_offset as i64)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_state(
    tx: &mut Tx<'_>,
    upload_id: &UploadId,
    from: UploadState,
    to: UploadState,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE uploads SET state = $1, tail_sealed = NULL WHERE upload_id = $2 AND state = $3",
    )
    .bind(to.as_str())
    .bind(upload_id.as_str())
    .bind(from.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Active uploads whose expiry has passed. An upload with every byte
/// stored never expires: its client was told the file is safe, and only
/// its completion is left (see `stalled_complete`).
pub async fn expired(db: &Db, now: Timestamp, limit: i64) -> Result<Vec<UploadRow>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM uploads WHERE state = 'active' AND expires_at <= $1
           AND NOT (upload_offset = upload_length AND upload_length > 0)
         ORDER BY expires_at LIMIT $2"
    )))
    .bind(now)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Active uploads of a case (for case deletion).
pub async fn active_for_case(db: &Db, case_id: &CaseId) -> Result<Vec<UploadRow>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM uploads WHERE state = 'active' AND case_id = $1"
    )))
    .bind(case_id.as_str())
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Declared bytes and number of files of a case, for quotas (terminated and
/// expired uploads no longer count). Read inside the write transaction that
/// inserts the new file, so parallel creates cannot all pass one check.
pub async fn case_usage(tx: &mut Tx<'_>, case_id: &CaseId) -> Result<(u64, u64), DbError> {
    let (bytes, files): (i64, i64) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT), COUNT(*) FROM files WHERE case_id = $1",
    )
    .bind(case_id.as_str())
    .fetch_one(&mut **tx)
    .await?;
    Ok((bytes.max(0) as u64, files.max(0) as u64))
}

/// Active uploads with every byte stored whose completion did not finish.
///
/// Paged by id after `after`, so a sweep that starts where the last one
/// stopped reaches every such upload, however many keep failing.
pub async fn stalled_complete(
    db: &Db,
    after: Option<&UploadId>,
    limit: i64,
) -> Result<Vec<UploadRow>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM uploads WHERE state = 'active' AND upload_offset = upload_length
             AND upload_length > 0 AND upload_id > $1 ORDER BY upload_id LIMIT $2"
    )))
    .bind(after.map_or("", |id| id.as_str()))
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::files::{NewFile, insert as insert_file};

    /// A case with 25 uploads of which every third is still receiving.
    async fn case_with_uploads(db: &Db) {
        let case_id = CaseId::generate();
        sqlx::query(
            "INSERT INTO cases (case_id, created_at, state, upload_expires_at)
             VALUES ($1, '2026-11-29T00:00:00Z', 'open', '2026-12-29T00:00:00Z')",
        )
        .bind(case_id.as_str())
        .execute(db.pool())
        .await
        .unwrap();
        let at: Timestamp = "2026-11-29T00:00:00Z".parse().unwrap();
        let mut tx = db.begin().await.unwrap();
        for i in 0..25u64 {
            let file_id = FileId::generate();
            let new = NewFile {
                file_id: &file_id,
                case_id: &case_id,
                state: "uploading",
                size: 10,
                created_at: at,
                meta_sealed: b"sealed",
                key_id: &[7; 16],
                wrapped_key: b"wrapped",
                source: &Source::Patient,
            };
            insert_file(&mut tx, &new).await.unwrap();
            let row = UploadRow {
                upload_id: UploadId::generate(),
                case_id: case_id.clone(),
                file_id,
                length: 10,
                offset: if i % 3 == 0 { 4 } else { 10 },
                tail_sealed: None,
                resume: ResumeToken::start(),
                created_at: at,
                expires_at: at,
                state: UploadState::Active,
                metadata_sealed: None,
                uploader: Source::Patient,
            };
            insert(&mut tx, &row).await.unwrap();
        }
        tx.commit().await.unwrap();
    }

    /// Stalled completions are paged by id: every one is reached, page
    /// after page, however many come before it.
    #[tokio::test]
    async fn stalled_completions_page_through_all_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&crate::db::test_url(dir.path()).await)
            .await
            .unwrap();
        case_with_uploads(&db).await;
        let (mut seen, mut after) = (Vec::new(), None);
        loop {
            let page = stalled_complete(&db, after.as_ref(), 7).await.unwrap();
            seen.extend(page.iter().map(|u| u.upload_id.clone()));
            match page.last() {
                Some(last) if page.len() == 7 => after = Some(last.upload_id.clone()),
                _ => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        sorted.dedup();
        assert_eq!(
            (seen.len(), sorted.len()),
            (16, 16),
            "all 16 stalled, once each"
        );
    }
}
