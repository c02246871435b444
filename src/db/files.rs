//! Files of a case: state and size in the clear (needed for quotas and
//! listings), everything describing the content sealed under the case key.

use sqlx::Row;

use super::{Db, DbError};
use crate::clock::Timestamp;
use crate::crypto::format::header::valid_chunk_size;
use crate::ids::{CaseId, CentreId, FileId};

/// Who put a file into its case: the patient, a reviewing centre (its
/// written opinion) or a coordinator (a translation, a summary). Also who
/// created an upload: only the same uploader may resume or end it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    Patient,
    Centre { centre_id: CentreId },
    Coordinator,
}

impl Source {
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Patient => "patient",
            Source::Centre { .. } => "centre",
            Source::Coordinator => "coordinator",
        }
    }

    pub fn centre_id(&self) -> Option<&CentreId> {
        match self {
            Source::Centre { centre_id } => Some(centre_id),
            _ => None,
        }
    }

    /// The one-column form (`patient`, `coordinator`, `centre:<id>`).
    pub fn to_stored(&self) -> String {
        match self {
            Source::Centre { centre_id } => format!("centre:{centre_id}"),
            other => other.kind().to_owned(),
        }
    }

    pub fn from_stored(s: &str) -> Option<Source> {
        match s.split_once(':') {
            Some(("centre", id)) => {
                CentreId::parse(id).map(|centre_id| Source::Centre { centre_id })
            }
            Some(_) => None,
            None => Source::from_columns(s, None),
        }
    }

    /// From the files table's `source_kind` and `source_centre_id`.
    fn from_columns(kind: &str, centre: Option<&str>) -> Option<Source> {
        match (kind, centre) {
            ("patient", None) => Some(Source::Patient),
            ("coordinator", None) => Some(Source::Coordinator),
            ("centre", Some(id)) => {
                CentreId::parse(id).map(|centre_id| Source::Centre { centre_id })
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct FileRow {
    pub file_id: FileId,
    pub state: String,
    pub size: i64,
    pub created_at: Timestamp,
    pub meta_sealed: Vec<u8>,
    /// Plaintext bytes per chunk of the stored object (its header's chunk
    /// size, recorded at completion).
    pub chunk_size: u32,
    /// The stored object's digest, the sealed download's `ETag` (hex; set
    /// at completion).
    pub object_digest: Option<String>,
    pub source: Source,
    /// When a coordinator released the file to the patient.
    pub released_at: Option<Timestamp>,
    /// The DICOMweb index of a DICOM file, sealed under the case key;
    /// `None` for other files and for DICOM files completed before it was
    /// recorded (read from the object on first use, then stored).
    pub dicom_index_sealed: Option<Vec<u8>>,
}

const FILE_COLUMNS: &str = "file_id, state, size, created_at, meta_sealed, chunk_size, object_sha256, source_kind, source_centre_id, released_at, dicom_index_sealed";

fn file_from_row(row: &sqlx::any::AnyRow) -> Result<FileRow, DbError> {
    let id: String = row.try_get("file_id")?;
    let chunk_size: i64 = row.try_get("chunk_size")?;
    let chunk_size = u32::try_from(chunk_size)
        .ok()
        .filter(|c| valid_chunk_size(*c))
        .ok_or(DbError::Corrupt("files.chunk_size"))?;
    let kind: String = row.try_get("source_kind")?;
    let centre: Option<String> = row.try_get("source_centre_id")?;
    Ok(FileRow {
        file_id: FileId::parse(&id).ok_or(DbError::Corrupt("files.file_id"))?,
        state: row.try_get("state")?,
        size: row.try_get("size")?,
        created_at: row.try_get("created_at")?,
        meta_sealed: row.try_get("meta_sealed")?,
        chunk_size,
        object_digest: row.try_get("object_sha256")?,
        source: Source::from_columns(&kind, centre.as_deref())
            .ok_or(DbError::Corrupt("files.source_kind"))?,
        released_at: row.try_get("released_at")?,
        dicom_index_sealed: row.try_get("dicom_index_sealed")?,
    })
}

pub async fn list_for_case(db: &Db, case_id: &CaseId) -> Result<Vec<FileRow>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {FILE_COLUMNS} FROM files WHERE case_id = $1 ORDER BY created_at, file_id"
    )))
    .bind(case_id.as_str())
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(file_from_row).collect()
}

/// One file of a case.
pub async fn get(db: &Db, case_id: &CaseId, file_id: &FileId) -> Result<Option<FileRow>, DbError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {FILE_COLUMNS} FROM files WHERE case_id = $1 AND file_id = $2"
    )))
    .bind(case_id.as_str())
    .bind(file_id.as_str())
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(file_from_row).transpose()
}

/// Marks a file released to the patient; false if it already was (the
/// first release's time and actor stay).
pub async fn release(
    tx: &mut super::Tx<'_>,
    case_id: &CaseId,
    file_id: &FileId,
    at: Timestamp,
    by: &str,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE files SET released_at = $1, released_by = $2
         WHERE case_id = $3 AND file_id = $4 AND released_at IS NULL",
    )
    .bind(at)
    .bind(by)
    .bind(case_id.as_str())
    .bind(file_id.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
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
    pub source: &'a Source,
}

pub async fn insert(tx: &mut super::Tx<'_>, f: &NewFile<'_>) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO files (file_id, case_id, state, size, created_at, meta_sealed, key_id, wrapped_key,
                            source_kind, source_centre_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(f.file_id.as_str())
    .bind(f.case_id.as_str())
    .bind(f.state)
    .bind(f.size)
    .bind(f.created_at)
    .bind(f.meta_sealed)
    .bind(f.key_id.as_slice())
    .bind(f.wrapped_key)
    .bind(f.source.kind())
    .bind(f.source.centre_id().map(CentreId::as_str))
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
        sqlx::query_as("SELECT key_id, wrapped_key FROM files WHERE case_id = $1 AND file_id = $2")
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
    sqlx::query("DELETE FROM files WHERE file_id = $1")
        .bind(file_id.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What completion records of a file.
pub struct Finished<'a> {
    pub state: &'a str,
    /// The sealed metadata, completed (SHA-256, DICOM fields).
    pub meta_sealed: &'a [u8],
    /// SHA-256 (hex) of the stored object.
    pub object_sha256: &'a str,
    /// The chunk size in the stored object's header.
    pub chunk_size: u32,
    /// The sealed DICOMweb index (DICOM files only).
    pub dicom_index_sealed: Option<&'a [u8]>,
}

/// Records a finished file: its final state, completed sealed metadata and
/// what downloads need to know of its object.
pub async fn finish(
    tx: &mut super::Tx<'_>,
    file_id: &FileId,
    done: &Finished<'_>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE files SET state = $1, meta_sealed = $2, object_sha256 = $3, chunk_size = $4,
             dicom_index_sealed = $5
         WHERE file_id = $6",
    )
    .bind(done.state)
    .bind(done.meta_sealed)
    .bind(done.object_sha256)
    .bind(i64::from(done.chunk_size))
    .bind(done.dicom_index_sealed)
    .bind(file_id.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Stores the sealed DICOMweb index of a complete file that had none (it
/// was completed before the index existed and its header was read since).
/// Stores a file's sealed DICOM index in place of `was` (none, or a
/// damaged one), unless someone stored another meanwhile.
pub async fn set_dicom_index(
    db: &Db,
    file_id: &FileId,
    was: Option<&[u8]>,
    sealed: &[u8],
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE files SET dicom_index_sealed = $1 WHERE file_id = $2 AND dicom_index_sealed IS NOT DISTINCT FROM $3",
    )
    .bind(sealed)
    .bind(file_id.as_str())
    .bind(was)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// A file's sealed metadata.
pub async fn meta_sealed(db: &Db, file_id: &FileId) -> Result<Option<Vec<u8>>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT meta_sealed FROM files WHERE file_id = $1")
            .bind(file_id.as_str())
            .fetch_optional(db.pool())
            .await?,
    )
}

/// SHA-256 of a completed file's stored object (the sealed download's ETag).
pub async fn object_sha256(db: &Db, file_id: &FileId) -> Result<Option<String>, DbError> {
    Ok(sqlx::query_scalar::<_, Option<String>>(
        "SELECT object_sha256 FROM files WHERE file_id = $1",
    )
    .bind(file_id.as_str())
    .fetch_optional(db.pool())
    .await?
    .flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::format::DEFAULT_CHUNK_SIZE;

    async fn db_with_file(dir: &std::path::Path) -> (Db, CaseId, FileId) {
        let db = Db::open(&crate::db::test_url(dir).await).await.unwrap();
        let (case_id, file_id) = (CaseId::generate(), FileId::generate());
        sqlx::query(
            "INSERT INTO cases (case_id, created_at, state, upload_expires_at)
             VALUES ($1, '2026-11-29T00:00:00Z', 'open', '2026-12-29T00:00:00Z')",
        )
        .bind(case_id.as_str())
        .execute(db.pool())
        .await
        .unwrap();
        let mut tx = db.begin().await.unwrap();
        let new = NewFile {
            file_id: &file_id,
            case_id: &case_id,
            state: "uploading",
            size: 10,
            created_at: "2026-11-29T00:00:00Z".parse().unwrap(),
            meta_sealed: b"sealed",
            key_id: &[7; 16],
            wrapped_key: b"wrapped",
            source: &Source::Patient,
        };
        insert(&mut tx, &new).await.unwrap();
        tx.commit().await.unwrap();
        (db, case_id, file_id)
    }

    #[tokio::test]
    async fn completion_records_the_objects_chunk_size() {
        let dir = tempfile::tempdir().unwrap();
        let (db, case_id, file_id) = db_with_file(dir.path()).await;
        let listed = list_for_case(&db, &case_id).await.unwrap();
        assert_eq!(listed[0].chunk_size, DEFAULT_CHUNK_SIZE, "column default");

        let mut tx = db.begin().await.unwrap();
        let done = Finished {
            state: "complete",
            meta_sealed: b"sealed, completed",
            object_sha256: "00",
            chunk_size: 16 * 1024,
            dicom_index_sealed: Some(b"index"),
        };
        finish(&mut tx, &file_id, &done).await.unwrap();
        tx.commit().await.unwrap();
        let listed = list_for_case(&db, &case_id).await.unwrap();
        assert_eq!(listed[0].chunk_size, 16 * 1024);
        assert_eq!(listed[0].state, "complete");
        assert_eq!(listed[0].dicom_index_sealed.as_deref(), Some(&b"index"[..]));

        // Within the column's bounds but not a chunk size a reader accepts.
        sqlx::query("UPDATE files SET chunk_size = 100")
            .execute(db.pool())
            .await
            .unwrap();
        assert!(matches!(
            list_for_case(&db, &case_id).await,
            Err(DbError::Corrupt("files.chunk_size"))
        ));
    }
}
