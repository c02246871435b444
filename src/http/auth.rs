//! The authorisation layer: for the matched route, look up its row in the
//! route table, authenticate the bearer token, check the role, and audit
//! every denial. Handlers receive the [`Principal`] and the
//! [`RequestContext`] for their own (allow) entries.
//!
//! Every denial counts toward its address's failure limit ([`limiter`]):
//! the layer's own (401, 403 of every kind) and the refusals handlers give
//! callers it let through (see [`counts_as_failure`]). A limited address is
//! answered 429 before any token lookup or audit write.
//!
//! [`limiter`]: super::limiter

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::access::{self, Access, RouteSpec};
use super::conn::{ConnInfo, RequestId};
use super::error::ApiError;
use super::limiter::{AddressKey, Subject, Verdict};
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

/// Answers a denial: counts it against the address and audits it, unless
/// the address is over its limit (then 429, counted in the aggregate, no
/// entry). Failures of ours (5xx) are audited but not counted.
async fn deny(
    state: &AppState,
    ctx: &RequestContext,
    address: Option<AddressKey>,
    spec: &RouteSpec,
    case: Option<&CaseId>,
    error: ApiError,
    reason: &str,
) -> Response {
    let response = error.into_response();
    if response.status().is_client_error()
        && let Some(address) = address
    {
        match state.limiter.failure(address) {
            Verdict::Refuse => return ApiError::RateLimited.into_response(),
            Verdict::Record { started: None } => {}
            Verdict::Record {
                started: Some(subject),
            } => {
                if let Err(e) = audit_limiting_started(state, ctx, subject).await {
                    return e.into_response();
                }
            }
        }
    }
    let mut entry = NewEntry::new(spec.action.unwrap_or("unknown"), Outcome::Deny).reason(reason);
    if let Some(case) = case {
        entry = entry.case(case);
    }
    match state.audit(ctx, entry).await {
        Ok(()) => response,
        Err(audit_error) => audit_error.into_response(),
    }
}

/// The entry for the denial that reached the limit; the matching summary
/// is written when the window ends (`server::limiter_summaries`).
async fn audit_limiting_started(
    state: &AppState,
    ctx: &RequestContext,
    subject: Subject,
) -> Result<(), ApiError> {
    let limit = state.config.limits.auth_failures_per_minute;
    let reason = match subject {
        Subject::Address(address) => format!(
            "{limit} denied requests from {address} within 60 s; further requests from it get 429 until the minute is over"
        ),
        Subject::Overflow => format!(
            "{limit} denied requests within 60 s from addresses beyond the limiter's table, which share one limit; further denials from them get 429 until the minute is over"
        ),
    };
    state
        .audit(
            ctx,
            NewEntry::new("auth.rate_limited", Outcome::Deny).reason(reason),
        )
        .await
}

/// Whether a handler's answer to an authorised caller is a refusal that
/// counts toward the address's limit: 401 and 403 for everyone; for
/// patients and centres (credentials held outside the operators' control)
/// every other 4xx but the [`RESUMPTION_STATUSES`] — else probing ids,
/// ranges or uploads writes an audit entry per try.
fn counts_as_failure(operator: bool, status: StatusCode) -> bool {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return true;
    }
    !operator && status.is_client_error() && !RESUMPTION_STATUSES.contains(&status.as_u16())
}

/// 4xx answers a well-behaved client meets on a flaky connection, about
/// load or about where an upload stands rather than about the caller: 408,
/// 429, 413 (a quota is full: a patient dropping a large folder meets it
/// once per remaining file), and tus's 409 (offset moved), 423 (a PATCH
/// still running) and 460 (checksum mismatch, the client resends). They
/// never count as failures, or a patient resuming over a bad line would
/// lock themselves out.
const RESUMPTION_STATUSES: [u16; 6] = [408, 409, 413, 423, 429, 460];

/// Runs the handler for an authorised caller and counts its answer if it
/// is a refusal (the handler has audited it already; over the limit, the
/// next request from the address gets 429).
async fn run_counted(
    state: &AppState,
    ctx: RequestContext,
    address: Option<AddressKey>,
    principal: Principal,
    mut req: Request,
    next: Next,
) -> Response {
    let audit_ctx = ctx.clone();
    let operator = matches!(principal, Principal::Operator { .. });
    req.extensions_mut().insert(principal);
    req.extensions_mut().insert(ctx);
    let response = next.run(req).await;
    if counts_as_failure(operator, response.status())
        && let Some(address) = address
        && let Some(subject) = state.limiter.recorded_failure(address)
        && let Err(e) = audit_limiting_started(state, &audit_ctx, subject).await
    {
        return e.into_response();
    }
    response
}

pub async fn authorize(State(state): State<AppState>, req: Request, next: Next) -> Response {
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
    let address = conn.as_ref().map(|c| AddressKey::from(c.remote_addr.ip()));
    let case = target_case(spec.path, req.uri().path());

    if address.is_some_and(|a| state.limiter.is_limited(a)) {
        return ApiError::RateLimited.into_response();
    }

    if spec.access == Access::Centre {
        let raw = bearer(req.headers()).map(str::to_owned);
        return match super::centre_auth::authorize_centre(&state, &mut ctx, raw.as_deref()).await {
            Ok(principal) => run_counted(&state, ctx, address, principal, req, next).await,
            Err(refusal) => {
                deny(
                    &state,
                    &ctx,
                    address,
                    spec,
                    None,
                    refusal.error,
                    &refusal.reason,
                )
                .await
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
        return deny(
            &state,
            &ctx,
            address,
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
            address,
            spec,
            case.as_ref(),
            ApiError::Forbidden,
            &reason,
        )
        .await;
    }
    if spec.access == Access::PatientUpload
        && let Principal::Patient { case } = &principal
        && case.upload_expires_at <= state.timestamp()
    {
        let case_id = case.case_id.clone();
        return deny(
            &state,
            &ctx,
            address,
            spec,
            Some(&case_id),
            ApiError::UploadExpired,
            "upload token past its upload expiry",
        )
        .await;
    }
    run_counted(&state, ctx, address, principal, req, next).await
}
