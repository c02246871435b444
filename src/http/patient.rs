//! Patient routes (upload token): the case manifest, without the
//! coordinator's reference, and who downloaded which file.
//!
//! The patient's manifest also says until when the link may upload
//! (`upload_expires_at`) and whether it still may (`upload_open`, judged by
//! the gateway's clock, not the patient's): the upload page reads them to
//! tell an expired link before sending anything, and prints the expiry on
//! the receipt.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;
use super::state::AppState;
use crate::audit::RequestContext;
use crate::clock::Timestamp;
use crate::manifest::Manifest;
use crate::service::cases;
use crate::service::principal::{CaseRow, Principal};

fn patient_case(principal: &Principal) -> Result<&CaseRow, ApiError> {
    principal.patient_case().ok_or(ApiError::Forbidden)
}

/// The manifest as the patient sees it.
#[derive(Serialize)]
struct PatientManifest {
    #[serde(flatten)]
    manifest: Manifest,
    upload_expires_at: Timestamp,
    upload_open: bool,
}

pub async fn case_manifest(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Response, ApiError> {
    let case = patient_case(&principal)?;
    let manifest = cases::patient_manifest(&state.services, &ctx, case).await?;
    let open = principal
        .upload_period_over(state.services.timestamp())
        .is_none();
    Ok(Json(PatientManifest {
        manifest,
        upload_expires_at: case.upload_expires_at,
        upload_open: open,
    })
    .into_response())
}

/// Who (centre name, country) downloaded which of the case's files, when:
/// one entry per download (a download from byte 0 with its Range
/// continuations), the same downloads the compliance officer's accounting
/// of disclosures lists, with when its first and last byte were served,
/// how many bytes, and whether it completed or was cut.
pub async fn access(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Response, ApiError> {
    let case = patient_case(&principal)?;
    let accesses: Vec<serde_json::Value> = cases::patient_access(&state.services, &ctx, case)
        .await?
        .into_iter()
        .map(|a| {
            let d = a.download;
            serde_json::json!({
                "file_id": d.file_id,
                "filename": a.filename,
                "category": a.category,
                "centre": { "name": d.centre_name, "country": d.centre_country },
                "at": d.first_byte_at,
                "last_byte_at": d.last_byte_at,
                "bytes_served": d.bytes_served,
                "size": d.size,
                "status": d.status,
                "kind": d.kind,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "case_id": case.case_id, "accesses": accesses })).into_response())
}
