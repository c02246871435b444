//! Reading an instance's header from its stored object (bounded: the
//! first bytes, grown only while the header does not end within them) and
//! the index of a file completed before the index existed: read once from
//! the header, then stored sealed like the rest.

use dicom_object::DefaultDicomObject;

use super::walk::{self, IndexCut};
use super::{DICOM_INDEX, DicomIndex, GrantError, GrantedFile, Inspection, dicom};
use crate::crypto::CaseKey;
use crate::db;
use crate::db::centres::CentreRow;
use crate::db::grants::GrantRow;
use crate::service::Services;
use crate::service::downloads::PlainReader;

/// Plaintext read for a header at first, and the most it grows to.
const FIRST_HEAD: u64 = 64 * 1024;

/// An instance's header, read from its object: the first bytes, then more
/// (×8 each time, up to `dicom::HEAD_BYTES`) until the header parses and
/// PixelData is found after it (a header cut at an element boundary
/// parses too, short of its last attributes), or the whole file is read.
/// Returns the bytes read and the parsed header; `None`: not a DICOM
/// header.
pub async fn read_head(
    reader: &mut PlainReader<'_>,
) -> Result<Option<(Vec<u8>, DefaultDicomObject)>, GrantError> {
    let mut want = FIRST_HEAD;
    loop {
        let head = reader.read(0..want).await?;
        let whole = (head.len() as u64) < want;
        if let Some(object) = dicom::header(&head) {
            let syntax = object
                .meta()
                .transfer_syntax()
                .trim_end_matches(['\0', ' '])
                .to_owned();
            if whole || want >= dicom::HEAD_BYTES || walk::locate(&head, &syntax).is_some() {
                return Ok(Some((head, object)));
            }
        } else if whole || want >= dicom::HEAD_BYTES {
            return Ok(None);
        }
        want = (want * 8).min(dicom::HEAD_BYTES);
    }
}

/// The last group holding an attribute of the index (image geometry,
/// 0028): the header is whole for the index once a later group starts.
const LAST_INDEXED_GROUP: u16 = 0x0028;

/// A file's first bytes as far as its index needs them: up to the first
/// top-level element after group 0028, once that starts within the bytes
/// read (grown as [`read_head`] grows them) and nothing of an indexed
/// group follows it there; else what `read_head` would read. A file
/// without pixel data (a structured report, an encapsulated PDF) is so
/// indexed from its first window, not read up to `dicom::HEAD_BYTES` for
/// the PixelData it does not have. `None`: the header is not in order (or
/// not walkable), so the caller reads it whole.
async fn read_index_head(reader: &mut PlainReader<'_>) -> Result<Option<Vec<u8>>, GrantError> {
    let mut want = FIRST_HEAD;
    loop {
        let mut head = reader.read(0..want).await?;
        let whole = (head.len() as u64) < want;
        let Some(syntax) = walk::meta_syntax(&head) else {
            return Ok(None);
        };
        match walk::index_cut(&head, &syntax, LAST_INDEXED_GROUP) {
            IndexCut::At(end) => {
                head.truncate(end);
                return Ok(Some(head));
            }
            IndexCut::Unsure => return Ok(None),
            IndexCut::NotYet if whole || want >= dicom::HEAD_BYTES => return Ok(Some(head)),
            IndexCut::NotYet => want = (want * 8).min(dicom::HEAD_BYTES),
        }
    }
}

/// The index of the header in `head`, if it is DICOM; else the index of
/// the whole header as [`read_head`] reads it (a cut header that does not
/// inspect as DICOM must not make a DICOM file lose its index).
async fn inspect_index(
    reader: &mut PlainReader<'_>,
    head: Option<Vec<u8>>,
) -> Result<Option<DicomIndex>, GrantError> {
    if let Some(head) = head
        && let Inspection::Dicom(_, index) = dicom::inspect(&head)
    {
        return Ok(Some(*index));
    }
    let Some((head, _)) = read_head(reader).await? else {
        return Ok(None);
    };
    Ok(match dicom::inspect(&head) {
        Inspection::Dicom(_, index) => Some(*index),
        _ => None,
    })
}

/// A file's index: opened from its sealed copy, or read from its header
/// and stored (files completed before the index existed). The header is
/// read through its last indexed attribute ([`read_index_head`]): an index
/// taken from a header cut by the read window would lack its last
/// attributes (the image geometry among them) and be stored so for good.
pub(super) async fn index_of(
    svc: &Services,
    case_key: &CaseKey,
    grant: (&GrantRow, &CentreRow),
    file: &GrantedFile,
) -> Result<Option<DicomIndex>, GrantError> {
    let case_id = &grant.0.case_id;
    let id = file.file_id.as_str();
    if let Some(sealed) = &file.dicom_index_sealed {
        let opened = case_key
            .open_field(case_id, DICOM_INDEX, id, sealed)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if opened.is_some() {
            return Ok(opened);
        }
        // Damaged (or from a format this build does not read): read the
        // header again and store a fresh index, rather than fail every
        // DICOMweb request of the grant.
        tracing::error!(file = %id, "stored DICOM index does not open; reading the header again");
    }
    let mut reader = PlainReader::open(svc, case_key, grant, file).await?;
    let head = read_index_head(&mut reader).await?;
    let Some(index) = inspect_index(&mut reader, head).await? else {
        return Ok(None);
    };
    if let Ok(json) = serde_json::to_vec(&index) {
        let sealed = case_key.seal_field(case_id, DICOM_INDEX, id, &json);
        db::files::set_dicom_index(
            &svc.db,
            &file.file_id,
            file.dicom_index_sealed.as_deref(),
            &sealed,
        )
        .await?;
    }
    Ok(Some(index))
}
