//! Coordinator centre routes: register (validated PEM certificate and
//! X25519 public key) and list. Centres are pinned by the SHA-256 of their
//! certificate's DER.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::json;
use super::state::AppState;
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::clock::Timestamp;
use crate::db::{self, centres::NewCentre};
use crate::ids::CentreId;
use crate::tls::cert_sha256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterCentre {
    name: String,
    country: String,
    client_cert_pem: String,
    x25519_public_key: String,
}

/// A validated registration.
pub struct CentreInput {
    pub name: String,
    pub country: String,
    pub cert_der: CertificateDer<'static>,
    pub x25519_public_key: [u8; 32],
}

fn bad(message: &str) -> ApiError {
    ApiError::BadRequest(message.to_owned())
}

/// Exactly one PEM certificate that parses as X.509.
pub fn parse_certificate(pem: &str) -> Result<CertificateDer<'static>, ApiError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| bad("client_cert_pem is not a PEM certificate"))?;
    let [cert] = <[_; 1]>::try_from(certs)
        .map_err(|_| bad("client_cert_pem must hold exactly one certificate"))?;
    webpki::EndEntityCert::try_from(&cert)
        .map_err(|_| bad("client_cert_pem is not a valid X.509 certificate"))?;
    Ok(cert)
}

/// 32 bytes, base64url without padding, not the all-zero point.
pub fn parse_x25519(encoded: &str) -> Result<[u8; 32], ApiError> {
    let raw = URL_SAFE_NO_PAD
        .decode(encoded.trim())
        .map_err(|_| bad("x25519_public_key must be base64url without padding"))?;
    let key: [u8; 32] = raw
        .try_into()
        .map_err(|_| bad("x25519_public_key must be 32 bytes"))?;
    if key == [0u8; 32] {
        return Err(bad("x25519_public_key is not a usable key"));
    }
    Ok(key)
}

impl RegisterCentre {
    fn validate(self) -> Result<CentreInput, ApiError> {
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(bad(
                "name must be 1 to 200 characters without control characters",
            ));
        }
        let country = self.country.trim().to_ascii_uppercase();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(bad(
                "country must be an ISO 3166-1 alpha-2 code, e.g. \"DE\"",
            ));
        }
        Ok(CentreInput {
            name,
            country,
            cert_der: parse_certificate(&self.client_cert_pem)?,
            x25519_public_key: parse_x25519(&self.x25519_public_key)?,
        })
    }
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
    let input = json::parse::<RegisterCentre>(&headers, &body)?.validate()?;
    let centre_id = CentreId::generate();
    let fingerprint = cert_sha256(&input.cert_der);
    let mut tx = state.begin().await?;
    let inserted = db::centres::insert(
        &mut tx,
        &NewCentre {
            centre_id: &centre_id,
            name: &input.name,
            country: &input.country,
            cert_sha256: &fingerprint,
            cert_der: input.cert_der.as_ref(),
            x25519_public_key: &input.x25519_public_key,
            created_at: state.timestamp(),
        },
    )
    .await?;
    if !inserted {
        drop(tx);
        state
            .audit(
                &ctx,
                NewEntry::new("centre.register", Outcome::Deny)
                    .reason(format!("certificate {fingerprint} is already registered")),
            )
            .await?;
        return Err(ApiError::Conflict(
            "this certificate is already registered".into(),
        ));
    }
    state
        .commit_audited(
            tx,
            &ctx,
            NewEntry::new("centre.register", Outcome::Allow).centre(&centre_id),
        )
        .await?;
    let location = format!("/api/v1/centres/{centre_id}");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(Registered {
            centre_id,
            cert_sha256: fingerprint,
        }),
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
    let centres = db::centres::list(&state.db).await?;
    state
        .audit(&ctx, NewEntry::new("centre.list", Outcome::Allow))
        .await?;
    let items: Vec<CentreView> = centres
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
