//! `GET /api/v1/audit` for compliance staff: filtered, streamed page by page
//! as JSON lines (default) or CSV; with `proofs=1&tree_size=N`, each line
//! holds an entry's exact line and its inclusion proof in the tree of `N`
//! entries, so a filtered export is provable on its own. The export itself
//! is audited first (`service::audit::export`).

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde::Deserialize;

use super::error::ApiError;
use super::state::AppState;
use crate::audit::{AuditEntry, RequestContext};
use crate::service::audit::{self, Export, ExportQuery};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    case_id: Option<String>,
    centre_id: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    since: Option<String>,
    until: Option<String>,
    format: Option<String>,
    /// `1`: each line carries its entry and the entry's inclusion proof in
    /// the tree of `tree_size` entries (JSON lines only).
    proofs: Option<String>,
    tree_size: Option<String>,
}

/// The tree size an export with proofs is proven in, if asked for.
fn proofs_in(q: &AuditQuery, format: Format) -> Result<Option<u64>, ApiError> {
    match (q.proofs.as_deref(), q.tree_size.as_deref()) {
        (None | Some("0"), None) => Ok(None),
        (Some("1"), Some(size)) if matches!(format, Format::Jsonl) => size
            .parse::<u64>()
            .ok()
            .filter(|_| size.bytes().all(|b| b.is_ascii_digit()))
            .map(Some)
            .ok_or_else(|| ApiError::BadRequest("tree_size must be a positive integer".into())),
        (Some("1"), Some(_)) => Err(ApiError::BadRequest("proofs need format=jsonl".into())),
        _ => Err(ApiError::BadRequest(
            "proofs=1 needs tree_size (the size of the checkpoint to prove against)".into(),
        )),
    }
}

/// One line of an export with proofs: the entry's exact line as a string
/// (the leaf bytes), its leaf index, the tree size and the proof.
fn proof_line(entry: &AuditEntry, size: u64, hashes: Vec<String>) -> String {
    let line = serde_json::json!({
        "hashes": hashes,
        "leaf_index": entry.seq - 1,
        "line": entry.to_json_line(),
        "tree_size": size,
    });
    format!("{line}\n")
}

/// A page of an export with proofs.
async fn proof_page(
    state: &AppState,
    export: &Export,
    rows: &[AuditEntry],
) -> Result<String, crate::service::audit::AuditError> {
    let mut text = String::new();
    for row in rows {
        if let (Some(size), Some(hashes)) = (
            export.proofs_in(),
            export.proof(&state.services, row).await?,
        ) {
            text.push_str(&proof_line(row, size, hashes));
        }
    }
    Ok(text)
}

#[derive(Clone, Copy)]
enum Format {
    Jsonl,
    Csv,
}

impl Format {
    fn parse(format: Option<&str>) -> Result<Format, ApiError> {
        match format {
            None | Some("jsonl") => Ok(Format::Jsonl),
            Some("csv") => Ok(Format::Csv),
            Some(_) => Err(ApiError::BadRequest("format must be jsonl or csv".into())),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl => "application/jsonl",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    fn line(self, entry: &AuditEntry) -> String {
        match self {
            Format::Jsonl => format!("{}\n", entry.to_json_line()),
            Format::Csv => format!("{}\r\n", entry.to_csv_line()),
        }
    }
}

/// The export's body: the CSV header line if any, then one chunk per page.
fn body(state: AppState, export: Export, format: Format) -> Body {
    let header = match format {
        Format::Csv => Some(format!("{}\r\n", AuditEntry::CSV_HEADER)),
        Format::Jsonl => None,
    };
    let pages = stream::unfold(
        (state, export, header),
        move |(state, mut export, header)| async move {
            if let Some(line) = header {
                return Some((Ok(line), (state, export, None)));
            }
            match export.next_page(&state.services).await {
                Ok(None) => None,
                Ok(Some(rows)) if export.proofs_in().is_some() => {
                    match proof_page(&state, &export, &rows).await {
                        Ok(text) => Some((Ok(text), (state, export, None))),
                        Err(e) => {
                            tracing::error!(error = %e, "audit export proofs");
                            let error = std::io::Error::other("audit export failed");
                            Some((Err(error), (state, export, None)))
                        }
                    }
                }
                Ok(Some(rows)) => {
                    let text: String = rows.iter().map(|r| format.line(r)).collect();
                    Some((Ok(text), (state, export, None)))
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit export page");
                    let error = std::io::Error::other("audit export failed");
                    Some((Err(error), (state, export, None)))
                }
            }
        },
    );
    Body::from_stream(pages)
}

pub async fn export(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))?;
    let format = Format::parse(q.format.as_deref())?;
    let proofs_in = proofs_in(&q, format)?;
    let query = ExportQuery {
        case_id: q.case_id,
        centre_id: q.centre_id,
        actor: q.actor,
        action: q.action,
        outcome: q.outcome,
        since: q.since,
        until: q.until,
    };
    let export = audit::export(&state.services, &ctx, query, proofs_in).await?;
    let content_type = format.content_type();
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        body(state, export, format),
    )
        .into_response())
}
