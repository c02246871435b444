//! `GET /api/v1/audit` for compliance staff: filtered, streamed page by page
//! as JSON lines (default) or CSV. The export itself is audited first
//! (`service::audit::export`).

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
    let query = ExportQuery {
        case_id: q.case_id,
        centre_id: q.centre_id,
        actor: q.actor,
        action: q.action,
        outcome: q.outcome,
        since: q.since,
        until: q.until,
    };
    let export = audit::export(&state.services, &ctx, query).await?;
    let content_type = format.content_type();
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        body(state, export, format),
    )
        .into_response())
}
