//! The tus `Upload-Metadata` header and document categories.
//!
//! `Upload-Metadata: filename ZGljb20uZGNt,category aW1hZ2luZ19kaWNvbQ,filetype ...`
//! — comma-separated pairs of a key and an optional base64 value. casegate
//! reads `filename` (required; Uppy's `name` is accepted in its place),
//! `category` and `filetype`; a coordinator's upload also `case_id`
//! (required: the case it goes into), `translation_of` (a file id) and
//! `language` (a BCP 47 tag); other keys are ignored.
//!
//! Categories by uploader: a patient or a coordinator any (a patient may
//! hold an earlier opinion; who wrote a document is its `source`, never its
//! category), default `other`, for a coordinator `translation` when
//! `translation_of` is given; a centre `second_opinion_report` (default)
//! or `other`.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

use crate::db::files::Source;

/// Every document category.
pub const CATEGORIES: [&str; 17] = [
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
    "second_opinion_report",
    "translation",
    "other",
];

/// What a centre may file its upload under.
const CENTRE_CATEGORIES: [&str; 2] = ["second_opinion_report", "other"];
/// Longest `language` tag accepted (RFC 5646's practical limit).
const MAX_LANGUAGE_BYTES: usize = 35;

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
    #[error("category {0:?} is not open to this uploader")]
    CategoryNotAllowed(String),
    #[error("language must be a BCP 47 tag such as en, de-CH or zh-Hant")]
    BadLanguage,
    #[error("{0} is only for a coordinator's upload")]
    NotForThisUploader(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadMetadata {
    pub filename: String,
    pub category: String,
    pub filetype: Option<String>,
    /// The case a coordinator's upload goes into (as sent; the caller
    /// parses and looks it up).
    pub case_id: Option<String>,
    /// The file a coordinator's document translates (as sent).
    pub translation_of: Option<String>,
    /// BCP 47 language tag of a coordinator's document.
    pub language: Option<String>,
}

/// Whether `tag` has the shape of a BCP 47 language tag: a 2–3 letter
/// (or 4–8 letter registered) primary subtag, then subtags of 1–8 letters
/// and digits. The registry itself is not consulted.
pub fn is_language_tag(tag: &str) -> bool {
    let mut subtags = tag.split('-');
    let primary_ok = subtags
        .next()
        .is_some_and(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    tag.len() <= MAX_LANGUAGE_BYTES
        && primary_ok
        && subtags
            .all(|s| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The category of an upload by `uploader`: the one sent, if open to it,
/// else its default.
fn category_for(
    sent: Option<&str>,
    uploader: &Source,
    translation: bool,
) -> Result<String, MetadataError> {
    let default = match uploader {
        Source::Centre { .. } => "second_opinion_report",
        Source::Coordinator if translation => "translation",
        _ => "other",
    };
    let category = sent.unwrap_or(default);
    if !CATEGORIES.contains(&category) {
        return Err(MetadataError::UnknownCategory(category.to_owned()));
    }
    if uploader.centre_id().is_some() && !CENTRE_CATEGORIES.contains(&category) {
        return Err(MetadataError::CategoryNotAllowed(category.to_owned()));
    }
    Ok(category.to_owned())
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
    /// The metadata of an upload by `uploader` (see the module doc for
    /// what each may send).
    pub fn parse(header: Option<&str>, uploader: &Source) -> Result<UploadMetadata, MetadataError> {
        let pairs = parse_pairs(header.unwrap_or(""))?;
        let filename = pairs
            .get("filename")
            .or_else(|| pairs.get("name"))
            .ok_or(MetadataError::NoFilename)?;
        let filename = stored_filename(filename)?;
        let sent = |key: &str| {
            pairs
                .get(key)
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        let (case_id, translation_of, language) =
            (sent("case_id"), sent("translation_of"), sent("language"));
        if *uploader != Source::Coordinator {
            for (key, value) in [
                ("case_id", &case_id),
                ("translation_of", &translation_of),
                ("language", &language),
            ] {
                if value.is_some() {
                    return Err(MetadataError::NotForThisUploader(key));
                }
            }
        }
        if language.as_deref().is_some_and(|l| !is_language_tag(l)) {
            return Err(MetadataError::BadLanguage);
        }
        let category = category_for(
            sent("category").as_deref(),
            uploader,
            translation_of.is_some(),
        )?;
        let filetype = pairs
            .get("filetype")
            .or_else(|| pairs.get("type"))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty() && s.len() <= 255 && !s.chars().any(char::is_control));
        Ok(UploadMetadata {
            filename,
            category,
            filetype,
            case_id,
            translation_of,
            language,
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
        let m = UploadMetadata::parse(Some(&h), &Source::Patient).unwrap();
        assert_eq!(m.filename, "CT 1.dcm");
        assert_eq!(m.category, "imaging_dicom");
        assert_eq!(m.filetype.as_deref(), Some("application/dicom"));
        let m = UploadMetadata::parse(
            Some(&format!("name {}", b64("report.pdf"))),
            &Source::Patient,
        )
        .unwrap();
        assert_eq!(
            (m.filename.as_str(), m.category.as_str()),
            ("report.pdf", "other")
        );
        let disguised = format!("filename {}", b64("report\u{202e}fdp.exe"));
        let m = UploadMetadata::parse(Some(&disguised), &Source::Patient).unwrap();
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
            assert!(
                UploadMetadata::parse(bad.as_deref(), &Source::Patient).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn categories_and_keys_by_uploader() {
        let centre = Source::Centre {
            centre_id: crate::ids::CentreId::generate(),
        };
        let named = |extra: &str| format!("filename {}{extra}", b64("opinion.pdf"));
        let cat = |c: &str| format!(",category {}", b64(c));
        let m = UploadMetadata::parse(Some(&named("")), &centre).unwrap();
        assert_eq!(m.category, "second_opinion_report");
        assert!(UploadMetadata::parse(Some(&named(&cat("other"))), &centre).is_ok());
        for refused in ["translation", "pathology_report"] {
            let h = named(&cat(refused));
            assert_eq!(
                UploadMetadata::parse(Some(&h), &centre),
                Err(MetadataError::CategoryNotAllowed(refused.into()))
            );
        }
        let h = named(&cat("second_opinion_report"));
        assert!(UploadMetadata::parse(Some(&h), &Source::Patient).is_ok());
        let h = named(&format!(",case_id {}", b64("case_x")));
        assert_eq!(
            UploadMetadata::parse(Some(&h), &centre),
            Err(MetadataError::NotForThisUploader("case_id"))
        );

        let h = named(&format!(
            ",case_id {},translation_of {},language {}",
            b64("case_1"),
            b64("file_1"),
            b64("de-CH")
        ));
        let m = UploadMetadata::parse(Some(&h), &Source::Coordinator).unwrap();
        assert_eq!(m.category, "translation");
        assert_eq!(m.language.as_deref(), Some("de-CH"));
        assert_eq!(m.translation_of.as_deref(), Some("file_1"));
        let m = UploadMetadata::parse(Some(&named(&cat("clinic_note"))), &Source::Coordinator);
        assert_eq!(m.unwrap().category, "clinic_note");
    }

    #[test]
    fn language_tags_have_bcp47_shape() {
        for ok in ["en", "de-CH", "zh-Hant-TW", "sr-Latn", "es-419", "ast"] {
            assert!(is_language_tag(ok), "{ok}");
        }
        for bad in [
            "",
            "e",
            "english please",
            "en_US",
            "de-",
            "-de",
            "de--CH",
            "x1",
            "en-abcdefghi",
            "<script>",
        ] {
            assert!(!is_language_tag(bad), "{bad}");
        }
    }
}
