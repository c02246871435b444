//! DICOM header fields of a completed upload, read from the beginning of
//! its plaintext without pixel data. The fields are patient data: callers
//! store them sealed under the case key.

use std::io::Cursor;

use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use dicom_object::file::ReadPreamble;

use crate::manifest::DicomFields;

/// How much plaintext is read to find the header (it ends at PixelData,
/// normally within a few kilobytes).
pub const HEAD_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Inspection {
    /// No DICOM preamble.
    NotDicom,
    Dicom(DicomFields),
    /// Has the `DICM` marker but does not parse.
    Broken,
}

/// Inspects the first bytes of a file (`head`, at most [`HEAD_BYTES`]).
pub fn inspect(head: &[u8]) -> Inspection {
    if head.len() < 132 || &head[128..132] != b"DICM" {
        return Inspection::NotDicom;
    }
    let parsed = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Always)
        .read_until(tags::PIXEL_DATA)
        .from_reader(Cursor::new(head));
    let Ok(object) = parsed else {
        return Inspection::Broken;
    };
    let text = |tag| -> String {
        object
            .element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| {
                e.to_str()
                    .ok()
                    .map(|s| s.trim_end_matches(['\0', ' ']).trim().to_owned())
            })
            .unwrap_or_default()
    };
    let fields = DicomFields {
        study_instance_uid: text(tags::STUDY_INSTANCE_UID),
        series_instance_uid: text(tags::SERIES_INSTANCE_UID),
        modality: text(tags::MODALITY),
        study_date: text(tags::STUDY_DATE),
        sop_class_uid: text(tags::SOP_CLASS_UID),
    };
    if fields.study_instance_uid.is_empty() && fields.series_instance_uid.is_empty() {
        return Inspection::Broken;
    }
    Inspection::Dicom(fields)
}

/// Whether the uploader said this is DICOM (category, type or name).
pub fn claims_dicom(category: &str, filetype: Option<&str>, filename: &str) -> bool {
    category == "imaging_dicom"
        || filetype.is_some_and(|t| t.eq_ignore_ascii_case("application/dicom"))
        || filename.to_ascii_lowercase().ends_with(".dcm")
}

#[doc(hidden)]
pub mod testdata {
    //! A minimal but valid DICOM file (explicit VR little endian), built
    //! byte by byte, for tests.

    fn element(out: &mut Vec<u8>, group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) {
        let mut v = value.to_vec();
        if v.len() % 2 == 1 {
            v.push(if vr == b"UI" { 0 } else { b' ' });
        }
        out.extend_from_slice(&group.to_le_bytes());
        out.extend_from_slice(&elem.to_le_bytes());
        out.extend_from_slice(vr);
        if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&(v.len() as u16).to_le_bytes());
        }
        out.extend_from_slice(&v);
    }

    pub fn ct_file(study: &str, series: &str, patient: &str, pixels: usize) -> Vec<u8> {
        let mut meta = Vec::new();
        element(&mut meta, 0x0002, 0x0001, b"OB", &[0, 1]);
        element(
            &mut meta,
            0x0002,
            0x0002,
            b"UI",
            b"1.2.840.10008.5.1.4.1.1.2",
        );
        element(&mut meta, 0x0002, 0x0003, b"UI", b"1.2.3.4.5.6");
        element(&mut meta, 0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1");
        element(&mut meta, 0x0002, 0x0012, b"UI", b"1.2.3.4");
        let mut out = vec![0u8; 128];
        out.extend_from_slice(b"DICM");
        element(
            &mut out,
            0x0002,
            0x0000,
            b"UL",
            &(meta.len() as u32).to_le_bytes(),
        );
        out.extend_from_slice(&meta);
        element(
            &mut out,
            0x0008,
            0x0016,
            b"UI",
            b"1.2.840.10008.5.1.4.1.1.2",
        );
        element(&mut out, 0x0008, 0x0018, b"UI", b"1.2.3.4.5.6");
        element(&mut out, 0x0008, 0x0020, b"DA", b"20260115");
        element(&mut out, 0x0008, 0x0060, b"CS", b"CT");
        element(&mut out, 0x0010, 0x0010, b"PN", patient.as_bytes());
        element(&mut out, 0x0020, 0x000D, b"UI", study.as_bytes());
        element(&mut out, 0x0020, 0x000E, b"UI", series.as_bytes());
        element(&mut out, 0x7FE0, 0x0010, b"OW", &vec![0x5a; pixels]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_header_fields() {
        let file = testdata::ct_file("1.2.826.0.1.1", "1.2.826.0.1.1.2", "Doe^Jane", 4096);
        let Inspection::Dicom(f) = inspect(&file) else {
            panic!("not parsed")
        };
        assert_eq!(f.study_instance_uid, "1.2.826.0.1.1");
        assert_eq!(f.series_instance_uid, "1.2.826.0.1.1.2");
        assert_eq!(f.modality, "CT");
        assert_eq!(f.study_date, "20260115");
        assert_eq!(f.sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
    }

    #[test]
    fn non_dicom_and_broken() {
        assert_eq!(inspect(b"%PDF-1.7 ..."), Inspection::NotDicom);
        let mut broken = vec![0u8; 128];
        broken.extend_from_slice(b"DICM\x02\x00garbage");
        assert_eq!(inspect(&broken), Inspection::Broken);
        assert!(claims_dicom("other", None, "IMG0001.DCM"));
        assert!(!claims_dicom(
            "pathology_report",
            Some("application/pdf"),
            "report.pdf"
        ));
    }
}
