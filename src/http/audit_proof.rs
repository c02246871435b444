//! The audit log's proof routes for compliance staff: the latest signed
//! checkpoint (`text/plain`, a C2SP signed note), inclusion and
//! consistency proofs (JSON, hex hashes), and the stored leaf hashes of a
//! tree size (`text/plain`, one hex hash a line, for offline verification);
//! and the alerts (`alert.*` entries) with counts per kind.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde::Deserialize;

use super::error::ApiError;
use super::state::AppState;
use crate::audit::RequestContext;
use crate::service::audit::{alerts as alert_log, checkpoints, proofs};

const TEXT: &str = "text/plain; charset=utf-8";
/// Leaf hashes per page of the leaves body.
const LEAF_PAGE: u64 = 4096;

pub async fn checkpoint(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
) -> Result<Response, ApiError> {
    let row = checkpoints::read(&state.services, &ctx).await?;
    Ok(([(header::CONTENT_TYPE, TEXT)], row.note).into_response())
}

/// Recent alerts and their counts per kind.
pub async fn alerts(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
) -> Result<Response, ApiError> {
    Ok(Json(alert_log::read(&state.services, &ctx).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofQuery {
    leaf_index: Option<String>,
    tree_size: Option<String>,
    first: Option<String>,
    second: Option<String>,
}

fn number(name: &str, value: &str) -> Result<u64, ApiError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadRequest(format!(
            "{name} must be a non-negative integer"
        )));
    }
    value
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{name} is out of range")))
}

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))
}

pub async fn proof(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    q: Result<Query<ProofQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let svc = &state.services;
    match (q.leaf_index, q.tree_size, q.first, q.second) {
        (Some(leaf), Some(size), None, None) => {
            let (leaf, size) = (number("leaf_index", &leaf)?, number("tree_size", &size)?);
            Ok(Json(proofs::inclusion(svc, &ctx, leaf, size).await?).into_response())
        }
        (None, None, Some(first), Some(second)) => {
            let (first, second) = (number("first", &first)?, number("second", &second)?);
            Ok(Json(proofs::consistency(svc, &ctx, first, second).await?).into_response())
        }
        _ => Err(ApiError::BadRequest(
            "ask for leaf_index and tree_size (inclusion) or first and second (consistency)".into(),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeavesQuery {
    tree_size: Option<String>,
}

pub async fn leaves(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    q: Result<Query<LeavesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let size = q
        .tree_size
        .ok_or_else(|| ApiError::BadRequest("tree_size is required".into()))?;
    let size = proofs::leaves(&state.services, &ctx, number("tree_size", &size)?).await?;
    let pages = stream::unfold((state, 0u64), move |(state, from)| async move {
        if from >= size {
            return None;
        }
        let limit = LEAF_PAGE.min(size - from);
        match proofs::leaf_page(&state.services, from, limit).await {
            Ok(hashes) if hashes.len() as u64 == limit => {
                let text: String = hashes
                    .iter()
                    .map(|h| format!("{}\n", crate::hex::encode(h)))
                    .collect();
                Some((Ok(text), (state, from + limit)))
            }
            Ok(_) => {
                tracing::error!(from, "audit leaf hashes missing");
                Some((
                    Err(std::io::Error::other("audit leaves failed")),
                    (state, size),
                ))
            }
            Err(e) => {
                tracing::error!(error = %e, "audit leaves page");
                Some((
                    Err(std::io::Error::other("audit leaves failed")),
                    (state, size),
                ))
            }
        }
    });
    Ok(([(header::CONTENT_TYPE, TEXT)], Body::from_stream(pages)).into_response())
}
