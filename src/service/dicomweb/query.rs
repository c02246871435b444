//! A QIDO-RS query (PS3.18 §8.3.4): matching keys, `limit`, `offset`,
//! `includefield` and `fuzzymatching`, parsed once from the query string.
//! Keys are attribute keywords or 8-digit hex tags. The attributes the
//! gateway indexes are matched (single value, `*`/`?` wildcards, a
//! comma-separated UID list, a `from-to` date range); other DICOM
//! attributes are accepted and ignored, and named back so the answer can
//! say so (a `Warning` header); anything that is not a DICOM attribute is
//! refused.

use dicom_core::Tag;
use dicom_core::dictionary::DataDictionary;
use dicom_dictionary_std::{StandardDataDictionary, tags};

/// Most results one answer carries; a larger `limit` is cut to it.
pub const MAX_LIMIT: usize = 5000;
/// Longest value of a matching key.
const MAX_VALUE: usize = 256;

/// The attributes a query can match, with how they match.
const MATCHABLE: [(Tag, Match); 14] = [
    (tags::STUDY_INSTANCE_UID, Match::UidList),
    (tags::SERIES_INSTANCE_UID, Match::UidList),
    (tags::SOP_INSTANCE_UID, Match::UidList),
    (tags::SOP_CLASS_UID, Match::UidList),
    (tags::MODALITY, Match::Single),
    (tags::MODALITIES_IN_STUDY, Match::Single),
    (tags::PATIENT_ID, Match::Single),
    (tags::PATIENT_NAME, Match::Name),
    (tags::ACCESSION_NUMBER, Match::Single),
    (tags::STUDY_ID, Match::Single),
    (tags::STUDY_DATE, Match::DateRange),
    (tags::STUDY_DESCRIPTION, Match::Single),
    (tags::SERIES_NUMBER, Match::Single),
    (tags::INSTANCE_NUMBER, Match::Single),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    /// Exact, or wildcard with `*` and `?`.
    Single,
    /// Like `Single`, case-insensitive (person names).
    Name,
    /// One UID or a comma-separated list.
    UidList,
    /// `YYYYMMDD`, `YYYYMMDD-`, `-YYYYMMDD` or `YYYYMMDD-YYYYMMDD`.
    DateRange,
}

/// One matching key with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub tag: Tag,
    how: Match,
    value: String,
}

impl Filter {
    /// Whether an attribute's value matches (an empty key matches all).
    pub fn matches(&self, actual: &str) -> bool {
        if self.value.is_empty() || self.value == "*" {
            return true;
        }
        match self.how {
            Match::UidList => self.value.split(',').any(|uid| uid.trim() == actual),
            Match::Single => wildcard(&self.value, actual),
            Match::Name => wildcard(
                &self.value.to_ascii_lowercase(),
                &actual.to_ascii_lowercase(),
            ),
            Match::DateRange => match self.value.split_once('-') {
                None => self.value == actual,
                Some((from, to)) => {
                    !actual.is_empty()
                        && (from.is_empty() || actual >= from)
                        && (to.is_empty() || actual <= to)
                }
            },
        }
    }
}

/// `*` any run, `?` one character; everything else literal.
fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A parsed QIDO-RS query.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub filters: Vec<Filter>,
    pub limit: Option<usize>,
    pub offset: usize,
    /// Attributes asked for with `includefield` that the gateway does not
    /// hold, and matching keys it does not match on: named in a warning.
    pub ignored: Vec<String>,
}

impl Query {
    /// Parses `key=value` pairs (already percent-decoded). `Err` says what
    /// is wrong, for a 400.
    pub fn parse(pairs: &[(String, String)]) -> Result<Query, String> {
        let mut query = Query::default();
        for (key, value) in pairs {
            if value.len() > MAX_VALUE {
                return Err(format!("the value of {key} is longer than {MAX_VALUE}"));
            }
            match key.as_str() {
                "limit" => query.limit = Some(number(key, value)?.min(MAX_LIMIT)),
                "offset" => query.offset = number(key, value)?,
                "fuzzymatching" if matches!(value.as_str(), "true" | "false") => {}
                "fuzzymatching" => return Err("fuzzymatching must be true or false".into()),
                "includefield" => {
                    for field in value.split(',').filter(|f| !f.is_empty() && *f != "all") {
                        attribute(field)?;
                    }
                }
                _ => query.key(key, value)?,
            }
        }
        Ok(query)
    }

    fn key(&mut self, key: &str, value: &str) -> Result<(), String> {
        let tag = attribute(key)?;
        match MATCHABLE.iter().find(|(t, _)| *t == tag) {
            Some((_, how)) => {
                if *how == Match::UidList
                    && !value.is_empty()
                    && !value.split(',').all(|u| super::valid_uid(u.trim()))
                {
                    return Err(format!("{key} must be a UID or a list of UIDs"));
                }
                self.filters.push(Filter {
                    tag,
                    how: *how,
                    value: value.trim().to_owned(),
                });
            }
            None if value.is_empty() => {}
            None => self.ignored.push(key.to_owned()),
        }
        Ok(())
    }

    /// The filter on `tag`, if the query has one.
    pub fn matches(&self, tag: Tag, actual: &str) -> bool {
        self.filters
            .iter()
            .filter(|f| f.tag == tag)
            .all(|f| f.matches(actual))
    }

    /// The page of `items` the query's `offset` and `limit` select.
    pub fn page<T>(&self, items: Vec<T>) -> Vec<T> {
        let limit = self.limit.unwrap_or(MAX_LIMIT);
        items.into_iter().skip(self.offset).take(limit).collect()
    }
}

fn number(key: &str, value: &str) -> Result<usize, String> {
    value
        .parse::<u32>()
        .map(|n| n as usize)
        .map_err(|_| format!("{key} must be a whole number"))
}

/// The tag a query key names: a keyword of the standard dictionary or
/// eight hex digits.
fn attribute(key: &str) -> Result<Tag, String> {
    let hex = key.len() == 8 && key.bytes().all(|b| b.is_ascii_hexdigit());
    let tag = if hex {
        let group = u16::from_str_radix(&key[..4], 16).ok();
        let element = u16::from_str_radix(&key[4..], 16).ok();
        group.zip(element).map(|(g, e)| Tag(g, e))
    } else if key.bytes().all(|b| b.is_ascii_alphanumeric()) && !key.is_empty() {
        StandardDataDictionary.by_name(key).map(|e| {
            use dicom_core::dictionary::DataDictionaryEntry;
            e.tag()
        })
    } else {
        None
    };
    tag.ok_or_else(|| format!("{key:?} is not a DICOM attribute or query parameter"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<Query, String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Query::parse(&pairs)
    }

    #[test]
    fn wildcards_and_lists() {
        assert!(wildcard("DOE*", "DOE^JANE"));
        assert!(wildcard("D?E*", "DOE"));
        assert!(!wildcard("DOE", "DOE^JANE"));
        assert!(wildcard("*", ""));
        let query = q(&[("StudyInstanceUID", "1.2.3,1.2.4"), ("PatientName", "doe*")]).unwrap();
        assert!(query.matches(tags::STUDY_INSTANCE_UID, "1.2.4"));
        assert!(!query.matches(tags::STUDY_INSTANCE_UID, "1.2.5"));
        assert!(query.matches(tags::PATIENT_NAME, "Doe^Jane"));
        assert!(query.matches(tags::MODALITY, "CT"), "no filter: all match");
    }

    #[test]
    fn dates_tags_and_paging() {
        let query = q(&[("00080020", "20260101-20260131"), ("limit", "2")]).unwrap();
        assert!(query.matches(tags::STUDY_DATE, "20260115"));
        assert!(!query.matches(tags::STUDY_DATE, "20260201"));
        assert!(!query.matches(tags::STUDY_DATE, ""));
        assert_eq!(query.page(vec![1, 2, 3]), vec![1, 2]);
        let query = q(&[("limit", "4000000000"), ("offset", "1")]).unwrap();
        assert_eq!(query.limit, Some(MAX_LIMIT));
        assert_eq!(query.page(vec![1, 2, 3]), vec![2, 3]);
    }

    #[test]
    fn refuses_what_is_not_dicom() {
        assert!(q(&[("limit", "-1")]).is_err());
        assert!(q(&[("limit", "99999999999")]).is_err());
        assert!(q(&[("NotAnAttribute", "x")]).is_err());
        assert!(q(&[("../../etc", "x")]).is_err());
        assert!(q(&[("StudyInstanceUID", "1.2.x")]).is_err());
        assert!(q(&[("includefield", "Bogus")]).is_err());
        assert!(q(&[("fuzzymatching", "maybe")]).is_err());
        assert!(q(&[("PatientName", &"A".repeat(300))]).is_err());
        let query = q(&[("includefield", "00081030,StudyDescription,all")]).unwrap();
        assert!(query.ignored.is_empty());
        let query = q(&[("BodyPartExamined", "CHEST")]).unwrap();
        assert_eq!(query.ignored, vec!["BodyPartExamined"]);
    }
}
