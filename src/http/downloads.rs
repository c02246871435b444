//! Centre routes: the grant's file list, plaintext downloads (decrypted on
//! the fly) and sealed downloads (the stored object plus its file key
//! sealed to the centre), single ranges. What a grant allows, and the
//! counting of uses and bytes, is `service::downloads`; here the answer's
//! headers and its streamed body ([`super::download_stream`]).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::download_stream::stream_body;
use super::error::ApiError;
use super::extract::Id;
use super::range;
use super::state::AppState;
use crate::audit::RequestContext;
use crate::crypto::format::HEADER_LEN;
use crate::ids::FileId;
use crate::service::downloads::{self, Download, Kind};
use crate::service::principal::{CentreRow, GrantRow, Principal};
use crate::service::release;

fn centre(principal: &Principal) -> Result<(&GrantRow, &CentreRow), ApiError> {
    principal.centre_grant().ok_or(ApiError::Forbidden)
}

pub async fn grant_info(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Response, ApiError> {
    let (grant, centre) = centre(&principal)?;
    let files: Vec<serde_json::Value> =
        downloads::grant_files(&state.services, &ctx, grant, centre)
            .await?
            .into_iter()
            .map(|g| {
                serde_json::json!({
                    "file_id": g.file_id,
                    "filename": g.meta.filename,
                    "category": g.meta.category,
                    "size": g.size,
                    "sha256": g.meta.sha256,
                    "sealed_size": g.sealed_size(),
                    "sealed_etag": g.object_digest,
                    "dicom": dicom_entry(&g),
                    "downloads_left": (grant.max_downloads - g.downloads).max(0),
                })
            })
            .collect();
    let replies = release::centre_replies(&state.services, (grant, centre)).await?;
    Ok(Json(serde_json::json!({
        "grant_id": grant.grant_id,
        "case_id": grant.case_id,
        "expires_at": grant.expires_at,
        "may_reply": grant.may_reply,
        "files": files,
        "replies": replies,
    }))
    .into_response())
}

/// A file's DICOM fields in the grant's list, with its SOP instance UID
/// when indexed; `null` for other files.
fn dicom_entry(file: &downloads::GrantedFile) -> serde_json::Value {
    let mut value = serde_json::to_value(&file.meta.dicom).unwrap_or_default();
    if let (Some(map), Some(uid)) = (value.as_object_mut(), &file.sop_instance_uid) {
        map.insert("sop_instance_uid".into(), uid.clone().into());
    }
    value
}

/// RFC 6266 `Content-Disposition` with an ASCII fallback and the UTF-8 name.
pub(super) fn content_disposition(filename: &str) -> HeaderValue {
    let base = filename.rsplit(['/', '\\']).next().unwrap_or("file");
    let ascii: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' && c != '%' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = base
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// The answer's status and headers: length, range, ETag, and per kind the
/// file name (plaintext) or the sealed file key (sealed).
fn response_head(d: &Download) -> (StatusCode, HeaderMap) {
    let mut out = HeaderMap::new();
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    out.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(d.span.end - d.span.start),
    );
    let (start, end, total) = (d.span.start, d.span.end, d.total);
    if d.partial
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{total}", end - 1))
    {
        out.insert(header::CONTENT_RANGE, v);
    }
    if let Some(sha) = &d.sha256
        && let Ok(v) = HeaderValue::from_str(&format!("\"{sha}\""))
    {
        out.insert(header::ETAG, v);
    }
    match d.kind {
        Kind::Plaintext => {
            out.insert(
                header::CONTENT_DISPOSITION,
                content_disposition(&d.filename),
            );
        }
        Kind::Sealed => {
            if let Some(sealed) = &d.sealed_key
                && let Ok(v) = HeaderValue::from_str(sealed)
            {
                out.insert("casegate-sealed-key", v);
            }
        }
    }
    let status = if d.partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    (status, out)
}

async fn download(
    state: AppState,
    ctx: RequestContext,
    principal: Principal,
    file_id: FileId,
    headers: HeaderMap,
    kind: Kind,
) -> Result<Response, ApiError> {
    let grant = centre(&principal)?;
    let range = range::parse(&headers);
    let started = downloads::start(&state.services, &ctx, grant, &file_id, kind, range).await?;
    let (status, head) = response_head(&started);
    let (grant, centre) = (grant.0.clone(), grant.1.clone());
    let body = stream_body(state, ctx, grant, centre, started);
    Ok((status, head, body).into_response())
}

pub async fn plaintext(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    axum::Extension(principal): axum::Extension<Principal>,
    Id(file_id): Id<FileId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    download(state, ctx, principal, file_id, headers, Kind::Plaintext).await
}

pub async fn sealed(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    axum::Extension(principal): axum::Extension<Principal>,
    Id(file_id): Id<FileId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    download(state, ctx, principal, file_id, headers, Kind::Sealed).await
}

/// `HEADER_LEN` is part of the sealed layout the centre's `fetch` relies on.
const _: () = assert!(HEADER_LEN == 32);
