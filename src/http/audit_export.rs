//! `GET /api/v1/audit` for compliance staff: filtered, streamed page by page
//! as JSON lines (default) or CSV. The export itself is audited first.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde::Deserialize;

use super::error::ApiError;
use super::state::AppState;
use crate::audit::{AuditEntry, NewEntry, Outcome, RequestContext};
use crate::clock::Timestamp;
use crate::db::audit::{self, AuditFilter};

const PAGE: i64 = 500;

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

fn time_bound(name: &str, value: Option<String>) -> Result<Option<Timestamp>, ApiError> {
    value
        .map(|v| {
            Timestamp::parse(&v)
                .map_err(|_| ApiError::BadRequest(format!("{name} must be an RFC 3339 time")))
        })
        .transpose()
}

fn filter_and_format(q: AuditQuery) -> Result<(AuditFilter, Format), ApiError> {
    let format = match q.format.as_deref() {
        None | Some("jsonl") => Format::Jsonl,
        Some("csv") => Format::Csv,
        Some(_) => return Err(ApiError::BadRequest("format must be jsonl or csv".into())),
    };
    if let Some(o) = &q.outcome
        && Outcome::parse(o).is_none()
    {
        return Err(ApiError::BadRequest(
            "outcome must be allow, deny or error".into(),
        ));
    }
    Ok((
        AuditFilter {
            case_id: q.case_id,
            centre_id: q.centre_id,
            actor: q.actor,
            action: q.action,
            outcome: q.outcome,
            since: time_bound("since", q.since)?,
            until: time_bound("until", q.until)?,
        },
        format,
    ))
}

pub async fn export(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))?;
    let (filter, format) = filter_and_format(query)?;
    state
        .audit(&ctx, NewEntry::new("audit.export", Outcome::Allow))
        .await?;

    // Entries up to the current head only, so a long export ends.
    let head = audit::head(&state.db).await?;
    let pages = stream::unfold(
        (state, filter, 0i64, false, matches!(format, Format::Csv)),
        move |(state, filter, after, done, header_pending)| async move {
            if done {
                return None;
            }
            if header_pending {
                let line = format!("{}\r\n", AuditEntry::CSV_HEADER);
                return Some((Ok(line), (state, filter, after, false, false)));
            }
            match audit::page(&state.db, &filter, after, PAGE).await {
                Err(e) => {
                    tracing::error!(error = %e, "audit export page");
                    Some((
                        Err(std::io::Error::other("audit export failed")),
                        (state, filter, after, true, false),
                    ))
                }
                Ok(rows) => {
                    let rows: Vec<_> = rows.into_iter().filter(|r| r.seq <= head).collect();
                    let last = rows.last().map(|r| r.seq);
                    let finished = (rows.len() as i64) < PAGE || last.is_none_or(|s| s >= head);
                    let text: String = rows
                        .iter()
                        .map(|r| match format {
                            Format::Jsonl => format!("{}\n", r.to_json_line()),
                            Format::Csv => format!("{}\r\n", r.to_csv_line()),
                        })
                        .collect();
                    if text.is_empty() && finished {
                        return None;
                    }
                    Some((
                        Ok(text),
                        (state, filter, last.unwrap_or(after), finished, false),
                    ))
                }
            }
        },
    );
    let content_type = match format {
        Format::Jsonl => "application/jsonl",
        Format::Csv => "text/csv; charset=utf-8",
    };
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(pages),
    )
        .into_response())
}
