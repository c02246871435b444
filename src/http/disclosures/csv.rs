//! The report as CSV (RFC 4180, CRLF line ends): one line per download,
//! the columns of the JSON rows, then the report's context on every line
//! (when it was made, the last audit entry it reflects, the checkpoint's
//! tree size and root), so a line cut out of a spreadsheet still names
//! what it was read under. File names are the patient's input: every field
//! goes through [`csv_field`], which quotes and defuses formulas.
//!
//! What went back to the patient follows as lines of the same columns:
//! `kind` `release_to_patient` or `patient_download`, the time as
//! `first_byte_at`, `status` the entry's detail, the centre columns empty
//! (`centre_id` holds who released or downloaded), its one audit entry.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::{CheckpointLine, PatientRow, Row};
use crate::audit::csv_field;
use crate::service::disclosures::Report;

pub const HEADER: &str = "centre_name,centre_country,centre_id,grant_id,file_id,filename,category,kind,first_byte_at,last_byte_at,bytes_served,size,status,requests,starts_at_byte,audit_seqs,case_id,report_generated_at,audit_last_seq,checkpoint_tree_size,checkpoint_root";

/// Shown for a name that no longer opens: the case was deleted, or (in an
/// open case) the name does not decrypt — never called deleted then.
pub fn missing_name(report: &Report) -> &'static str {
    match report.case_state {
        crate::service::disclosures::CaseState::Open => "(name unavailable)",
        crate::service::disclosures::CaseState::Deleted { .. } => "(deleted)",
    }
}

/// Sequence numbers, space-separated.
pub fn seqs(seqs: &[i64]) -> String {
    seqs.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn line(row: &Row<'_>, context: &[String], missing: &str) -> String {
    let opt = |v: Option<&str>, none: &str| v.unwrap_or(none).to_owned();
    let fields: Vec<String> = [
        opt(row.centre_name, ""),
        opt(row.centre_country, ""),
        row.centre_id.to_owned(),
        row.grant_id.to_owned(),
        row.file_id.to_owned(),
        opt(row.filename, missing),
        opt(row.category, missing),
        row.kind.to_owned(),
        row.first_byte_at.to_string(),
        row.last_byte_at.map(|t| t.to_string()).unwrap_or_default(),
        row.bytes_served.to_string(),
        row.size.map(|s| s.to_string()).unwrap_or_default(),
        row.status.to_owned(),
        row.requests.to_string(),
        row.starts_at_byte.to_string(),
        seqs(row.audit_seqs),
    ]
    .into_iter()
    .chain(context.iter().cloned())
    .collect();
    let cells: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    format!("{}\r\n", cells.join(","))
}

fn patient_line(row: &PatientRow<'_>, context: &[String], missing: &str) -> String {
    let fields: Vec<String> = [
        String::new(),
        String::new(),
        row.actor.to_owned(),
        String::new(),
        row.file_id.to_owned(),
        row.filename.unwrap_or(missing).to_owned(),
        row.category.unwrap_or(missing).to_owned(),
        match row.event {
            "release" => "release_to_patient",
            _ => "patient_download",
        }
        .to_owned(),
        row.at.to_string(),
        String::new(),
        String::new(),
        String::new(),
        row.detail.unwrap_or("").to_owned(),
        "1".to_owned(),
        String::new(),
        row.audit_seq.to_string(),
    ]
    .into_iter()
    .chain(context.iter().cloned())
    .collect();
    let cells: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    format!("{}\r\n", cells.join(","))
}

pub fn text(report: &Report) -> String {
    let cp = CheckpointLine::of(report);
    let context = [
        report.case_id.to_string(),
        report.generated_at.to_string(),
        report.covers_to.to_string(),
        cp.tree_size.to_string(),
        cp.root,
    ];
    let mut out = format!("{HEADER}\r\n");
    for d in &report.disclosures {
        out.push_str(&line(&Row::of(d), &context, missing_name(report)));
    }
    for t in &report.to_patient {
        out.push_str(&patient_line(
            &PatientRow::of(t),
            &context,
            missing_name(report),
        ));
    }
    out
}

pub fn response(report: &Report) -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        text(report),
    )
        .into_response();
    let disposition = format!(
        "attachment; filename=\"disclosures-{}.csv\"",
        report.case_id
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    response
}
