//! Coordinator case routes: create, list, manifest, reissue the patient's
//! upload token, delete (crypto-shred). The rules are `service::cases`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::Id;
use super::json;
use super::state::AppState;
use crate::audit::RequestContext;
use crate::clock::Timestamp;
use crate::ids::CaseId;
use crate::service::cases::{self, UploadLink};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCase {
    reference: Option<String>,
}

/// The patient's upload link as the coordinator passes it on.
#[derive(Serialize)]
struct UploadLinkView {
    #[serde(skip_serializing_if = "Option::is_none")]
    case_id: Option<CaseId>,
    upload_token: String,
    upload_url: String,
    upload_expires_at: Timestamp,
}

impl UploadLinkView {
    fn new(state: &AppState, case_id: Option<CaseId>, link: UploadLink) -> UploadLinkView {
        let token = link.token.expose();
        UploadLinkView {
            case_id,
            upload_token: token.to_owned(),
            upload_url: format!(
                "{}/upload#token={token}",
                state
                    .services
                    .config
                    .server
                    .public_url
                    .trim_end_matches('/'),
            ),
            upload_expires_at: link.expires_at,
        }
    }
}

pub async fn create(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(json::body_error)?;
    let request: CreateCase = json::parse_optional(&headers, &body)?;
    let (case_id, link) = cases::create(&state.services, &ctx, request.reference).await?;
    let location = format!("/api/v1/cases/{case_id}");
    let body = UploadLinkView::new(&state, Some(case_id), link);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

#[derive(Serialize)]
struct CaseListItem {
    case_id: CaseId,
    created_at: Timestamp,
    file_count: i64,
    total_bytes: i64,
    state: String,
}

pub async fn list(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
) -> Result<Response, ApiError> {
    let items: Vec<CaseListItem> = cases::list(&state.services, &ctx)
        .await?
        .into_iter()
        .map(|c| CaseListItem {
            case_id: c.case_id,
            created_at: c.created_at,
            file_count: c.file_count,
            total_bytes: c.total_bytes,
            state: c.state,
        })
        .collect();
    Ok(Json(serde_json::json!({ "cases": items })).into_response())
}

pub async fn manifest(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    Id(case_id): Id<CaseId>,
) -> Result<Response, ApiError> {
    let manifest = cases::manifest(&state.services, &ctx, &case_id).await?;
    Ok(Json(manifest).into_response())
}

pub async fn reissue_upload_token(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    Id(case_id): Id<CaseId>,
) -> Result<Response, ApiError> {
    let link = cases::reissue_upload_token(&state.services, &ctx, &case_id).await?;
    let body = UploadLinkView::new(&state, None, link);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    Id(case_id): Id<CaseId>,
) -> Result<Response, ApiError> {
    cases::delete(&state.services, &ctx, &case_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
