//! The authorisation layer: for the matched route, look up its row in the
//! route table, authenticate the bearer token, check the role, and audit
//! every denial. Handlers receive the [`Principal`] and the
//! [`RequestContext`] for their own (allow) entries.

use std::net::IpAddr;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::access::{self, Access, RouteSpec};
use super::conn::{ConnInfo, RequestId};
use super::error::ApiError;
use super::limiter::LimitEvent;
use super::state::AppState;
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::db::{self, cases::CaseRow, tokens::OperatorRole};
use crate::ids::{CaseId, OperatorTokenId};
use crate::token::{SecretToken, TokenKind};

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A reviewing centre holding a valid grant, over its pinned certificate.
    Centre {
        grant: Box<crate::db::grants::GrantRow>,
        centre: Box<crate::db::centres::CentreRow>,
    },
    Operator {
        token_id: OperatorTokenId,
        role: OperatorRole,
    },
    Patient {
        case: Box<CaseRow>,
    },
}

impl Principal {
    fn actor_and_role(&self) -> (String, &'static str) {
        match self {
            Principal::Operator { token_id, role } => (token_id.to_string(), role.as_str()),
            Principal::Patient { case } => (format!("patient:{}", case.case_id), "patient"),
            Principal::Centre { centre, .. } => (format!("centre:{}", centre.centre_id), "centre"),
        }
    }

    fn satisfies(&self, access: Access) -> bool {
        matches!(
            (self, access),
            (
                Principal::Operator {
                    role: OperatorRole::Coordinator,
                    ..
                },
                Access::Coordinator
            ) | (
                Principal::Operator {
                    role: OperatorRole::Compliance,
                    ..
                },
                Access::Compliance
            ) | (
                Principal::Patient { .. },
                Access::Patient | Access::PatientUpload
            )
        )
    }
}

/// The `Authorization: Bearer <token>` value, if well-formed.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

async fn resolve(state: &AppState, raw: &str) -> Result<Option<Principal>, ApiError> {
    let Some((kind, token)) = SecretToken::parse(raw) else {
        return Ok(None);
    };
    let hash = token.hash();
    Ok(match kind {
        TokenKind::Operator => db::tokens::find(&state.db, &hash)
            .await?
            .map(|(token_id, role)| Principal::Operator { token_id, role }),
        TokenKind::Upload => db::cases::find_by_upload_token(&state.db, &hash)
            .await?
            .filter(|(_, stored)| hash.ct_eq(stored))
            .map(|(case, _)| Principal::Patient {
                case: Box::new(case),
            }),
        // Grant tokens are only valid on the centre listener's grant routes.
        TokenKind::Grant => None,
    })
}

/// The case a denied request was aimed at, for the audit entry: the path
/// segment where the route template has `{case_id}` (only a well-formed id
/// is recorded).
fn target_case(template: &str, path: &str) -> Option<CaseId> {
    template
        .split('/')
        .zip(path.split('/'))
        .find(|(t, _)| *t == "{case_id}")
        .and_then(|(_, v)| CaseId::parse(v))
}

async fn deny(
    state: &AppState,
    ctx: &RequestContext,
    spec: &RouteSpec,
    case: Option<&CaseId>,
    error: ApiError,
    reason: &str,
) -> Response {
    let mut entry = NewEntry::new(spec.action.unwrap_or("unknown"), Outcome::Deny).reason(reason);
    if let Some(case) = case {
        entry = entry.case(case);
    }
    match state.audit(ctx, entry).await {
        Ok(()) => error.into_response(),
        Err(audit_error) => audit_error.into_response(),
    }
}

async fn audit_limit_event(
    state: &AppState,
    ctx: &RequestContext,
    event: LimitEvent,
) -> Result<(), ApiError> {
    let reason = match event {
        LimitEvent::Started(n) => {
            format!("{n} failed authentications within 60 s; limiting this address")
        }
        LimitEvent::Ended(n) => format!("limiting ended; {n} requests were refused"),
    };
    state
        .audit(
            ctx,
            NewEntry::new("auth.rate_limited", Outcome::Deny).reason(reason),
        )
        .await
}

pub async fn authorize(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let Some(spec) = matched.and_then(|m| access::lookup(req.method(), &m)) else {
        return ApiError::NotFound.into_response();
    };
    if spec.access == Access::Public {
        return next.run(req).await;
    }
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let mut ctx = RequestContext {
        actor: "anonymous".into(),
        role: "anonymous".into(),
        client_addr: conn.as_ref().map(|c| c.remote_addr.ip().to_string()),
        client_cert_sha256: conn.as_ref().and_then(|c| c.client_cert_sha256.clone()),
        request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
    };
    let ip: Option<IpAddr> = conn.as_ref().map(|c| c.remote_addr.ip());
    let case = target_case(spec.path, req.uri().path());

    if let Some(ip) = ip {
        let (limited, event) = state.limiter.check(ip);
        if let Some(event) = event
            && let Err(e) = audit_limit_event(&state, &ctx, event).await
        {
            return e.into_response();
        }
        if limited {
            return ApiError::RateLimited.into_response();
        }
    }

    if spec.access == Access::Centre {
        let raw = bearer(req.headers()).map(str::to_owned);
        return match super::centre_auth::authorize_centre(&state, &mut ctx, raw.as_deref()).await {
            Ok(principal) => {
                req.extensions_mut().insert(principal);
                req.extensions_mut().insert(ctx);
                next.run(req).await
            }
            Err(refusal) => {
                if refusal.counts_as_failed_auth
                    && let Some(event) = ip.and_then(|ip| state.limiter.failure(ip))
                    && let Err(e) = audit_limit_event(&state, &ctx, event).await
                {
                    return e.into_response();
                }
                deny(&state, &ctx, spec, None, refusal.error, &refusal.reason).await
            }
        };
    }

    let principal = match bearer(req.headers()) {
        None => None,
        Some(raw) => match resolve(&state, raw).await {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        },
    };
    let Some(principal) = principal else {
        let reason = if bearer(req.headers()).is_some() {
            "unknown or malformed token"
        } else {
            "no bearer token"
        };
        if let Some(event) = ip.and_then(|ip| state.limiter.failure(ip))
            && let Err(e) = audit_limit_event(&state, &ctx, event).await
        {
            return e.into_response();
        }
        return deny(
            &state,
            &ctx,
            spec,
            case.as_ref(),
            ApiError::Unauthenticated,
            reason,
        )
        .await;
    };

    let (actor, role) = principal.actor_and_role();
    ctx.actor = actor;
    ctx.role = role.into();
    if !principal.satisfies(spec.access) {
        let reason = format!("role {role} may not call {} {}", spec.method, spec.path);
        return deny(
            &state,
            &ctx,
            spec,
            case.as_ref(),
            ApiError::Forbidden,
            &reason,
        )
        .await;
    }
    if spec.access == Access::PatientUpload
        && let Principal::Patient { case } = &principal
        && case.upload_expires_at <= state.now_str()
    {
        let case_id = case.case_id.clone();
        return deny(
            &state,
            &ctx,
            spec,
            Some(&case_id),
            ApiError::UploadExpired,
            "upload token past its upload expiry",
        )
        .await;
    }
    req.extensions_mut().insert(principal);
    req.extensions_mut().insert(ctx);
    next.run(req).await
}
