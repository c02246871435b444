//! Coordinator centre routes: register, list, update (certificate and/or
//! X25519 key), disable. The rules are `service::centres`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::Id;
use super::json;
use super::state::AppState;
use crate::audit::RequestContext;
use crate::clock::Timestamp;
use crate::ids::CentreId;
use crate::service::centres::{self, Registration, Update};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterCentre {
    name: String,
    country: String,
    client_cert_pem: String,
    x25519_public_key: String,
}

#[derive(Serialize)]
struct Registered {
    centre_id: CentreId,
    cert_sha256: String,
}

pub async fn register(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(json::body_error)?;
    let req: RegisterCentre = json::parse(&headers, &body)?;
    let registration = Registration {
        name: req.name,
        country: req.country,
        client_cert_pem: req.client_cert_pem,
        x25519_public_key: req.x25519_public_key,
    };
    let (centre_id, cert_sha256) = centres::register(&state.services, &ctx, registration).await?;
    let location = format!("/api/v1/centres/{centre_id}");
    let body = Registered {
        centre_id,
        cert_sha256,
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

#[derive(Serialize)]
struct CentreView {
    centre_id: CentreId,
    name: String,
    country: String,
    cert_sha256: String,
    x25519_public_key: String,
    created_at: Timestamp,
    state: &'static str,
}

pub async fn list(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
) -> Result<Response, ApiError> {
    let items: Vec<CentreView> = centres::list(&state.services, &ctx)
        .await?
        .into_iter()
        .map(|c| CentreView {
            centre_id: c.centre_id,
            name: c.name,
            country: c.country,
            cert_sha256: c.cert_sha256,
            x25519_public_key: URL_SAFE_NO_PAD.encode(&c.x25519_public_key),
            created_at: c.created_at,
            state: if c.disabled_at.is_some() {
                "disabled"
            } else {
                "active"
            },
        })
        .collect();
    Ok(Json(serde_json::json!({ "centres": items })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateCentre {
    client_cert_pem: Option<String>,
    x25519_public_key: Option<String>,
}

pub async fn update(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    Id(centre_id): Id<CentreId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(json::body_error)?;
    let req: UpdateCentre = json::parse(&headers, &body)?;
    let update = Update {
        client_cert_pem: req.client_cert_pem,
        x25519_public_key: req.x25519_public_key,
    };
    let fingerprint = centres::update(&state.services, &ctx, &centre_id, update).await?;
    let body = serde_json::json!({ "centre_id": centre_id, "cert_sha256": fingerprint });
    Ok(Json(body).into_response())
}

pub async fn disable(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    Id(centre_id): Id<CentreId>,
) -> Result<Response, ApiError> {
    centres::disable(&state.services, &ctx, &centre_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
