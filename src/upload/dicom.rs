//! DICOM header fields of a completed upload, read from the beginning of
//! its plaintext without pixel data: the manifest's fields
//! ([`DicomFields`]) and the DICOMweb index ([`DicomIndex`]: what QIDO-RS
//! searches and answers, and what WADO-RS needs to serve an instance and
//! its frames). Both are patient data: callers store them sealed under the
//! case key.

use std::io::Cursor;

use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use serde::{Deserialize, Serialize};

use crate::manifest::DicomFields;

/// How much plaintext is read to find the header (it ends at PixelData,
/// normally within a few kilobytes).
pub const HEAD_BYTES: u64 = 8 * 1024 * 1024;

/// Sealed purpose label of a file's DICOMweb index.
pub const DICOM_INDEX: &str = "dicom-index";

/// What DICOMweb needs of an instance beyond [`DicomFields`]: the
/// attributes QIDO-RS returns at study, series and instance level (PS3.18
/// table 6.7.1-2) and the geometry that locates its frames. Strings as
/// stored in the header, trimmed; absent attributes are empty.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct DicomIndex {
    pub sop_instance_uid: String,
    pub instance_number: String,
    pub patient_name: String,
    pub patient_id: String,
    pub patient_birth_date: String,
    pub patient_sex: String,
    pub study_time: String,
    pub study_id: String,
    pub accession_number: String,
    pub referring_physician_name: String,
    pub study_description: String,
    pub series_number: String,
    pub series_description: String,
    pub transfer_syntax_uid: String,
    pub rows: Option<u16>,
    pub columns: Option<u16>,
    pub bits_allocated: Option<u16>,
    pub samples_per_pixel: Option<u16>,
    pub number_of_frames: Option<u32>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Inspection {
    /// No DICOM preamble.
    NotDicom,
    Dicom(DicomFields, Box<DicomIndex>),
    /// Has the `DICM` marker but does not parse.
    Broken,
}

/// The header of a DICOM file (preamble, meta group and every element
/// before PixelData) parsed from its first bytes; `None` when `head` does
/// not hold a whole header.
pub fn header(head: &[u8]) -> Option<DefaultDicomObject> {
    if head.len() < 132 || &head[128..132] != b"DICM" {
        return None;
    }
    OpenFileOptions::new()
        .read_preamble(ReadPreamble::Always)
        .read_until(tags::PIXEL_DATA)
        .from_reader(Cursor::new(head))
        .ok()
}

/// An attribute's value as text, trimmed of padding. Some writers encode
/// known attributes with VR UN (unknown); their bytes are the text.
fn text(object: &DefaultDicomObject, tag: Tag) -> String {
    let Some(element) = object.element_opt(tag).ok().flatten() else {
        return String::new();
    };
    let value = if element.vr() == VR::UN {
        element
            .to_bytes()
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    } else {
        element.to_str().ok().map(|s| s.into_owned())
    };
    value
        .map(|s| s.trim_end_matches(['\0', ' ']).trim().to_owned())
        .unwrap_or_default()
}

fn number<T: std::str::FromStr>(object: &DefaultDicomObject, tag: Tag) -> Option<T> {
    let element = object.element_opt(tag).ok().flatten()?;
    match element.to_int::<i64>() {
        Ok(n) if element.vr() != VR::UN => n.to_string().parse().ok(),
        _ => text(object, tag).parse().ok(),
    }
}

fn index_of(object: &DefaultDicomObject) -> DicomIndex {
    let t = |tag| text(object, tag);
    DicomIndex {
        sop_instance_uid: t(tags::SOP_INSTANCE_UID),
        instance_number: t(tags::INSTANCE_NUMBER),
        patient_name: t(tags::PATIENT_NAME),
        patient_id: t(tags::PATIENT_ID),
        patient_birth_date: t(tags::PATIENT_BIRTH_DATE),
        patient_sex: t(tags::PATIENT_SEX),
        study_time: t(tags::STUDY_TIME),
        study_id: t(tags::STUDY_ID),
        accession_number: t(tags::ACCESSION_NUMBER),
        referring_physician_name: t(tags::REFERRING_PHYSICIAN_NAME),
        study_description: t(tags::STUDY_DESCRIPTION),
        series_number: t(tags::SERIES_NUMBER),
        series_description: t(tags::SERIES_DESCRIPTION),
        transfer_syntax_uid: object
            .meta()
            .transfer_syntax()
            .trim_end_matches(['\0', ' '])
            .to_owned(),
        rows: number(object, tags::ROWS),
        columns: number(object, tags::COLUMNS),
        bits_allocated: number(object, tags::BITS_ALLOCATED),
        samples_per_pixel: number(object, tags::SAMPLES_PER_PIXEL),
        number_of_frames: number(object, tags::NUMBER_OF_FRAMES),
    }
}

/// Inspects the first bytes of a file (`head`, at most [`HEAD_BYTES`]).
pub fn inspect(head: &[u8]) -> Inspection {
    if head.len() < 132 || &head[128..132] != b"DICM" {
        return Inspection::NotDicom;
    }
    let Some(object) = header(head) else {
        return Inspection::Broken;
    };
    let t = |tag| text(&object, tag);
    let fields = DicomFields {
        study_instance_uid: t(tags::STUDY_INSTANCE_UID),
        series_instance_uid: t(tags::SERIES_INSTANCE_UID),
        modality: t(tags::MODALITY),
        study_date: t(tags::STUDY_DATE),
        sop_class_uid: t(tags::SOP_CLASS_UID),
    };
    if fields.study_instance_uid.is_empty() && fields.series_instance_uid.is_empty() {
        return Inspection::Broken;
    }
    Inspection::Dicom(fields, Box::new(index_of(&object)))
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
        let image = Image {
            sop_instance_uid: "1.2.3.4.5.6",
            instance_number: None,
            rows: None,
            frames: None,
            pixels: vec![0x5a; pixels],
        };
        ct_image(study, series, patient, &image)
    }

    /// One image of a test series.
    pub struct Image<'a> {
        pub sop_instance_uid: &'a str,
        pub instance_number: Option<u32>,
        /// Rows and columns (16-bit monochrome) when set.
        pub rows: Option<(u16, u16)>,
        /// NumberOfFrames, when set.
        pub frames: Option<u32>,
        pub pixels: Vec<u8>,
    }

    /// A CT image (explicit VR little endian, native pixel data).
    pub fn ct_image(study: &str, series: &str, patient: &str, image: &Image) -> Vec<u8> {
        let sop = image.sop_instance_uid.as_bytes();
        let mut meta = Vec::new();
        element(&mut meta, 0x0002, 0x0001, b"OB", &[0, 1]);
        element(
            &mut meta,
            0x0002,
            0x0002,
            b"UI",
            b"1.2.840.10008.5.1.4.1.1.2",
        );
        element(&mut meta, 0x0002, 0x0003, b"UI", sop);
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
        let o = &mut out;
        element(o, 0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.2");
        element(o, 0x0008, 0x0018, b"UI", sop);
        element(o, 0x0008, 0x0020, b"DA", b"20260115");
        element(o, 0x0008, 0x0060, b"CS", b"CT");
        element(o, 0x0008, 0x1030, b"LO", b"CT CHEST");
        element(o, 0x0010, 0x0010, b"PN", patient.as_bytes());
        element(o, 0x0010, 0x0020, b"LO", b"PID-0001");
        element(o, 0x0020, 0x000D, b"UI", study.as_bytes());
        element(o, 0x0020, 0x000E, b"UI", series.as_bytes());
        element(o, 0x0020, 0x0011, b"IS", b"2");
        if let Some(n) = image.instance_number {
            element(o, 0x0020, 0x0013, b"IS", n.to_string().as_bytes());
        }
        if let Some((rows, columns)) = image.rows {
            element(o, 0x0028, 0x0002, b"US", &1u16.to_le_bytes());
            if let Some(frames) = image.frames {
                element(o, 0x0028, 0x0008, b"IS", frames.to_string().as_bytes());
            }
            element(o, 0x0028, 0x0010, b"US", &rows.to_le_bytes());
            element(o, 0x0028, 0x0011, b"US", &columns.to_le_bytes());
            element(o, 0x0028, 0x0100, b"US", &16u16.to_le_bytes());
        }
        element(o, 0x7FE0, 0x0010, b"OW", &image.pixels);
        out
    }

    /// A JPEG-compressed multi-frame image (explicit VR little endian
    /// encapsulated): one fragment per frame after an empty offset table,
    /// and before it an icon image sequence of undefined length whose item
    /// holds pixel data of its own.
    pub fn encapsulated_image(
        study: &str,
        series: &str,
        sop: &str,
        fragments: &[&[u8]],
    ) -> Vec<u8> {
        let image = Image {
            sop_instance_uid: sop,
            instance_number: Some(1),
            rows: Some((8, 8)),
            frames: Some(fragments.len() as u32),
            pixels: Vec::new(),
        };
        let native = ct_image(study, series, "Doe^Jane", &image);
        // Everything before the native PixelData element (12 bytes + empty value).
        let mut out = native[..native.len() - 12].to_vec();
        let syntax = b"1.2.840.10008.1.2.1";
        let jpeg = b"1.2.840.10008.1.2.4.50";
        let at = out
            .windows(syntax.len())
            .position(|w| w == syntax)
            .unwrap_or(0);
        // Same length once padded (UI values pad with NUL to even length).
        out.splice(at - 2..at + syntax.len() + 1, {
            let mut v = (jpeg.len() as u16).to_le_bytes().to_vec();
            v.extend_from_slice(jpeg);
            v
        });
        // Keep the meta group length right: it grew by 2 bytes.
        let meta_len = u32::from_le_bytes([out[140], out[141], out[142], out[143]]) + 2;
        out[140..144].copy_from_slice(&meta_len.to_le_bytes());
        // IconImageSequence (0088,0200), undefined length, one item of
        // undefined length holding a PixelData of its own.
        let mut icon = Vec::new();
        element(&mut icon, 0x7FE0, 0x0010, b"OB", &[7; 4]);
        out.extend_from_slice(&[
            0x88, 0x00, 0x00, 0x02, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        out.extend_from_slice(&icon);
        out.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        out.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        out.extend_from_slice(&[
            0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        for fragment in fragments {
            out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            out.extend_from_slice(&(fragment.len() as u32).to_le_bytes());
            out.extend_from_slice(fragment);
        }
        out.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_header_fields() {
        let file = testdata::ct_file("1.2.826.0.1.1", "1.2.826.0.1.1.2", "Doe^Jane", 4096);
        let Inspection::Dicom(f, index) = inspect(&file) else {
            panic!("not parsed")
        };
        assert_eq!(index.sop_instance_uid, "1.2.3.4.5.6");
        assert_eq!(index.patient_name, "Doe^Jane");
        assert_eq!(index.study_description, "CT CHEST");
        assert_eq!(index.transfer_syntax_uid, "1.2.840.10008.1.2.1");
        assert_eq!(index.rows, None);
        assert_eq!(f.study_instance_uid, "1.2.826.0.1.1");
        assert_eq!(f.series_instance_uid, "1.2.826.0.1.1.2");
        assert_eq!(f.modality, "CT");
        assert_eq!(f.study_date, "20260115");
        assert_eq!(f.sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
    }

    #[test]
    fn indexes_image_geometry() {
        let image = testdata::Image {
            sop_instance_uid: "1.2.826.0.1.1.2.3",
            instance_number: Some(7),
            rows: Some((4, 3)),
            frames: None,
            pixels: vec![1; 24],
        };
        let file = testdata::ct_image("1.2.826.0.1.1", "1.2.826.0.1.1.2", "Doe^Jane", &image);
        let Inspection::Dicom(_, index) = inspect(&file) else {
            panic!("not parsed")
        };
        assert_eq!(index.sop_instance_uid, "1.2.826.0.1.1.2.3");
        assert_eq!(index.instance_number, "7");
        assert_eq!(index.series_number, "2");
        assert_eq!((index.rows, index.columns), (Some(4), Some(3)));
        assert_eq!(
            (index.bits_allocated, index.samples_per_pixel),
            (Some(16), Some(1))
        );
        assert_eq!(index.number_of_frames, None);
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
