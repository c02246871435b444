//! Coordinator case routes: create, list, manifest, reissue the patient's
//! upload token, delete (crypto-shred).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::json;
use super::state::AppState;
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::clock::Timestamp;
use crate::crypto::{CaseKey, Keyring};
use crate::db::{self, cases::NewCase};
use crate::ids::CaseId;
use crate::manifest::{self, CASE_REFERENCE};
use crate::store;
use crate::token::{SecretToken, TokenKind};

const MAX_REFERENCE_CHARS: usize = 256;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCase {
    reference: Option<String>,
}

#[derive(Serialize)]
struct UploadLink {
    #[serde(skip_serializing_if = "Option::is_none")]
    case_id: Option<CaseId>,
    upload_token: String,
    upload_url: String,
    upload_expires_at: Timestamp,
}

fn upload_link(
    state: &AppState,
    case_id: Option<CaseId>,
    token: &SecretToken,
    expires: Timestamp,
) -> UploadLink {
    UploadLink {
        case_id,
        upload_token: token.expose().to_owned(),
        upload_url: format!(
            "{}/upload#token={}",
            state.config.server.public_url.trim_end_matches('/'),
            token.expose()
        ),
        upload_expires_at: expires,
    }
}

/// Parses the `{case_id}` path segment; a malformed id is not found (and
/// audited as such, without echoing the garbage).
pub async fn parse_case_id(
    state: &AppState,
    ctx: &RequestContext,
    action: &'static str,
    raw: &str,
) -> Result<CaseId, ApiError> {
    match CaseId::parse(raw) {
        Some(id) => Ok(id),
        None => {
            state
                .audit(
                    ctx,
                    NewEntry::new(action, Outcome::Deny).reason("malformed case id"),
                )
                .await?;
            Err(ApiError::NotFound)
        }
    }
}

fn validate_reference(r: &str) -> Result<(), ApiError> {
    if r.chars().count() > MAX_REFERENCE_CHARS || r.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "reference must be at most {MAX_REFERENCE_CHARS} characters without control characters"
        )));
    }
    Ok(())
}

pub async fn create(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(json::body_error)?;
    let request: CreateCase = json::parse_optional(&headers, &body)?;
    if let Some(r) = &request.reference {
        validate_reference(r)?;
    }
    let case_id = CaseId::generate();
    let key = CaseKey::generate();
    let wrapped = key.wrap(state.kek.as_ref(), &case_id);
    let sealed_reference = request
        .reference
        .as_ref()
        .map(|r| key.seal_field(&case_id, CASE_REFERENCE, "", r.as_bytes()));
    let token = SecretToken::generate(TokenKind::Upload);
    let now = state.timestamp();
    let expires = now.plus_secs(state.config.uploads.token_ttl_secs);

    let mut tx = state.begin().await?;
    db::cases::insert(
        &mut tx,
        &NewCase {
            case_id: &case_id,
            created_at: now,
            wrapped_key: &wrapped,
            reference_sealed: sealed_reference.as_deref(),
            upload_token_hash: &token.hash(),
            upload_expires_at: expires,
        },
    )
    .await?;
    state
        .commit_audited(
            tx,
            &ctx,
            NewEntry::new("case.create", Outcome::Allow).case(&case_id),
        )
        .await?;
    let location = format!("/api/v1/cases/{case_id}");
    let body = upload_link(&state, Some(case_id), &token, expires);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

#[derive(Serialize)]
struct CaseListItem {
    case_id: CaseId,
    created_at: Timestamp,
    file_count: i64,
    total_bytes: i64,
    state: String,
}

pub async fn list(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
) -> Result<Response, ApiError> {
    let cases = db::cases::list(&state.db).await?;
    state
        .audit(&ctx, NewEntry::new("case.list", Outcome::Allow))
        .await?;
    let items: Vec<CaseListItem> = cases
        .into_iter()
        .map(|c| CaseListItem {
            case_id: c.case_id,
            created_at: c.created_at,
            file_count: c.file_count,
            total_bytes: c.total_bytes,
            state: c.state,
        })
        .collect();
    Ok(Json(serde_json::json!({ "cases": items })).into_response())
}

/// Loads an open case and unwraps its key, or answers 404 with an audit entry.
pub async fn open_case(
    state: &AppState,
    ctx: &RequestContext,
    action: &'static str,
    case_id: &CaseId,
) -> Result<(db::cases::CaseRow, CaseKey), ApiError> {
    let Some(case) = db::cases::get(&state.db, case_id).await? else {
        state
            .audit(
                ctx,
                NewEntry::new(action, Outcome::Deny)
                    .case(case_id)
                    .reason("no such case"),
            )
            .await?;
        return Err(ApiError::NotFound);
    };
    let key = Keyring::new(state.kek.clone()).case_key(case_id, &case.wrapped_key).map_err(|_| {
        tracing::error!(case_id = %case_id, "case key does not unwrap (wrong master key or tampered row)");
        ApiError::Internal
    })?;
    Ok((case, key))
}

pub async fn manifest(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    Path(case_id): Path<String>,
) -> Result<Response, ApiError> {
    let case_id = parse_case_id(&state, &ctx, "case.read", &case_id).await?;
    let (case, key) = open_case(&state, &ctx, "case.read", &case_id).await?;
    let manifest = manifest::build(&state.db, &key, &case, true)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "manifest");
            ApiError::Internal
        })?;
    state
        .audit(
            &ctx,
            NewEntry::new("case.read", Outcome::Allow).case(&case_id),
        )
        .await?;
    Ok(Json(manifest).into_response())
}

pub async fn reissue_upload_token(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    Path(case_id): Path<String>,
) -> Result<Response, ApiError> {
    let action = "case.upload_token.reissue";
    let case_id = parse_case_id(&state, &ctx, action, &case_id).await?;
    let token = SecretToken::generate(TokenKind::Upload);
    let expires = state
        .timestamp()
        .plus_secs(state.config.uploads.token_ttl_secs);
    let mut tx = state.begin().await?;
    if !db::cases::set_upload_token(&mut tx, &case_id, &token.hash(), expires).await? {
        drop(tx);
        state
            .audit(
                &ctx,
                NewEntry::new(action, Outcome::Deny)
                    .case(&case_id)
                    .reason("no such case"),
            )
            .await?;
        return Err(ApiError::NotFound);
    }
    state
        .commit_audited(
            tx,
            &ctx,
            NewEntry::new(action, Outcome::Allow).case(&case_id),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(upload_link(&state, None, &token, expires)),
    )
        .into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    Path(case_id): Path<String>,
) -> Result<Response, ApiError> {
    let case_id = parse_case_id(&state, &ctx, "case.delete", &case_id).await?;
    let unfinished = db::uploads::active_for_case(&state.db, &case_id).await?;
    let mut tx = state.begin().await?;
    if !db::cases::shred(&mut tx, &case_id, state.timestamp()).await? {
        drop(tx);
        state
            .audit(
                &ctx,
                NewEntry::new("case.delete", Outcome::Deny)
                    .case(&case_id)
                    .reason("no such case"),
            )
            .await?;
        return Err(ApiError::NotFound);
    }
    let revoked = db::grants::revoke_where(
        &mut tx,
        "case_id",
        case_id.as_str(),
        state.timestamp(),
        "case deleted",
    )
    .await?;
    state
        .commit_audited(
            tx,
            &ctx,
            NewEntry::new("case.delete", Outcome::Allow)
                .case(&case_id)
                .reason(format!("case key destroyed; {revoked} grants revoked")),
        )
        .await?;
    // The key is gone, so the ciphertext is already unreadable; removing it
    // is housekeeping. A failure is recorded, not hidden, and not fatal.
    state.uploads.abort_case(&unfinished).await;
    if let Err(e) = state
        .store
        .delete_prefix(&store::case_prefix(&case_id))
        .await
    {
        tracing::error!(case_id = %case_id, error = %e, "objects of a shredded case not deleted");
        state
            .audit(
                &ctx,
                NewEntry::new("case.delete.objects", Outcome::Error)
                    .case(&case_id)
                    .reason(e.to_string()),
            )
            .await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
