//! `index.csv` in `--out`: every granted file that is in place, with the
//! path it landed under, its id, original name, category, size, SHA-256
//! and, for DICOM, its study, series and modality — so a PACS import tool
//! or a spreadsheet takes the folder as is, without a DICOMDIR. Written
//! anew after every fetch from what is on disk; values are CSV-quoted and a
//! leading `= + - @` is defused (file names are the patient's).

use std::path::{Path, PathBuf};

use super::manifest::GrantedFile;
use crate::audit::csv_field;

pub const NAME: &str = "index.csv";

const HEADER: &str =
    "path,file_id,filename,category,size,sha256,study_instance_uid,series_instance_uid,modality";

/// Writes the index of the files of `files` found in place at their
/// `destinations`; returns how many it lists.
pub fn write(
    out: &Path,
    (files, destinations): (&[GrantedFile], &[PathBuf]),
) -> std::io::Result<usize> {
    let mut csv = format!("{HEADER}\r\n");
    let mut listed = 0;
    for (file, dest) in files.iter().zip(destinations) {
        let in_place = std::fs::metadata(dest).is_ok_and(|m| m.is_file() && m.len() == file.size);
        let Some(relative) = dest.strip_prefix(out).ok().filter(|_| in_place) else {
            continue;
        };
        let path = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let size = file.size.to_string();
        let fields = [
            path.as_str(),
            file.file_id.as_str(),
            &file.filename,
            &file.category,
            &size,
            &file.sha256,
            &file.dicom[0],
            &file.dicom[1],
            &file.dicom[2],
        ];
        let cells: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        csv.push_str(&cells.join(","));
        csv.push_str("\r\n");
        listed += 1;
    }
    crate::fsutil::replace_secret_file(&out.join(NAME), csv.as_bytes())?;
    Ok(listed)
}
