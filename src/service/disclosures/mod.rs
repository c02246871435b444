//! The accounting of disclosures for a case: every download of its records
//! by a reviewing centre ([`downloads`] defines a row), with the centre's
//! name and country and the file's name and category opened under the case
//! key — the report is for a compliance officer, who may hand it to the
//! patient. For a deleted (crypto-shredded) case the downloads are still
//! reported, with ids, centres and times; names no longer open.
//!
//! A report states the audit entries it reflects (`1..=head`, read in one
//! snapshot with the downloads) and the signed checkpoint current when it
//! was made, which covers them all, so it can be checked against an
//! exported log with `audit verify`. Reading one is itself audited
//! (`audit.disclosures.read`). The patient's access view is the same
//! downloads ([`for_case`]).
//!
//! The report also lists what went back to the patient ([`ToPatient`]):
//! which file a coordinator released when, and each of the patient's
//! downloads of it.

pub mod downloads;

use std::collections::HashMap;

/// Whether the case is open or deleted, as the report states it.
pub use crate::db::disclosures::CaseState;
pub use downloads::{Download, Status};

use super::Services;
use super::audit::{self, checkpoints};
use super::cases::CaseError;
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::clock::Timestamp;
use crate::crypto::CaseKey;
use crate::db;
use crate::db::audit::checkpoints::CheckpointRow;
use crate::db::disclosures::DownloadRequest;
use crate::ids::CaseId;
use crate::manifest::{FILE_META, FileMeta};

const ACTION: &str = "audit.disclosures.read";

/// A download with the file's name and category, if they still open.
#[derive(Debug, Clone)]
pub struct Disclosure {
    pub download: Download,
    /// `None`: the case (or the file) was deleted; its name is gone.
    pub filename: Option<String>,
    pub category: Option<String>,
}

/// A release to the patient or a patient's download, with the file's
/// name and category if they still open.
#[derive(Debug, Clone)]
pub struct ToPatient {
    pub entry: db::disclosures::ToPatient,
    pub filename: Option<String>,
    pub category: Option<String>,
}

impl ToPatient {
    /// `release` or `download`.
    pub fn event(&self) -> &'static str {
        if self.entry.action == "file.release" {
            "release"
        } else {
            "download"
        }
    }
}

/// The accounting of disclosures for one case.
#[derive(Debug, Clone)]
pub struct Report {
    pub case_id: CaseId,
    pub case_state: CaseState,
    pub generated_at: Timestamp,
    /// The report reflects audit entries `1..=covers_to`.
    pub covers_to: i64,
    /// Signed after the read: its tree holds every entry reflected.
    pub checkpoint: CheckpointRow,
    pub disclosures: Vec<Disclosure>,
    pub to_patient: Vec<ToPatient>,
}

/// The names of the case's files, opened under its key.
async fn file_names(
    svc: &Services,
    case_id: &CaseId,
    key: &CaseKey,
) -> Result<HashMap<String, FileMeta>, CaseError> {
    let files = db::files::list_for_case(&svc.db, case_id).await?;
    Ok(files
        .iter()
        .filter_map(|f| {
            let meta = key
                .open_field(case_id, FILE_META, f.file_id.as_str(), &f.meta_sealed)
                .ok()?;
            let meta: FileMeta = serde_json::from_slice(&meta).ok()?;
            Some((f.file_id.as_str().to_owned(), meta))
        })
        .collect())
}

/// The names of an open case's files (none for a deleted one).
async fn names_of(
    svc: &Services,
    case_id: &CaseId,
    open: bool,
) -> Result<HashMap<String, FileMeta>, CaseError> {
    Ok(match db::cases::get(&svc.db, case_id).await? {
        Some(case) if open => file_names(svc, case_id, &svc.case_key(&case)?).await?,
        _ => HashMap::new(),
    })
}

/// The downloads of an open case's files, named.
async fn named(
    svc: &Services,
    case_id: &CaseId,
    requests: &[DownloadRequest],
    open: bool,
) -> Result<Vec<Disclosure>, CaseError> {
    let names = names_of(svc, case_id, open).await?;
    Ok(downloads::group(requests)
        .into_iter()
        .map(|download| {
            let meta = names.get(&download.file_id);
            Disclosure {
                filename: meta.map(|m| m.filename.clone()),
                category: meta.map(|m| m.category.clone()),
                download,
            }
        })
        .collect())
}

/// The downloads of an open case's files, named, without an audit entry
/// (the caller audits its own read): the patient's access view.
pub async fn for_case(svc: &Services, case_id: &CaseId) -> Result<Vec<Disclosure>, CaseError> {
    let snapshot = db::disclosures::read(&svc.db, case_id).await?;
    named(svc, case_id, &snapshot.requests, true).await
}

/// The report for a compliance officer: audited, then the checkpoint that
/// covers it. An unknown case is a denial (`NotFound`).
pub async fn report(
    svc: &Services,
    ctx: &RequestContext,
    case_id: &CaseId,
) -> Result<Report, CaseError> {
    let snapshot = db::disclosures::read(&svc.db, case_id).await?;
    let Some(case_state) = snapshot.case else {
        let entry = NewEntry::new(ACTION, Outcome::Deny)
            .case(case_id)
            .reason("no such case");
        audit::record(svc, ctx, entry).await?;
        return Err(CaseError::NotFound);
    };
    let open = case_state == CaseState::Open;
    let disclosures = named(svc, case_id, &snapshot.requests, open).await?;
    let names = names_of(svc, case_id, open).await?;
    let to_patient = snapshot
        .to_patient
        .into_iter()
        .map(|entry| {
            let meta = names.get(&entry.file_id);
            ToPatient {
                filename: meta.map(|m| m.filename.clone()),
                category: meta.map(|m| m.category.clone()),
                entry,
            }
        })
        .collect();
    let entry = NewEntry::new(ACTION, Outcome::Allow)
        .case(case_id)
        .reason(format!(
            "{} downloads reported, audit entries 1-{}",
            disclosures.len(),
            snapshot.head
        ));
    audit::record(svc, ctx, entry).await?;
    let checkpoint = checkpoints::covering(svc, snapshot.head.max(0) as u64).await?;
    Ok(Report {
        case_id: case_id.clone(),
        case_state,
        generated_at: svc.timestamp(),
        covers_to: snapshot.head,
        checkpoint,
        disclosures,
        to_patient,
    })
}
