//! `GET /api/v1/cases/{case_id}/disclosures` for compliance staff: the
//! accounting of disclosures for a case (`service::disclosures`), as JSON
//! (default), CSV ([`csv`]) or a printable HTML page ([`html`]). Every
//! form states the signed checkpoint the report was read under and the
//! audit entries it reflects. The report holds file names (personal data):
//! never cached. Besides the downloads by centres it lists what went back
//! to the patient (`to_patient`: releases and the patient's downloads).

mod csv;
mod html;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::Id;
use super::state::AppState;
use crate::audit::RequestContext;
use crate::clock::Timestamp;
use crate::ids::CaseId;
use crate::service::disclosures::{self, CaseState, Disclosure, Report, ToPatient};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisclosuresQuery {
    format: Option<String>,
}

#[derive(Clone, Copy)]
enum Format {
    Json,
    Csv,
    Html,
}

impl Format {
    fn parse(format: Option<&str>) -> Result<Format, ApiError> {
        match format {
            None | Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some("html") => Ok(Format::Html),
            Some(_) => Err(ApiError::BadRequest(
                "format must be json, csv or html".into(),
            )),
        }
    }
}

/// One row of the report as JSON (and, in this order, CSV).
#[derive(Serialize)]
pub struct Row<'a> {
    centre_name: Option<&'a str>,
    centre_country: Option<&'a str>,
    centre_id: &'a str,
    grant_id: &'a str,
    file_id: &'a str,
    /// `null` once the case (or file) was deleted.
    filename: Option<&'a str>,
    category: Option<&'a str>,
    kind: &'a str,
    first_byte_at: Timestamp,
    last_byte_at: Option<Timestamp>,
    bytes_served: i64,
    size: Option<i64>,
    status: &'static str,
    requests: u32,
    starts_at_byte: i64,
    /// Sequence numbers of the download's audit entries.
    audit_seqs: &'a [i64],
}

impl<'a> Row<'a> {
    fn of(d: &'a Disclosure) -> Row<'a> {
        let x = &d.download;
        Row {
            centre_name: x.centre_name.as_deref(),
            centre_country: x.centre_country.as_deref(),
            centre_id: &x.centre_id,
            grant_id: &x.grant_id,
            file_id: &x.file_id,
            filename: d.filename.as_deref(),
            category: d.category.as_deref(),
            kind: &x.kind,
            first_byte_at: x.first_byte_at,
            last_byte_at: x.last_byte_at,
            bytes_served: x.bytes_served,
            size: x.size,
            status: x.status.as_str(),
            requests: x.requests,
            starts_at_byte: x.starts_at_byte,
            audit_seqs: &x.audit_seqs,
        }
    }
}

/// A release to the patient or a patient's download, as JSON.
#[derive(Serialize)]
pub struct PatientRow<'a> {
    /// `release` or `download`.
    event: &'static str,
    at: Timestamp,
    /// Who released (a coordinator's token id) or `patient:<case>`.
    actor: &'a str,
    file_id: &'a str,
    filename: Option<&'a str>,
    category: Option<&'a str>,
    /// What the audit entry says: the file's source, or the bytes served.
    detail: Option<&'a str>,
    audit_seq: i64,
}

impl<'a> PatientRow<'a> {
    fn of(t: &'a ToPatient) -> PatientRow<'a> {
        PatientRow {
            event: t.event(),
            at: t.entry.at,
            actor: &t.entry.actor,
            file_id: &t.entry.file_id,
            filename: t.filename.as_deref(),
            category: t.category.as_deref(),
            detail: t.entry.detail.as_deref(),
            audit_seq: t.entry.seq,
        }
    }
}

/// The checkpoint a report was read under, as its signed note names it.
pub struct CheckpointLine {
    pub origin: String,
    pub tree_size: u64,
    /// Standard base64, as in the note and in `audit verify`'s summary.
    pub root: String,
}

impl CheckpointLine {
    fn of(report: &Report) -> CheckpointLine {
        let cp = &report.checkpoint;
        CheckpointLine {
            origin: cp.note.lines().next().unwrap_or_default().to_owned(),
            tree_size: cp.tree_size,
            root: STANDARD.encode(cp.root),
        }
    }
}

fn case_state(report: &Report) -> (&'static str, Option<Timestamp>) {
    match report.case_state {
        CaseState::Open => ("open", None),
        CaseState::Deleted { at } => ("deleted", at),
    }
}

fn json(report: &Report) -> serde_json::Value {
    let (state, deleted_at) = case_state(report);
    let cp = CheckpointLine::of(report);
    let rows: Vec<Row<'_>> = report.disclosures.iter().map(Row::of).collect();
    let to_patient: Vec<PatientRow<'_>> = report.to_patient.iter().map(PatientRow::of).collect();
    serde_json::json!({
        "case_id": report.case_id,
        "case_state": state,
        "case_deleted_at": deleted_at,
        "generated_at": report.generated_at,
        "audit_entries": { "first_seq": 1, "last_seq": report.covers_to },
        "checkpoint": {
            "origin": cp.origin,
            "tree_size": cp.tree_size,
            "root": cp.root,
            "note": report.checkpoint.note,
        },
        "disclosures": rows,
        "to_patient": to_patient,
    })
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub async fn report(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    Id(case_id): Id<CaseId>,
    query: Result<Query<DisclosuresQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))?;
    let format = Format::parse(q.format.as_deref())?;
    let report = disclosures::report(&state.services, &ctx, &case_id).await?;
    let response = match format {
        Format::Json => Json(json(&report)).into_response(),
        Format::Csv => csv::response(&report),
        Format::Html => html::response(&report),
    };
    Ok(no_store(response))
}
