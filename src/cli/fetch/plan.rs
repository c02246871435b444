//! Every granted file gets a destination of its own. Two files collide
//! when their sanitised paths are equal — the same name, names equal once
//! neutralised or cut to 255 bytes, names that differ only in case (one file
//! on the case-insensitive disks of macOS and Windows) — or when one file's
//! path is another's folder. Every file of a colliding group then carries
//! its id before the extension, `report (file_…).pdf`, the first one
//! included: the groups are decided from the whole grant, so the names do
//! not depend on the order the gateway lists files in, and a rerun finds
//! each file where the last run put it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::manifest::GrantedFile;
use super::names::relative;

/// How paths compare on a case-insensitive disk.
fn key(parts: &[String]) -> String {
    parts.join("/").to_lowercase()
}

/// Destinations under `out`, one per file, in the same order, all distinct.
pub fn plan(out: &Path, files: &[GrantedFile]) -> Vec<PathBuf> {
    let mut with_id = vec![false; files.len()];
    loop {
        let paths: Vec<Vec<String>> = files
            .iter()
            .zip(&with_id)
            .map(|(file, id)| relative(file, *id))
            .collect();
        let mut taken: HashMap<String, usize> = HashMap::new();
        let mut folders = HashSet::new();
        for path in &paths {
            *taken.entry(key(path)).or_default() += 1;
            for depth in 1..path.len() {
                folders.insert(key(&path[..depth]));
            }
        }
        // A name with an id can only meet a file's own literal name or a
        // folder; marking only files without one ends the loop.
        let mut changed = false;
        for (path, id) in paths.iter().zip(with_id.iter_mut()) {
            let k = key(path);
            if !*id && (taken.get(&k).copied().unwrap_or(0) > 1 || folders.contains(&k)) {
                *id = true;
                changed = true;
            }
        }
        if !changed {
            return paths
                .iter()
                .map(|parts| parts.iter().fold(out.to_path_buf(), |p, c| p.join(c)))
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::FileId;

    fn file(name: &str, category: &str, folders: &[&str]) -> GrantedFile {
        GrantedFile {
            file_id: FileId::generate(),
            filename: name.into(),
            category: category.into(),
            folders: folders.iter().map(|f| f.to_string()).collect(),
            size: 0,
            sealed_size: 0,
            sealed_etag: None,
            sha256: String::new(),
            dicom: Default::default(),
            instance: None,
        }
    }

    fn names(out: &Path, files: &[GrantedFile]) -> Vec<String> {
        plan(out, files)
            .iter()
            .map(|p| p.strip_prefix(out).unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn colliding_groups_all_carry_their_ids() {
        let out = Path::new("/out");
        let files = vec![
            file("report.pdf", "other", &[]),
            file("report.pdf", "other", &[]),
            file("Report.PDF", "other", &[]),
            file("a\u{200b}b", "other", &[]),
            file("a\u{200c}b", "other", &[]),
            file("report.pdf", "lab_results", &[]),
            file("unique.pdf", "other", &[]),
        ];
        let got = names(out, &files);
        let id = |i: usize| files[i].file_id.to_string();
        assert_eq!(
            got,
            vec![
                format!("other/report ({}).pdf", id(0)),
                format!("other/report ({}).pdf", id(1)),
                format!("other/Report ({}).PDF", id(2)),
                format!("other/a_b ({})", id(3)),
                format!("other/a_b ({})", id(4)),
                "lab_results/report.pdf".to_string(),
                "other/unique.pdf".to_string(),
            ]
        );
        // The order of the listing changes nothing.
        let mut reversed = files.clone();
        reversed.reverse();
        let mut again = names(out, &reversed);
        again.reverse();
        assert_eq!(again, got);
    }

    #[test]
    fn a_file_named_like_a_folder_or_a_disambiguated_name_is_moved_aside() {
        let out = Path::new("/out");
        let dicom = file("IM1", "imaging_dicom", &["1.2", "3.4"]);
        let in_the_way = file("1.2", "imaging_dicom", &[]);
        let first = file("x.pdf", "other", &[]);
        let second = file("x.pdf", "other", &[]);
        let literal = file(&format!("x ({}).pdf", first.file_id), "other", &[]);
        let files = vec![dicom, in_the_way, first, second, literal];
        let got = names(out, &files);
        assert_eq!(got[0], "imaging_dicom/1.2/3.4/IM1");
        assert_eq!(got[1], format!("imaging_dicom/1 ({}).2", files[1].file_id));
        let distinct: HashSet<_> = got.iter().map(|n| n.to_lowercase()).collect();
        assert_eq!(distinct.len(), got.len(), "{got:?}");
    }
}
