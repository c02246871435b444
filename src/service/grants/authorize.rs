//! Letting a centre in: a grant token, over the grant's centre's pinned
//! certificate, while the grant is live by [`super::check_live`].

use subtle::ConstantTimeEq;

use super::{GrantError, NotLive, check_live};
use crate::audit::RequestContext;
use crate::db::grants::GrantRow;
use crate::db::{self, DbError};
use crate::service::Services;
use crate::service::principal::Principal;
use crate::token::{SecretToken, TokenKind};

/// Why a centre request is refused: the error and the audit reason.
#[derive(Debug)]
pub struct Refusal {
    pub error: GrantError,
    pub reason: String,
}

fn refuse(error: GrantError, reason: impl Into<String>) -> Refusal {
    Refusal {
        error,
        reason: reason.into(),
    }
}

impl From<DbError> for Refusal {
    fn from(e: DbError) -> Refusal {
        refuse(GrantError::Db(e), "database error")
    }
}

/// The grant a centre's bearer token names, checked against the token.
async fn grant_of_token(svc: &Services, bearer: Option<&str>) -> Result<GrantRow, Refusal> {
    let token = bearer
        .and_then(SecretToken::parse)
        .filter(|(kind, _)| *kind == TokenKind::Grant);
    let Some((_, token)) = token else {
        return Err(refuse(
            GrantError::Unauthenticated,
            "no, malformed or non-grant bearer token",
        ));
    };
    let hash = token.hash();
    let found = db::grants::find_by_token(&svc.db, &hash).await?;
    match found.filter(|(_, stored)| hash.ct_eq(stored)) {
        Some((grant, _)) => Ok(grant),
        None => Err(refuse(GrantError::Unauthenticated, "unknown grant token")),
    }
}

/// Lets a centre in: a grant token, over a TLS connection that presented
/// the grant's centre certificate (pinned by SHA-256), while the grant is
/// live. `ctx` gains the centre as actor as soon as it is known, so
/// denials are audited against it. The caller audits a refusal.
pub async fn authorize(
    svc: &Services,
    ctx: &mut RequestContext,
    bearer: Option<&str>,
) -> Result<Principal, Refusal> {
    let Some(fingerprint) = ctx.client_cert_sha256.clone() else {
        return Err(refuse(
            GrantError::ClientCertificateRequired,
            "no client certificate presented",
        ));
    };
    let grant = grant_of_token(svc, bearer).await?;
    // One row, not the whole centre table, on every grant request.
    let Some(centre) = db::centres::get(&svc.db, &grant.centre_id).await? else {
        return Err(refuse(
            GrantError::Revoked,
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
            GrantError::CertificateMismatch,
            format!(
                "grant {} belongs to centre {}; certificate {fingerprint} is not its pinned certificate",
                grant.grant_id, centre.centre_id
            ),
        ));
    }
    ctx.centre_id = Some(centre.centre_id.to_string());
    ctx.grant_id = Some(grant.grant_id.to_string());
    let case_open = db::cases::get(&svc.db, &grant.case_id).await?.is_some();
    let id = &grant.grant_id;
    match check_live(&grant, Some(&centre), case_open, svc.timestamp()) {
        Ok(()) => Ok(Principal::Centre {
            grant: Box::new(grant),
            centre: Box::new(centre),
        }),
        Err(NotLive::CaseDeleted) => Err(refuse(
            GrantError::NotFound,
            format!("grant {id}: case deleted"),
        )),
        Err(NotLive::Revoked) => Err(refuse(GrantError::Revoked, format!("grant {id} revoked"))),
        Err(NotLive::Expired) => Err(refuse(
            GrantError::Expired,
            format!("grant {id} expired at {}", grant.expires_at),
        )),
    }
}
