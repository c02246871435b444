//! Patient routes (upload token): the case manifest, without the
//! coordinator's reference.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::auth::Principal;
use super::error::ApiError;
use super::state::AppState;
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::crypto::CaseKey;
use crate::manifest;

pub async fn case_manifest(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Response, ApiError> {
    let Principal::Patient { case } = principal else {
        return Err(ApiError::Forbidden);
    };
    let key =
        CaseKey::unwrap(state.kek.as_ref(), &case.case_id, &case.wrapped_key).map_err(|_| {
            tracing::error!(case_id = %case.case_id, "case key does not unwrap");
            ApiError::Internal
        })?;
    let manifest = manifest::build(&state.db, &key, &case, false)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "manifest");
            ApiError::Internal
        })?;
    state
        .audit(
            &ctx,
            NewEntry::new("patient.case.read", Outcome::Allow).case(&case.case_id),
        )
        .await?;
    Ok(Json(manifest).into_response())
}
