//! The one-line summary the patient confirms before anything is sent:
//! "2 studies, 5 series, 1,843 images, 2.1 GB; 3 documents, 4.2 MB
//! (pathology_report: 1, lab_results: 2)".

use std::collections::BTreeSet;

use indicatif::{DecimalBytes, HumanCount};

use super::sniff::Sniffed;

/// A file as the summary counts it.
pub struct Counted<'a> {
    pub size: u64,
    pub kind: &'a Sniffed,
    pub category: &'a str,
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!(
        "{} {}",
        HumanCount(n as u64),
        if n == 1 { one } else { many }
    )
}

pub fn summary<'a>(files: impl IntoIterator<Item = Counted<'a>>) -> String {
    let (mut studies, mut series) = (BTreeSet::new(), BTreeSet::new());
    let (mut images, mut image_bytes, mut docs, mut doc_bytes) = (0, 0, 0, 0);
    let mut per_category: Vec<(&str, usize)> = Vec::new();
    for f in files {
        match f.kind {
            Sniffed::Dicom { study, series: s } => {
                images += 1;
                image_bytes += f.size;
                if !study.is_empty() {
                    studies.insert(study.as_str());
                }
                if !s.is_empty() {
                    series.insert(s.as_str());
                }
            }
            Sniffed::Document => {
                docs += 1;
                doc_bytes += f.size;
                match per_category.iter_mut().find(|(c, _)| *c == f.category) {
                    Some((_, n)) => *n += 1,
                    None => per_category.push((f.category, 1)),
                }
            }
        }
    }
    let mut parts = Vec::new();
    if images > 0 {
        parts.push(format!(
            "{}, {}, {}, {}",
            plural(studies.len(), "study", "studies"),
            plural(series.len(), "series", "series"),
            plural(images, "image", "images"),
            DecimalBytes(image_bytes)
        ));
    }
    if docs > 0 {
        let categories: Vec<String> = per_category
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        parts.push(format!(
            "{}, {} ({})",
            plural(docs, "document", "documents"),
            DecimalBytes(doc_bytes),
            categories.join(", ")
        ));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn studies_series_images_and_documents() {
        let ct = |st: &str, se: &str| Sniffed::Dicom {
            study: st.into(),
            series: se.into(),
        };
        let kinds = [
            ct("1", "1.1"),
            ct("1", "1.2"),
            ct("2", "2.1"),
            Sniffed::Document,
            Sniffed::Document,
        ];
        let cats = [
            "imaging_dicom",
            "imaging_dicom",
            "imaging_dicom",
            "pathology_report",
            "lab_results",
        ];
        let line = summary(kinds.iter().zip(cats).map(|(kind, category)| Counted {
            size: 1_000_000,
            kind,
            category,
        }));
        assert_eq!(
            line,
            "2 studies, 3 series, 3 images, 3.00 MB; 2 documents, 2.00 MB (pathology_report: 1, lab_results: 1)"
        );
    }
}
