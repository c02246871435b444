//! The tus `Upload-Metadata` header and document categories.
//!
//! `Upload-Metadata: filename ZGljb20uZGNt,category aW1hZ2luZ19kaWNvbQ,filetype ...`
//! — comma-separated pairs of a key and an optional base64 value. casegate
//! reads `filename` (required; Uppy's `name` is accepted in its place),
//! `category` (default `other`) and `filetype`; other keys are ignored.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

pub const CATEGORIES: [&str; 15] = [
    "pathology_report",
    "pathology_slides",
    "imaging_dicom",
    "imaging_report",
    "molecular_report",
    "operative_note",
    "endoscopy_report",
    "discharge_summary",
    "treatment_history",
    "medication_list",
    "lab_results",
    "clinic_note",
    "patient_questions",
    "consent",
    "other",
];

const MAX_FILENAME_BYTES: usize = 1024;
const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Why an `Upload-Metadata` header is refused (the client's error, 400;
/// the text is the response's detail and the audit reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("Upload-Metadata is too long")]
    TooLong,
    #[error("empty metadata key")]
    EmptyKey,
    #[error("invalid metadata key")]
    InvalidKey,
    #[error("a metadata value is not base64")]
    NotBase64,
    #[error("a metadata value is not UTF-8")]
    NotUtf8,
    #[error("malformed Upload-Metadata pair")]
    MalformedPair,
    #[error("metadata key {0} appears twice")]
    DuplicateKey(String),
    #[error("Upload-Metadata must include filename")]
    NoFilename,
    #[error("filename is too long or holds control characters")]
    BadFilename,
    #[error("unknown category {0:?}")]
    UnknownCategory(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadMetadata {
    pub filename: String,
    pub category: String,
    pub filetype: Option<String>,
}

fn decode_value(raw: &str) -> Result<String, MetadataError> {
    let bytes = STANDARD
        .decode(raw)
        .or_else(|_| STANDARD_NO_PAD.decode(raw))
        .map_err(|_| MetadataError::NotBase64)?;
    String::from_utf8(bytes).map_err(|_| MetadataError::NotUtf8)
}

/// Parses the raw header into key → value (values may be empty).
pub fn parse_pairs(header: &str) -> Result<BTreeMap<String, String>, MetadataError> {
    if header.len() > MAX_HEADER_BYTES {
        return Err(MetadataError::TooLong);
    }
    let mut pairs = BTreeMap::new();
    for item in header.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut parts = item.split(' ').filter(|s| !s.is_empty());
        let key = parts.next().ok_or(MetadataError::EmptyKey)?;
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(MetadataError::InvalidKey);
        }
        let value = match parts.next() {
            Some(v) => decode_value(v)?,
            None => String::new(),
        };
        if parts.next().is_some() {
            return Err(MetadataError::MalformedPair);
        }
        if pairs.insert(key.to_owned(), value).is_some() {
            return Err(MetadataError::DuplicateKey(key.to_owned()));
        }
    }
    Ok(pairs)
}

/// The name the gateway stores (and lists in the manifest) for an
/// announced `filename`: trimmed, with bidi controls and other invisible
/// format characters (ZWNJ, soft hyphen, …) as `_`, since they would make
/// the name display as something else (`report\u{202e}fdp.exe` as
/// "reportexe.pdf") to coordinators and centres. Empty, over-long or
/// control-character names are refused. `casegate upload` announces and
/// matches files by this name, so a rerun finds what it sent.
pub fn stored_filename(announced: &str) -> Result<String, MetadataError> {
    let name = announced.trim();
    if name.is_empty() {
        return Err(MetadataError::NoFilename);
    }
    if name.len() > MAX_FILENAME_BYTES || name.chars().any(char::is_control) {
        return Err(MetadataError::BadFilename);
    }
    Ok(crate::text::neutralise(name))
}

impl UploadMetadata {
    pub fn parse(header: Option<&str>) -> Result<UploadMetadata, MetadataError> {
        let pairs = parse_pairs(header.unwrap_or(""))?;
        let filename = pairs
            .get("filename")
            .or_else(|| pairs.get("name"))
            .ok_or(MetadataError::NoFilename)?;
        let filename = stored_filename(filename)?;
        let category = pairs
            .get("category")
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .unwrap_or("other");
        if !CATEGORIES.contains(&category) {
            return Err(MetadataError::UnknownCategory(category.to_owned()));
        }
        let filetype = pairs
            .get("filetype")
            .or_else(|| pairs.get("type"))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty() && s.len() <= 255 && !s.chars().any(char::is_control));
        Ok(UploadMetadata {
            filename,
            category: category.to_owned(),
            filetype,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn parses_tus_metadata() {
        let h = format!(
            "filename {},category {},filetype {},is_confidential",
            b64("CT 1.dcm"),
            b64("imaging_dicom"),
            b64("application/dicom")
        );
        let m = UploadMetadata::parse(Some(&h)).unwrap();
        assert_eq!(m.filename, "CT 1.dcm");
        assert_eq!(m.category, "imaging_dicom");
        assert_eq!(m.filetype.as_deref(), Some("application/dicom"));
        let m = UploadMetadata::parse(Some(&format!("name {}", b64("report.pdf")))).unwrap();
        assert_eq!(
            (m.filename.as_str(), m.category.as_str()),
            ("report.pdf", "other")
        );
        let disguised = format!("filename {}", b64("report\u{202e}fdp.exe"));
        let m = UploadMetadata::parse(Some(&disguised)).unwrap();
        assert_eq!(m.filename, "report_fdp.exe");
        assert_eq!(
            stored_filename(" Dr\u{200c}Ahmadi\u{ad}.pdf ").unwrap(),
            "Dr_Ahmadi_.pdf"
        );
        assert_eq!(stored_filename("Icon\r"), Ok("Icon".to_owned()));
        assert_eq!(stored_filename("a\rb"), Err(MetadataError::BadFilename));
        assert_eq!(stored_filename(" "), Err(MetadataError::NoFilename));
    }

    #[test]
    fn rejects_bad_metadata() {
        for bad in [
            None,
            Some("filetype dGV4dA==".to_string()),
            Some("filename !!!".to_string()),
            Some(format!("filename {},category {}", b64("a"), b64("x-ray"))),
            Some(format!("filename {},filename {}", b64("a"), b64("b"))),
            Some(format!("filename {}", b64("a\nb"))),
            Some(format!("filename {} extra", b64("a"))),
        ] {
            assert!(UploadMetadata::parse(bad.as_deref()).is_err(), "{bad:?}");
        }
    }
}
