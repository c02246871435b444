//! Centre routes: the grant's file list, plaintext downloads (decrypted on
//! the fly) and sealed downloads (the stored object plus its file key
//! sealed to the centre). Single ranges; a request from byte 0 counts as a
//! download, a continuation does not; bytes served per file stay under
//! `max_downloads × size`. Running downloads re-check the grant every two
//! seconds and stop when it is revoked or expires.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth::Principal;
use super::download_stream::{Budget, Kind, LEASE_TTL_SECS, stream_body};
use super::error::ApiError;
use super::range;
use super::state::AppState;
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::crypto::format::{ChunkCipher, HEADER_LEN, Layout, ObjectHeader};
use crate::crypto::{CaseKey, FileKey, Keyring, sealed_key};
use crate::db::{self, cases::CaseRow, centres::CentreRow, grants::GrantRow};
use crate::ids::FileId;
use crate::manifest::{FILE_META, FileMeta};

fn centre(principal: Principal) -> Result<(GrantRow, CentreRow), ApiError> {
    match principal {
        Principal::Centre { grant, centre } => Ok((*grant, *centre)),
        _ => Err(ApiError::Forbidden),
    }
}

/// A file of the grant, with everything needed to serve it.
struct Granted {
    case: CaseRow,
    file_id: FileId,
    size: u64,
    meta: FileMeta,
    /// The file key and the sealed object's digest (`only` requests).
    keys: Option<(FileKey, Option<String>)>,
    downloads: i64,
}

async fn case_and_key(state: &AppState, grant: &GrantRow) -> Result<(CaseRow, CaseKey), ApiError> {
    let case = db::cases::get(&state.db, &grant.case_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let key = Keyring::new(state.kek.clone())
        .case_key(&case.case_id, &case.wrapped_key)
        .map_err(|_| ApiError::Internal)?;
    Ok((case, key))
}

async fn granted_files(
    state: &AppState,
    grant: &GrantRow,
    only: Option<&FileId>,
) -> Result<Vec<Granted>, ApiError> {
    let (case, case_key) = case_and_key(state, grant).await?;
    let uses = db::grants::files(&state.db, &grant.grant_id).await?;
    let rows = db::files::list_for_case(&state.db, &case.case_id).await?;
    let mut out = Vec::new();
    for u in uses.iter().filter(|u| only.is_none_or(|f| *f == u.file_id)) {
        let Some(row) = rows.iter().find(|r| r.file_id == u.file_id) else {
            continue;
        };
        let meta: FileMeta = case_key
            .open_field(
                &case.case_id,
                FILE_META,
                row.file_id.as_str(),
                &row.meta_sealed,
            )
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(ApiError::Internal)?;
        // The key and the object digest only for a download of one file:
        // the grant's file list needs neither, and a DICOM study has
        // thousands of files.
        let keys = match only {
            Some(_) => {
                let (key_id, wrapped) =
                    db::files::wrapped_key(&state.db, &case.case_id, &row.file_id)
                        .await?
                        .ok_or(ApiError::Internal)?;
                let file_key = Keyring::new(state.kek.clone())
                    .file_key(&case_key, &case.case_id, &row.file_id, key_id, &wrapped)
                    .map_err(|_| ApiError::Internal)?;
                let sha = db::files::object_sha256(&state.db, &row.file_id).await?;
                Some((file_key, sha))
            }
            None => None,
        };
        out.push(Granted {
            case: case.clone(),
            file_id: row.file_id.clone(),
            size: row.size.max(0) as u64,
            meta,
            keys,
            downloads: u.downloads,
        });
    }
    Ok(out)
}

pub async fn grant_info(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Response, ApiError> {
    let (grant, centre) = centre(principal)?;
    let layout = Layout::new(crate::crypto::format::DEFAULT_CHUNK_SIZE);
    let files: Vec<serde_json::Value> = granted_files(&state, &grant, None)
        .await?
        .into_iter()
        .map(|g| {
            serde_json::json!({
                "file_id": g.file_id,
                "filename": g.meta.filename,
                "category": g.meta.category,
                "size": g.size,
                "sha256": g.meta.sha256,
                "sealed_size": layout.object_len(g.size),
                "dicom": g.meta.dicom,
                "downloads_left": (grant.max_downloads - g.downloads).max(0),
            })
        })
        .collect();
    state
        .audit(
            &ctx,
            NewEntry::new("grant.read", Outcome::Allow)
                .case(&grant.case_id)
                .centre(&centre.centre_id)
                .grant(&grant.grant_id),
        )
        .await?;
    Ok(Json(serde_json::json!({
        "grant_id": grant.grant_id,
        "case_id": grant.case_id,
        "expires_at": grant.expires_at,
        "files": files,
    }))
    .into_response())
}

/// RFC 6266 `Content-Disposition` with an ASCII fallback and the UTF-8 name.
fn content_disposition(filename: &str) -> HeaderValue {
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

async fn download(
    state: AppState,
    ctx: RequestContext,
    principal: Principal,
    file_id: String,
    headers: HeaderMap,
    kind: Kind,
) -> Result<Response, ApiError> {
    let (grant, centre) = centre(principal)?;
    let action = match kind {
        Kind::Plaintext => "download.plaintext",
        Kind::Sealed => "download.sealed",
    };
    let deny = |reason: String| {
        NewEntry::new(action, Outcome::Deny)
            .case(&grant.case_id)
            .centre(&centre.centre_id)
            .grant(&grant.grant_id)
            .reason(reason)
    };
    let Some(file_id) = FileId::parse(&file_id) else {
        state.audit(&ctx, deny("malformed file id".into())).await?;
        return Err(ApiError::NotFound);
    };
    let Some(file) = granted_files(&state, &grant, Some(&file_id)).await?.pop() else {
        state
            .audit(&ctx, deny(format!("file {file_id} is not in the grant")))
            .await?;
        return Err(ApiError::NotFound);
    };
    let layout = Layout::new(crate::crypto::format::DEFAULT_CHUNK_SIZE);
    let total = match kind {
        Kind::Plaintext => file.size,
        Kind::Sealed => layout.object_len(file.size),
    };
    let requested = match range::parse(&headers, total) {
        Ok(r) => r,
        Err(range::Unsatisfiable) => {
            state
                .audit(
                    &ctx,
                    deny(format!("range not satisfiable for {file_id}")).file(&file_id),
                )
                .await?;
            return Err(ApiError::RangeNotSatisfiable(total));
        }
    };
    let span = requested.clone().unwrap_or(0..total);
    let starts = span.start == 0;
    // The store must answer before a use is counted: a download asked for
    // while it is away gets 503 and costs nothing, instead of a 200 cut at
    // 0 bytes that used up one of the grant's downloads.
    let key = crate::store::object_key(&grant.case_id, &file_id);
    if let Err(e) = state.store.len(&key).await {
        tracing::warn!(error = %e, "object store unavailable for a download");
        state
            .audit(
                &ctx,
                deny(format!("object store unavailable for {file_id}")).file(&file_id),
            )
            .await?;
        return Err(ApiError::StorageUnavailable);
    }
    // Lease the bytes before sending anything; they are charged to the
    // file's budget as they are actually sent, so an interrupted download
    // can be continued with a Range request.
    let budget = Budget {
        kind,
        size: file.size,
        total,
    };
    let now = state.now().unix_timestamp();
    let mut tx = state.begin().await?;
    let Some(lease) = db::grants::reserve(
        &mut tx,
        &grant.grant_id,
        &file_id,
        starts,
        budget.charge(span.end - span.start),
        grant.max_downloads,
        file.size as i64,
        now,
        now - LEASE_TTL_SECS,
    )
    .await?
    else {
        drop(tx);
        state
            .audit(
                &ctx,
                deny(format!("downloads of {file_id} used up")).file(&file_id),
            )
            .await?;
        return Err(ApiError::GrantExhausted);
    };
    db::grants::record_download(
        &mut tx,
        &db::grants::DownloadEvent {
            grant: &grant,
            file_id: &file_id,
            at: state.timestamp(),
            kind: kind.as_str(),
            range_start: span.start as i64,
            bytes: (span.end - span.start) as i64,
        },
    )
    .await?;
    let start_entry = NewEntry::new(action, Outcome::Allow)
        .case(&grant.case_id)
        .centre(&centre.centre_id)
        .grant(&grant.grant_id)
        .file(&file_id)
        .reason(format!(
            "start: bytes {}-{} of {total}{}",
            span.start,
            span.end.saturating_sub(1),
            if starts { "" } else { " (continuation)" }
        ));
    state.commit_audited(tx, &ctx, start_entry).await?;

    let Some((file_key, object_sha256)) = &file.keys else {
        return Err(ApiError::Internal);
    };
    let header = ObjectHeader::new(*file_key.id());
    let mut out = HeaderMap::new();
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    out.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(span.end - span.start),
    );
    if requested.is_some()
        && let Ok(v) =
            HeaderValue::from_str(&format!("bytes {}-{}/{total}", span.start, span.end - 1))
    {
        out.insert(header::CONTENT_RANGE, v);
    }
    match kind {
        Kind::Plaintext => {
            if let Some(sha) = &file.meta.sha256
                && let Ok(v) = HeaderValue::from_str(&format!("\"{sha}\""))
            {
                out.insert(header::ETAG, v);
            }
            out.insert(
                header::CONTENT_DISPOSITION,
                content_disposition(&file.meta.filename),
            );
        }
        Kind::Sealed => {
            if let Some(sha) = object_sha256
                && let Ok(v) = HeaderValue::from_str(&format!("\"{sha}\""))
            {
                out.insert(header::ETAG, v);
            }
            let info = sealed_key::info(
                grant.grant_id.as_str(),
                grant.case_id.as_str(),
                file_id.as_str(),
            );
            let sealed = sealed_key::seal(
                &centre_key(&centre)?,
                &info,
                &header.encode(),
                file_key.secret(),
            )
            .map_err(|_| ApiError::Internal)?;
            if let Ok(v) = HeaderValue::from_str(&sealed_key::encode(&sealed)) {
                out.insert("casegate-sealed-key", v);
            }
        }
    }
    let status = if requested.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let cipher = ChunkCipher::new(
        file_key,
        header,
        file.case.case_id.as_str(),
        file_id.as_str(),
    )
    .map_err(|_| ApiError::Internal)?;
    let body = stream_body(
        state, ctx, grant, centre, file_id, file.size, span, kind, cipher, lease, budget,
    );
    Ok((status, out, body).into_response())
}

fn centre_key(centre: &CentreRow) -> Result<[u8; 32], ApiError> {
    centre
        .x25519_public_key
        .as_slice()
        .try_into()
        .map_err(|_| ApiError::Internal)
}

pub async fn plaintext(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(file_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    download(state, ctx, principal, file_id, headers, Kind::Plaintext).await
}

pub async fn sealed(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(file_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    download(state, ctx, principal, file_id, headers, Kind::Sealed).await
}

/// `HEADER_LEN` is part of the sealed layout the centre's `fetch` relies on.
const _: () = assert!(HEADER_LEN == 32);
