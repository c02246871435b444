//! Coordinator routes that change a registered centre: replace its
//! certificate and/or X25519 key, or disable it (its grants are revoked).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::centres::{parse_certificate, parse_x25519};
use super::error::ApiError;
use super::json;
use super::state::AppState;
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::db;
use crate::ids::CentreId;
use crate::tls::cert_sha256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateCentre {
    client_cert_pem: Option<String>,
    x25519_public_key: Option<String>,
}

async fn existing(
    state: &AppState,
    ctx: &RequestContext,
    action: &'static str,
    raw: &str,
) -> Result<CentreId, ApiError> {
    let found = match CentreId::parse(raw) {
        Some(id) => db::centres::list(&state.db)
            .await?
            .into_iter()
            .any(|c| c.centre_id == id)
            .then_some(id),
        None => None,
    };
    match found {
        Some(id) => Ok(id),
        None => {
            state
                .audit(
                    ctx,
                    NewEntry::new(action, Outcome::Deny).reason("no such centre"),
                )
                .await?;
            Err(ApiError::NotFound)
        }
    }
}

pub async fn update(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    Path(centre_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(json::body_error)?;
    let req: UpdateCentre = json::parse(&headers, &body)?;
    let centre_id = existing(&state, &ctx, "centre.update", &centre_id).await?;
    if req.client_cert_pem.is_none() && req.x25519_public_key.is_none() {
        return Err(ApiError::BadRequest(
            "give client_cert_pem and/or x25519_public_key".into(),
        ));
    }
    let cert = req
        .client_cert_pem
        .as_deref()
        .map(parse_certificate)
        .transpose()?;
    let key = req
        .x25519_public_key
        .as_deref()
        .map(parse_x25519)
        .transpose()?;
    let fingerprint = cert.as_ref().map(cert_sha256);
    let mut tx = state.begin().await?;
    let cert_arg = match (&fingerprint, &cert) {
        (Some(f), Some(c)) => Some((f.as_str(), c.as_ref())),
        _ => None,
    };
    if !db::centres::update(
        &mut tx,
        &centre_id,
        cert_arg,
        key.as_ref().map(|k| k.as_slice()),
        state.timestamp(),
    )
    .await?
    {
        drop(tx);
        state
            .audit(
                &ctx,
                NewEntry::new("centre.update", Outcome::Deny)
                    .centre(&centre_id)
                    .reason("certificate registered to another centre"),
            )
            .await?;
        return Err(ApiError::Conflict(
            "this certificate is already registered".into(),
        ));
    }
    let what = match (cert.is_some(), key.is_some()) {
        (true, true) => "certificate and X25519 key replaced",
        (true, false) => "certificate replaced",
        _ => "X25519 key replaced",
    };
    state
        .commit_audited(
            tx,
            &ctx,
            NewEntry::new("centre.update", Outcome::Allow)
                .centre(&centre_id)
                .reason(what),
        )
        .await?;
    Ok(
        Json(serde_json::json!({ "centre_id": centre_id, "cert_sha256": fingerprint }))
            .into_response(),
    )
}

pub async fn disable(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    Path(centre_id): Path<String>,
) -> Result<Response, ApiError> {
    let centre_id = existing(&state, &ctx, "centre.disable", &centre_id).await?;
    let now = state.timestamp();
    let mut tx = state.begin().await?;
    db::centres::disable(&mut tx, &centre_id, now).await?;
    let revoked = db::grants::revoke_where(
        &mut tx,
        "centre_id",
        centre_id.as_str(),
        now,
        "centre disabled",
    )
    .await?;
    let entry = NewEntry::new("centre.disable", Outcome::Allow)
        .centre(&centre_id)
        .reason(format!("{revoked} grants revoked"));
    state.commit_audited(tx, &ctx, entry).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
