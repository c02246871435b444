//! The case manifest (coordinator and patient views): files with their
//! decrypted metadata and who put them into the case (`source`), and DICOM
//! files grouped by study and series. The patient's view holds the
//! patient's own uploads and the files released to the patient, never a
//! centre's or coordinator's file before its release; a centre's view of
//! the case is only what it uploaded itself.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::crypto::CaseKey;
use crate::db::files::{FileRow, Source};
use crate::db::{self, Db, DbError, cases::CaseRow};
use crate::ids::{CaseId, CentreId};

/// Sealed purpose label of a file's metadata.
pub const FILE_META: &str = "file-meta";
/// Sealed purpose label of a case's reference.
pub const CASE_REFERENCE: &str = "case-reference";

/// DICOM header fields, stored sealed like filenames.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DicomFields {
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub modality: String,
    pub study_date: String,
    pub sop_class_uid: String,
}

/// Everything about a file's content, sealed under the case key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileMeta {
    pub filename: String,
    pub category: String,
    #[serde(default)]
    pub filetype: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub dicom: Option<DicomFields>,
    /// The file a coordinator's document translates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translation_of: Option<String>,
    /// BCP 47 language of a coordinator's document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ManifestFile {
    pub file_id: String,
    pub filename: String,
    pub category: String,
    pub size: i64,
    pub sha256: Option<String>,
    pub state: String,
    pub created_at: String,
    pub dicom: Option<DicomFields>,
    pub source: Source,
    /// When the file was released to the patient (`null`: not released).
    pub released_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub translation_of: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// Whose view of a case's files a manifest is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// Every file, with the case's reference.
    Coordinator,
    /// The patient's own uploads and the files released to the patient.
    Patient,
    /// The files a centre uploaded itself.
    Centre(CentreId),
}

impl View {
    /// Whether this view includes the file (its manifest entry, and for the
    /// patient also who downloaded it).
    pub fn shows(&self, row: &FileRow) -> bool {
        match self {
            View::Coordinator => true,
            View::Patient => row.source == Source::Patient || row.released_at.is_some(),
            View::Centre(id) => row.source.centre_id() == Some(id),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Series {
    pub series_instance_uid: String,
    pub modality: String,
    pub file_ids: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Study {
    pub study_instance_uid: String,
    pub series: Vec<Series>,
}

#[derive(Debug, Serialize)]
pub struct Manifest {
    pub case_id: CaseId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub files: Vec<ManifestFile>,
    pub studies: Vec<Study>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("case {0}: stored metadata does not decrypt")]
    Decrypt(CaseId),
}

/// Builds the manifest as `view` sees the case (the coordinator's with
/// the case's reference).
pub async fn build(
    db: &Db,
    key: &CaseKey,
    case: &CaseRow,
    view: &View,
) -> Result<Manifest, ManifestError> {
    let id = &case.case_id;
    let reference = match (&case.reference_sealed, *view == View::Coordinator) {
        (Some(sealed), true) => Some(
            key.open_field(id, CASE_REFERENCE, "", sealed)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ManifestError::Decrypt(id.clone()))?,
        ),
        _ => None,
    };
    let mut files = Vec::new();
    for row in db::files::list_for_case(db, id).await? {
        if !view.shows(&row) {
            continue;
        }
        let meta: FileMeta = key
            .open_field(id, FILE_META, row.file_id.as_str(), &row.meta_sealed)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| ManifestError::Decrypt(id.clone()))?;
        files.push(ManifestFile {
            file_id: row.file_id.to_string(),
            filename: meta.filename,
            category: meta.category,
            size: row.size,
            sha256: meta.sha256,
            state: row.state,
            created_at: row.created_at.to_string(),
            dicom: meta.dicom,
            source: row.source,
            // A centre is not told what the coordinator decided for the
            // patient.
            released_at: match view {
                View::Centre(_) => None,
                _ => row.released_at.map(|t| t.to_string()),
            },
            translation_of: meta.translation_of,
            language: meta.language,
        });
    }
    let studies = group_studies(&files);
    Ok(Manifest {
        case_id: id.clone(),
        reference,
        files,
        studies,
    })
}

fn group_studies(files: &[ManifestFile]) -> Vec<Study> {
    let mut studies: BTreeMap<&str, BTreeMap<&str, (&str, Vec<String>)>> = BTreeMap::new();
    for f in files {
        if let Some(d) = &f.dicom {
            studies
                .entry(&d.study_instance_uid)
                .or_default()
                .entry(&d.series_instance_uid)
                .or_insert_with(|| (&d.modality, Vec::new()))
                .1
                .push(f.file_id.clone());
        }
    }
    studies
        .into_iter()
        .map(|(study, series)| Study {
            study_instance_uid: study.to_owned(),
            series: series
                .into_iter()
                .map(|(uid, (modality, file_ids))| Series {
                    series_instance_uid: uid.to_owned(),
                    modality: modality.to_owned(),
                    file_ids,
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: &str, study: &str, series: &str) -> ManifestFile {
        ManifestFile {
            file_id: id.into(),
            filename: "x.dcm".into(),
            category: "imaging_dicom".into(),
            size: 1,
            sha256: None,
            state: "complete".into(),
            created_at: "t".into(),
            dicom: Some(DicomFields {
                study_instance_uid: study.into(),
                series_instance_uid: series.into(),
                modality: "CT".into(),
                study_date: "20260101".into(),
                sop_class_uid: "1.2".into(),
            }),
            source: Source::Patient,
            released_at: None,
            translation_of: None,
            language: None,
        }
    }

    #[test]
    fn groups_by_study_and_series() {
        let files = vec![
            file("a", "1", "1.1"),
            file("b", "1", "1.2"),
            file("c", "1", "1.1"),
            file("d", "2", "2.1"),
        ];
        let studies = group_studies(&files);
        assert_eq!(studies.len(), 2);
        assert_eq!(studies[0].series.len(), 2);
        assert_eq!(studies[0].series[0].file_ids, vec!["a", "c"]);
    }
}
