//! The document category suggested for a file: DICOM is always
//! `imaging_dicom`; any other file is matched by its relative path against
//! `web/category-rules.json`, the same table the upload page reads, so both
//! clients suggest the same category for the same file.

use std::sync::LazyLock;

use serde::Deserialize;

use crate::upload::metadata::CATEGORIES;

#[derive(Debug, Default, Deserialize)]
struct Rules {
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    category: String,
    keywords: Vec<String>,
}

const RULES_JSON: &str = include_str!("../../../web/category-rules.json");

/// Parsed once; a unit test proves the embedded file parses, so the empty
/// fallback never happens in a built binary.
static RULES: LazyLock<Rules> =
    LazyLock::new(|| serde_json::from_str(RULES_JSON).unwrap_or_default());

pub const DICOM: &str = "imaging_dicom";
pub const OTHER: &str = "other";

/// The category suggested for a non-DICOM file at `relative` (its path as
/// shown, folders included): the first rule with a keyword contained in the
/// lower-cased path, else `other`.
pub fn suggest(relative: &str) -> &'static str {
    let path = relative.to_lowercase();
    RULES
        .rules
        .iter()
        .find(|rule| rule.keywords.iter().any(|k| path.contains(k.as_str())))
        .and_then(|rule| CATEGORIES.iter().find(|c| **c == rule.category))
        .copied()
        .unwrap_or(OTHER)
}

/// Checks a `--category` value against the gateway's list.
pub fn forced(name: &str) -> Result<&'static str, String> {
    CATEGORIES
        .iter()
        .find(|c| **c == name)
        .copied()
        .ok_or_else(|| {
            format!(
                "--category {name}: not a category; use one of {}",
                CATEGORIES.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_rules_parse_and_name_known_categories() {
        let rules: Rules = serde_json::from_str(RULES_JSON).unwrap();
        assert!(rules.rules.len() > 5);
        for rule in &rules.rules {
            assert!(
                CATEGORIES.contains(&rule.category.as_str()),
                "{}",
                rule.category
            );
        }
    }

    #[test]
    fn names_and_folders_suggest_categories() {
        assert_eq!(suggest("Pathology report 2026.pdf"), "pathology_report");
        assert_eq!(suggest("Bloods/March.pdf"), "lab_results");
        assert_eq!(suggest("病理报告.pdf"), "pathology_report");
        assert_eq!(suggest("My questions.txt"), "patient_questions");
        assert_eq!(suggest("scan0001.jpg"), "other");
        assert!(forced("lab_results").is_ok());
        assert!(forced("../etc").is_err());
    }
}
