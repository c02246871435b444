//! Coordinator grant routes: issue a grant to a centre for a case's files,
//! list grants with state and use counts, revoke. The rules are
//! `service::grants`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::Id;
use super::json;
use super::state::AppState;
use crate::audit::RequestContext;
use crate::clock::Timestamp;
use crate::ids::{CaseId, GrantId};
use crate::service::grants::{self, GrantSummary, NewGrant};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGrant {
    centre_id: String,
    file_ids: Option<Vec<String>>,
    expires_in_secs: u64,
    max_downloads: i64,
    /// Absent: the centre may reply.
    may_reply: Option<bool>,
}

#[derive(Serialize)]
struct Created {
    grant_id: GrantId,
    grant_token: String,
    expires_at: Timestamp,
}

pub async fn create(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    Id(case_id): Id<CaseId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(json::body_error)?;
    let req: CreateGrant = json::parse(&headers, &body)?;
    let req = NewGrant {
        centre_id: req.centre_id,
        file_ids: req.file_ids,
        expires_in_secs: req.expires_in_secs,
        max_downloads: req.max_downloads,
        may_reply: req.may_reply.unwrap_or(true),
    };
    let issued = grants::create(&state.services, &ctx, &case_id, req).await?;
    let body = Created {
        grant_id: issued.grant_id,
        grant_token: issued.token.expose().to_owned(),
        expires_at: issued.expires_at,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn grant_view(g: GrantSummary) -> serde_json::Value {
    let files: Vec<_> = g
        .files
        .iter()
        .map(|f| {
            serde_json::json!({
                "file_id": f.file_id, "downloads": f.downloads, "bytes_served": f.bytes_served,
            })
        })
        .collect();
    let grant = g.grant;
    serde_json::json!({
        "grant_id": grant.grant_id,
        "centre_id": grant.centre_id,
        "created_at": grant.created_at,
        "expires_at": grant.expires_at,
        "max_downloads": grant.max_downloads,
        "may_reply": grant.may_reply,
        "revoked_at": grant.revoked_at,
        "state": g.state.as_str(),
        "files": files,
    })
}

pub async fn list(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    Id(case_id): Id<CaseId>,
) -> Result<Response, ApiError> {
    let grants: Vec<_> = grants::list(&state.services, &ctx, &case_id)
        .await?
        .into_iter()
        .map(grant_view)
        .collect();
    Ok(Json(serde_json::json!({ "case_id": case_id, "grants": grants })).into_response())
}

pub async fn revoke(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    Id(grant_id): Id<GrantId>,
) -> Result<Response, ApiError> {
    grants::revoke(&state.services, &ctx, &grant_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
