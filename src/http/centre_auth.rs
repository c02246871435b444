//! Authorisation on the centre listener: a grant token is usable only over
//! a TLS connection that presented the grant's centre certificate (pinned
//! by SHA-256), and only while the grant is live. Each refusal has its own
//! status and code (SPEC "Status codes") and is audited with the precise
//! reason; every one of them counts toward the address's failure limit
//! (the auth layer does that, by status).

use subtle::ConstantTimeEq;

use super::auth::Principal;
use super::error::ApiError;
use super::state::AppState;
use crate::audit::RequestContext;
use crate::db;
use crate::token::{SecretToken, TokenKind};

/// Why a centre request is refused: the answer and the audit reason.
pub struct Refusal {
    pub error: ApiError,
    pub reason: String,
}

fn refuse(error: ApiError, reason: impl Into<String>) -> Refusal {
    Refusal {
        error,
        reason: reason.into(),
    }
}

/// Resolves the centre principal, or says why not. `ctx` gains the grant's
/// ids as soon as they are known, so denials are audited against them.
pub async fn authorize_centre(
    state: &AppState,
    ctx: &mut RequestContext,
    bearer: Option<&str>,
) -> Result<Principal, Refusal> {
    let Some(fingerprint) = ctx.client_cert_sha256.clone() else {
        return Err(refuse(
            ApiError::ClientCertificateRequired,
            "no client certificate presented",
        ));
    };
    let token = bearer
        .and_then(SecretToken::parse)
        .filter(|(kind, _)| *kind == TokenKind::Grant);
    let Some((_, token)) = token else {
        return Err(refuse(
            ApiError::Unauthenticated,
            "no, malformed or non-grant bearer token",
        ));
    };
    let hash = token.hash();
    let found = db::grants::find_by_token(&state.db, &hash)
        .await
        .map_err(|e| refuse(ApiError::from(e), "database error"))?;
    let Some((grant, stored)) = found.filter(|(_, stored)| hash.ct_eq(stored)) else {
        return Err(refuse(ApiError::Unauthenticated, "unknown grant token"));
    };
    drop(stored);
    // One row, not the whole centre table, on every grant request.
    let centre = db::centres::get(&state.db, &grant.centre_id)
        .await
        .map_err(|e| refuse(ApiError::from(e), "database error"))?;
    let Some(centre) = centre else {
        return Err(refuse(
            ApiError::GrantRevoked,
            "grant's centre no longer exists",
        ));
    };
    ctx.actor = format!("centre:{}", centre.centre_id);
    ctx.role = "centre".into();
    let pinned: bool = centre
        .cert_sha256
        .as_bytes()
        .ct_eq(fingerprint.as_bytes())
        .into();
    if !pinned {
        return Err(refuse(
            ApiError::CertificateMismatch,
            format!(
                "grant {} belongs to centre {}; certificate {fingerprint} is not its pinned certificate",
                grant.grant_id, centre.centre_id
            ),
        ));
    }
    let case_open = db::cases::get(&state.db, &grant.case_id)
        .await
        .map_err(|e| refuse(ApiError::from(e), "database error"))?
        .is_some();
    if !case_open {
        return Err(refuse(
            ApiError::NotFound,
            format!("grant {}: case deleted", grant.grant_id),
        ));
    }
    if grant.revoked_at.is_some() || centre.disabled_at.is_some() {
        return Err(refuse(
            ApiError::GrantRevoked,
            format!("grant {} revoked", grant.grant_id),
        ));
    }
    if grant.expires_at <= state.timestamp() {
        return Err(refuse(
            ApiError::GrantExpired,
            format!("grant {} expired at {}", grant.grant_id, grant.expires_at),
        ));
    }
    Ok(Principal::Centre {
        grant: Box::new(grant),
        centre: Box::new(centre),
    })
}
