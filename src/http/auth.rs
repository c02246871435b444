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
//! An unknown or malformed bearer token is also noted as a guess in the
//! address's window (one `alert.token_guessing` per address and window,
//! written with the window's summary); a refusal on the centre listener
//! checks whether the certificate is a disabled centre's
//! (`alert.disabled_centre`).
//!
//! [`limiter`]: super::limiter

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::conn::{ConnInfo, RequestId};
use super::endpoint::{Access, Endpoint, Spec};
use super::error::ApiError;
use super::limiter::{AddressKey, Subject, Verdict};
use super::state::AppState;
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::ids::CaseId;
use crate::service::audit::centre_alerts;
use crate::service::grants::GrantError;
use crate::service::principal::Principal;
use crate::service::{grants, principal};

/// The `Authorization: Bearer <token>` value, if well-formed.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
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

/// The request being authorised: what its denials are audited and counted
/// against.
struct Gate<'a> {
    state: &'a AppState,
    ctx: RequestContext,
    address: Option<AddressKey>,
    spec: Spec,
    /// The case the request is aimed at, if the path names a well-formed one.
    case: Option<CaseId>,
}

impl Gate<'_> {
    /// Answers a denial: counts it against the address and audits it,
    /// unless the address is over its limit (then 429, counted in the
    /// aggregate, no entry). Failures of ours (5xx) are audited but not
    /// counted.
    async fn deny(&self, error: ApiError, reason: &str) -> Response {
        let (state, ctx) = (self.state, &self.ctx);
        let response = error.into_response();
        if response.status().is_client_error()
            && let Some(address) = self.address
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
        let action = self.spec.action.unwrap_or("unknown");
        let mut entry = NewEntry::new(action, Outcome::Deny).reason(reason);
        if let Some(case) = &self.case {
            entry = entry.case(case);
        }
        match state.audit(ctx, entry).await {
            Ok(()) => response,
            Err(audit_error) => ApiError::from(audit_error).into_response(),
        }
    }
}

impl Gate<'_> {
    /// Notes a denied request's unknown or malformed bearer token as a
    /// guess from its address, after [`Gate::deny`] counted the failure
    /// and answered `response` (a 429 is in the window's refused count
    /// already).
    fn unknown_token(&self, response: &Response) {
        if let Some(address) = self.address
            && response.status() != StatusCode::TOO_MANY_REQUESTS
        {
            self.state.limiter.unknown_token(address);
        }
    }
}

/// The entry for the denial that reached the limit; the matching summary
/// is written when the window ends (`server::limiter_summaries`).
async fn audit_limiting_started(
    state: &AppState,
    ctx: &RequestContext,
    subject: Subject,
) -> Result<(), ApiError> {
    let limit = state.services.config.limits.auth_failures_per_minute;
    let reason = match subject {
        Subject::Address(address) => format!(
            "{limit} denied requests from {address} within 60 s; further requests from it get 429 until the minute is over"
        ),
        Subject::Overflow => format!(
            "{limit} denied requests within 60 s from addresses beyond the limiter's table, which share one limit; further denials from them get 429 until the minute is over"
        ),
    };
    let entry = NewEntry::new("auth.rate_limited", Outcome::Deny).reason(reason);
    Ok(state.audit(ctx, entry).await?)
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
    gate: Gate<'_>,
    principal: Principal,
    mut req: Request,
    next: Next,
) -> Response {
    let Gate {
        state,
        ctx,
        address,
        ..
    } = gate;
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

/// The authorisation layer: finds the request's endpoint in the table,
/// lets public endpoints through, and otherwise authenticates the caller
/// and checks its access before the handler runs. The endpoint goes into
/// the request's extensions (path extractors audit against its action).
pub async fn authorize(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let Some(endpoint) = matched.and_then(|m| Endpoint::find(req.method(), &m)) else {
        return ApiError::NotFound.into_response();
    };
    req.extensions_mut().insert(endpoint);
    let spec = endpoint.spec();
    if spec.access == Access::Public {
        return next.run(req).await;
    }
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let gate = Gate {
        state: &state,
        ctx: RequestContext {
            actor: "anonymous".into(),
            role: "anonymous".into(),
            client_addr: conn.as_ref().map(|c| c.remote_addr.ip().to_string()),
            client_cert_sha256: conn.as_ref().and_then(|c| c.client_cert_sha256.clone()),
            request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
            ..Default::default()
        },
        address: conn.as_ref().map(|c| AddressKey::from(c.remote_addr.ip())),
        case: target_case(spec.path, req.uri().path()),
        spec,
    };
    if gate.address.is_some_and(|a| state.limiter.is_limited(a)) {
        return ApiError::RateLimited.into_response();
    }
    if gate.spec.access == Access::Centre {
        authorize_centre(gate, req, next).await
    } else {
        authorize_bearer(gate, req, next).await
    }
}

/// A centre: a grant token over its pinned certificate, while the grant is
/// live (the grant service decides). Denials are not tied to a case.
async fn authorize_centre(mut gate: Gate<'_>, req: Request, next: Next) -> Response {
    let raw = bearer(req.headers()).map(str::to_owned);
    gate.case = None;
    match grants::authorize(&gate.state.services, &mut gate.ctx, raw.as_deref()).await {
        Ok(principal) => run_counted(gate, principal, req, next).await,
        Err(refusal) => {
            let guess = raw.is_some() && matches!(refusal.error, GrantError::Unauthenticated);
            let response = gate.deny(refusal.error.into(), &refusal.reason).await;
            if guess {
                gate.unknown_token(&response);
            }
            centre_alerts::certificate_refused(&gate.state.services, &gate.ctx).await;
            response
        }
    }
}

/// An operator or a patient: a known bearer token whose role the endpoint
/// admits; a patient uploads only within the upload period (a
/// coordinator's uploads have no such period).
async fn authorize_bearer(mut gate: Gate<'_>, req: Request, next: Next) -> Response {
    let state = gate.state;
    let principal = match bearer(req.headers()) {
        None => None,
        Some(raw) => match principal::resolve(&state.services, raw).await {
            Ok(p) => p,
            Err(e) => return ApiError::from(e).into_response(),
        },
    };
    let Some(principal) = principal else {
        if bearer(req.headers()).is_none() {
            return gate
                .deny(ApiError::Unauthenticated, "no bearer token")
                .await;
        }
        let response = gate
            .deny(ApiError::Unauthenticated, "unknown or malformed token")
            .await;
        gate.unknown_token(&response);
        return response;
    };
    let (actor, role) = principal.actor_and_role();
    gate.ctx.actor = actor;
    gate.ctx.role = role.into();
    if !gate.spec.access.admits(&principal) {
        let reason = format!(
            "role {role} may not call {} {}",
            gate.spec.method, gate.spec.path
        );
        return gate.deny(ApiError::Forbidden, &reason).await;
    }
    if matches!(gate.spec.access, Access::PatientUpload | Access::Uploader)
        && let Some(case_id) = principal.upload_period_over(state.services.timestamp())
    {
        gate.case = Some(case_id.clone());
        let reason = "upload token past its upload expiry";
        return gate.deny(ApiError::UploadExpired, reason).await;
    }
    run_counted(gate, principal, req, next).await
}
