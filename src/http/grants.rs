//! Coordinator grant routes: issue a grant to a centre for a case's files,
//! list grants with state and use counts, revoke.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::cases::parse_case_id;
use super::error::ApiError;
use super::json;
use super::state::AppState;
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::clock::Timestamp;
use crate::db::{self, grants::GrantRow};
use crate::ids::{CentreId, FileId, GrantId};
use crate::token::{SecretToken, TokenKind};

/// Longest grant a coordinator can issue (30 days).
pub const MAX_EXPIRES_SECS: u64 = 30 * 24 * 3600;
const MAX_DOWNLOADS: i64 = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGrant {
    centre_id: String,
    file_ids: Option<Vec<String>>,
    expires_in_secs: u64,
    max_downloads: i64,
}

#[derive(Serialize)]
struct Created {
    grant_id: GrantId,
    grant_token: String,
    expires_at: Timestamp,
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::BadRequest(m.into())
}

pub async fn create(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    Path(case_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let case_id = parse_case_id(&state, &ctx, "grant.create", &case_id).await?;
    let body = body.map_err(json::body_error)?;
    let req: CreateGrant = json::parse(&headers, &body)?;
    if req.expires_in_secs == 0 || req.expires_in_secs > MAX_EXPIRES_SECS {
        return Err(bad(format!(
            "expires_in_secs must be 1..={MAX_EXPIRES_SECS}"
        )));
    }
    if !(1..=MAX_DOWNLOADS).contains(&req.max_downloads) {
        return Err(bad(format!("max_downloads must be 1..={MAX_DOWNLOADS}")));
    }
    let deny = |reason: String| {
        NewEntry::new("grant.create", Outcome::Deny)
            .case(&case_id)
            .reason(reason)
    };
    if db::cases::get(&state.db, &case_id).await?.is_none() {
        state.audit(&ctx, deny("no such case".into())).await?;
        return Err(ApiError::NotFound);
    }
    let centre =
        CentreId::parse(&req.centre_id).ok_or_else(|| bad("centre_id is not a centre id"))?;
    let centres = db::centres::list(&state.db).await?;
    let Some(centre_row) = centres.into_iter().find(|c| c.centre_id == centre) else {
        state
            .audit(&ctx, deny(format!("unknown centre {centre}")))
            .await?;
        return Err(bad("unknown centre_id"));
    };
    if centre_row.disabled_at.is_some() {
        state
            .audit(&ctx, deny(format!("centre {centre} is disabled")))
            .await?;
        return Err(bad("the centre is disabled"));
    }
    // Grant scope: the listed files, or every file complete at this moment.
    let available: Vec<FileId> = db::files::list_for_case(&state.db, &case_id)
        .await?
        .into_iter()
        .filter(|f| f.state == "complete" || f.state == "flagged")
        .map(|f| f.file_id)
        .collect();
    let files: Vec<FileId> = match &req.file_ids {
        None => available.clone(),
        Some(ids) => {
            let mut out = Vec::new();
            for raw in ids {
                let id = FileId::parse(raw)
                    .filter(|id| available.contains(id))
                    .ok_or_else(|| bad(format!("{raw:?} is not a complete file of this case")))?;
                if !out.contains(&id) {
                    out.push(id);
                }
            }
            out
        }
    };
    if files.is_empty() {
        return Err(bad("the grant would hold no files (none complete yet?)"));
    }
    let now = state.timestamp();
    let grant = GrantRow {
        grant_id: GrantId::generate(),
        case_id: case_id.clone(),
        centre_id: centre.clone(),
        created_at: now,
        expires_at: now.plus_secs(req.expires_in_secs),
        max_downloads: req.max_downloads,
        revoked_at: None,
    };
    let token = SecretToken::generate(TokenKind::Grant);
    let mut tx = state.begin().await?;
    db::grants::insert(&mut tx, &grant, &token.hash(), &files).await?;
    let entry = NewEntry::new("grant.create", Outcome::Allow)
        .case(&case_id)
        .centre(&centre)
        .grant(&grant.grant_id)
        .reason(format!(
            "{} files, expires {}, {} downloads per file",
            files.len(),
            grant.expires_at,
            grant.max_downloads
        ));
    state.commit_audited(tx, &ctx, entry).await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            grant_id: grant.grant_id,
            grant_token: token.expose().to_owned(),
            expires_at: grant.expires_at,
        }),
    )
        .into_response())
}

/// `active`, `expired`, `exhausted` or `revoked`.
pub fn grant_state(
    grant: &GrantRow,
    files: &[db::grants::GrantFile],
    now: Timestamp,
) -> &'static str {
    if grant.revoked_at.is_some() {
        "revoked"
    } else if grant.expires_at <= now {
        "expired"
    } else if !files.is_empty() && files.iter().all(|f| f.downloads >= grant.max_downloads) {
        "exhausted"
    } else {
        "active"
    }
}

pub async fn list(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    Path(case_id): Path<String>,
) -> Result<Response, ApiError> {
    let case_id = parse_case_id(&state, &ctx, "grant.list", &case_id).await?;
    let now = state.timestamp();
    let mut out = Vec::new();
    for g in db::grants::list_for_case(&state.db, &case_id).await? {
        let files = db::grants::files(&state.db, &g.grant_id).await?;
        out.push(serde_json::json!({
            "grant_id": g.grant_id,
            "centre_id": g.centre_id,
            "created_at": g.created_at,
            "expires_at": g.expires_at,
            "max_downloads": g.max_downloads,
            "revoked_at": g.revoked_at,
            "state": grant_state(&g, &files, now),
            "files": files.iter().map(|f| serde_json::json!({
                "file_id": f.file_id, "downloads": f.downloads, "bytes_served": f.bytes_served,
            })).collect::<Vec<_>>(),
        }));
    }
    state
        .audit(
            &ctx,
            NewEntry::new("grant.list", Outcome::Allow).case(&case_id),
        )
        .await?;
    Ok(Json(serde_json::json!({ "case_id": case_id, "grants": out })).into_response())
}

pub async fn revoke(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    Path(grant_id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(grant_id) = GrantId::parse(&grant_id) else {
        state
            .audit(
                &ctx,
                NewEntry::new("grant.revoke", Outcome::Deny).reason("malformed grant id"),
            )
            .await?;
        return Err(ApiError::NotFound);
    };
    let Some(grant) = db::grants::get(&state.db, &grant_id).await? else {
        state
            .audit(
                &ctx,
                NewEntry::new("grant.revoke", Outcome::Deny)
                    .grant(&grant_id)
                    .reason("no such grant"),
            )
            .await?;
        return Err(ApiError::NotFound);
    };
    let mut tx = state.begin().await?;
    let was_active = db::grants::revoke(
        &mut tx,
        &grant_id,
        state.timestamp(),
        "revoked by a coordinator",
    )
    .await?;
    let entry = NewEntry::new("grant.revoke", Outcome::Allow)
        .case(&grant.case_id)
        .centre(&grant.centre_id)
        .grant(&grant_id)
        .reason(if was_active {
            "revoked"
        } else {
            "already revoked"
        });
    state.commit_audited(tx, &ctx, entry).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
