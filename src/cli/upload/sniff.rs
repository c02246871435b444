//! What a file is, from its first bytes: DICOM (128-byte preamble, then
//! `DICM`) with the study and series it belongs to, read from the header
//! only — never the pixel data — by the gateway's own reader
//! ([`crate::upload::dicom`]), or a document.

use std::io::Read;
use std::path::Path;

use crate::upload::dicom::{HEAD_BYTES, Inspection, inspect};

/// Enough for nearly every header; a longer one is read again up to the
/// gateway's own limit.
const FIRST_READ: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniffed {
    Document,
    /// Study and series UIDs (empty when the header does not parse: the
    /// gateway keeps such a file and flags it).
    Dicom {
        study: String,
        series: String,
    },
}

impl Sniffed {
    pub fn is_dicom(&self) -> bool {
        matches!(self, Sniffed::Dicom { .. })
    }
}

fn head(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(limit)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

pub fn sniff(path: &Path) -> std::io::Result<Sniffed> {
    let first = head(path, FIRST_READ)?;
    if first.len() < 132 || &first[128..132] != b"DICM" {
        return Ok(Sniffed::Document);
    }
    let mut inspection = inspect(&first);
    if inspection == Inspection::Broken && first.len() as u64 == FIRST_READ {
        inspection = inspect(&head(path, HEAD_BYTES)?);
    }
    Ok(match inspection {
        Inspection::Dicom(fields, _) => Sniffed::Dicom {
            study: fields.study_instance_uid,
            series: fields.series_instance_uid,
        },
        _ => Sniffed::Dicom {
            study: String::new(),
            series: String::new(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::dicom::testdata::ct_file;

    #[test]
    fn dicom_is_known_by_its_preamble_and_header() {
        let dir = tempfile::tempdir().unwrap();
        let ct = dir.path().join("IM0");
        std::fs::write(&ct, ct_file("1.2.3", "1.2.3.4", "Doe^Jane", 200_000)).unwrap();
        assert_eq!(
            sniff(&ct).unwrap(),
            Sniffed::Dicom {
                study: "1.2.3".into(),
                series: "1.2.3.4".into()
            }
        );
        let pdf = dir.path().join("a.pdf");
        std::fs::write(&pdf, b"%PDF-1.7 not dicom").unwrap();
        assert_eq!(sniff(&pdf).unwrap(), Sniffed::Document);
        let mut broken = vec![0u8; 128];
        broken.extend_from_slice(b"DICMgarbage");
        std::fs::write(&pdf, broken).unwrap();
        assert!(sniff(&pdf).unwrap().is_dicom());
    }
}
