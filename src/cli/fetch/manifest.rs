//! The grant's file list as `GET /api/v1/grant` returns it, read within
//! [`MAX_MANIFEST_BYTES`] and parsed once: a file whose entry is malformed
//! (no valid id, size or SHA-256) is refused before anything touches the
//! disk, since its id names temporary files and its sizes bound every read.

use serde_json::Value;

use super::problem::problem;
use crate::cli::bounded::{BodyError, MAX_MANIFEST_BYTES, body_within};
use crate::crypto::format::{CHUNK_OVERHEAD, HEADER_LEN};
use crate::ids::FileId;

/// The grant as listed; entries are parsed one by one, so one bad entry
/// does not hide the others.
pub struct Grant {
    pub grant_id: String,
    pub case_id: String,
    pub entries: Vec<Value>,
}

pub async fn fetch(client: &reqwest::Client, base: &str, token: &str) -> Result<Grant, String> {
    let resp = client
        .get(format!("{base}/api/v1/grant"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("grant: {}", problem(resp).await.message));
    }
    let body = body_within(resp, MAX_MANIFEST_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => format!(
                "the grant's manifest is larger than {} MiB; refusing to read it",
                MAX_MANIFEST_BYTES >> 20
            ),
            BodyError::Interrupted(why) => format!("reading the grant's manifest: {why}"),
        })?;
    let grant: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("the grant's manifest is not JSON: {e}"))?;
    let text = |key: &str| grant[key].as_str().unwrap_or("").to_owned();
    Ok(Grant {
        grant_id: text("grant_id"),
        case_id: text("case_id"),
        entries: grant["files"].as_array().cloned().unwrap_or_default(),
    })
}

/// One file of the grant, as the gateway described it. Names and DICOM
/// UIDs are raw: whatever the patient's files held.
#[derive(Debug, Clone)]
pub struct GrantedFile {
    pub file_id: FileId,
    pub filename: String,
    pub category: String,
    /// StudyInstanceUID, SeriesInstanceUID: the non-empty ones, in order.
    pub folders: Vec<String>,
    pub size: u64,
    pub sealed_size: u64,
    /// The sealed object's `ETag` value, if the gateway lists it.
    pub sealed_etag: Option<String>,
    pub sha256: String,
    /// StudyInstanceUID, SeriesInstanceUID and Modality as the grant lists
    /// them (empty when not DICOM), for the index.
    pub dicom: [String; 3],
    /// SOPInstanceUID, when the gateway indexed it.
    pub instance: Option<String>,
}

impl GrantedFile {
    pub fn parse(entry: &Value) -> Result<GrantedFile, String> {
        let file_id = entry["file_id"]
            .as_str()
            .and_then(FileId::parse)
            .ok_or("the grant lists a file without a valid id")?;
        let field = |name: &str| {
            entry[name]
                .as_u64()
                .ok_or(format!("the grant lists {file_id} without {name}"))
        };
        let (size, sealed_size) = (field("size")?, field("sealed_size")?);
        // Even an empty file is a header and one sealed chunk.
        let smallest = (HEADER_LEN + CHUNK_OVERHEAD) as u64;
        if sealed_size < size.saturating_add(smallest) {
            return Err(format!(
                "the grant lists {file_id} with a sealed size ({sealed_size}) that cannot hold \
                 {size} bytes"
            ));
        }
        let hex64 = |s: &&str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        let sha256 = entry["sha256"]
            .as_str()
            .filter(hex64)
            .ok_or(format!("the grant lists {file_id} without a SHA-256"))?
            .to_ascii_lowercase();
        let sealed_etag = match &entry["sealed_etag"] {
            Value::Null => None,
            etag => Some(
                etag.as_str()
                    .filter(hex64)
                    .ok_or(format!(
                        "the grant lists {file_id} with a malformed sealed_etag"
                    ))?
                    .to_ascii_lowercase(),
            ),
        };
        let folders = ["study_instance_uid", "series_instance_uid"]
            .iter()
            .filter_map(|key| entry["dicom"][key].as_str())
            .filter(|uid| !uid.is_empty())
            .map(str::to_owned)
            .collect();
        let dicom = ["study_instance_uid", "series_instance_uid", "modality"]
            .map(|key| entry["dicom"][key].as_str().unwrap_or("").to_owned());
        let instance = entry["dicom"]["sop_instance_uid"]
            .as_str()
            .map(str::to_owned);
        Ok(GrantedFile {
            dicom,
            instance,
            filename: entry["filename"].as_str().unwrap_or("unnamed").to_owned(),
            category: entry["category"].as_str().unwrap_or("other").to_owned(),
            file_id,
            folders,
            size,
            sealed_size,
            sealed_etag,
            sha256,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_without_a_usable_id_size_or_hash_are_refused() {
        let good = serde_json::json!({
            "file_id": format!("file_{}", "a".repeat(32)), "filename": "x.pdf",
            "category": "other", "size": 1, "sealed_size": 61,
            "sha256": "AB".repeat(32),
            "dicom": { "study_instance_uid": "1.2", "series_instance_uid": "" },
        });
        let parsed = GrantedFile::parse(&good).unwrap();
        assert_eq!(parsed.folders, vec!["1.2".to_string()]);
        assert_eq!(parsed.sha256, "ab".repeat(32));
        for (key, value) in [
            ("file_id", serde_json::json!("../../etc")),
            ("file_id", serde_json::json!("file_x/..")),
            ("size", serde_json::json!(-1)),
            ("sealed_size", Value::Null),
            ("sealed_size", serde_json::json!(0)),
            ("sealed_size", serde_json::json!(60)),
            ("sha256", serde_json::json!("abc")),
        ] {
            let mut bad = good.clone();
            bad[key] = value;
            assert!(GrantedFile::parse(&bad).is_err(), "{key}");
        }
    }
}
