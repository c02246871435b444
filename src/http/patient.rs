//! Patient routes (upload token): the case manifest, without the
//! coordinator's reference.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::auth::Principal;
use super::error::ApiError;
use super::state::AppState;
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::crypto::Keyring;
use crate::manifest;

pub async fn case_manifest(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Response, ApiError> {
    let Principal::Patient { case } = principal else {
        return Err(ApiError::Forbidden);
    };
    let key = Keyring::new(state.kek.clone())
        .case_key(&case.case_id, &case.wrapped_key)
        .map_err(|_| {
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

/// Who (centre name, country) downloaded which of the case's files, when.
/// Only download starts are listed, not Range continuations.
pub async fn access(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Response, ApiError> {
    let Principal::Patient { case } = principal else {
        return Err(ApiError::Forbidden);
    };
    let key = Keyring::new(state.kek.clone())
        .case_key(&case.case_id, &case.wrapped_key)
        .map_err(|_| ApiError::Internal)?;
    let files = crate::db::files::list_for_case(&state.db, &case.case_id).await?;
    let name_of = |file_id: &str| -> Option<String> {
        let row = files.iter().find(|f| f.file_id.as_str() == file_id)?;
        let meta: manifest::FileMeta = serde_json::from_slice(
            &key.open_field(
                &case.case_id,
                manifest::FILE_META,
                file_id,
                &row.meta_sealed,
            )
            .ok()?,
        )
        .ok()?;
        Some(meta.filename)
    };
    let accesses: Vec<serde_json::Value> = crate::db::grants::access_log(&state.db, &case.case_id)
        .await?
        .into_iter()
        .filter(|(_, _, _, _, _, range_start)| *range_start == 0)
        .map(|(file_id, name, country, at, kind, _)| {
            serde_json::json!({
                "file_id": file_id,
                "filename": name_of(&file_id),
                "centre": { "name": name, "country": country },
                "at": at,
                "kind": kind,
            })
        })
        .collect();
    state
        .audit(
            &ctx,
            NewEntry::new("patient.access.read", Outcome::Allow).case(&case.case_id),
        )
        .await?;
    Ok(Json(serde_json::json!({ "case_id": case.case_id, "accesses": accesses })).into_response())
}
