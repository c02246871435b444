//! The coordinator's release of a file to the patient (a centre's written
//! opinion, a translation); the rules are `service::release`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::ids::{CaseId, FileId};
use crate::service::release;

pub async fn release(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    Path((case_id, file_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (Some(case_id), Some(file_id)) = (CaseId::parse(&case_id), FileId::parse(&file_id)) else {
        // A malformed id is answered like an unknown one.
        let entry =
            NewEntry::new("file.release", Outcome::Deny).reason("malformed case or file id");
        state.audit(&ctx, entry).await?;
        return Err(ApiError::NotFound);
    };
    release::release(&state.services, &ctx, &case_id, &file_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
