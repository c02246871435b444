//! tus 1.0.0 over HTTP: header parsing and status codes only; the upload
//! logic is `crate::upload`. Extensions: creation, creation-with-upload,
//! expiration, checksum (sha1, sha256), termination.
//!
//! One implementation for every uploader ([`Uploading`]): the patient and a
//! coordinator on `/tus/` (the coordinator names the case in
//! `Upload-Metadata`), a reviewing centre on the centre listener's
//! `/api/v1/grant/tus/` (into its grant's case, unless the grant forbids
//! replies). An upload is only ever touched by the uploader that created it.

use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::Id;
use super::reply_gate;
use super::state::AppState;
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::clock::Timestamp;
use crate::ids::{GrantId, UploadId};
use crate::service::principal::{CaseRow, OperatorRole, Principal};
use crate::service::{Source, Upload as UploadRow, UploadState};
use crate::upload::checksum::{self, ExpectedChecksum};

pub const TUS_VERSION: &str = "1.0.0";
pub const EXTENSIONS: &str = "creation,creation-with-upload,expiration,checksum,termination";
const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

/// A header's value; `Err` when it is present but not visible ASCII — such
/// a header is wrong, never the same as an absent one (an unreadable
/// `Upload-Checksum` must not mean "no checksum").
fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ()> {
    headers
        .get(name)
        .map(|v| v.to_str().map_err(|_| ()))
        .transpose()
}

pub fn check_version(headers: &HeaderMap) -> Result<(), ApiError> {
    match header_str(headers, "tus-resumable") {
        Ok(Some(TUS_VERSION)) => Ok(()),
        _ => Err(ApiError::TusVersion),
    }
}

pub fn parse_u64(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    let not_a_number = || ApiError::BadRequest(format!("{name} must be a non-negative integer"));
    header_str(headers, name)
        .map_err(|()| not_a_number())?
        .map(|v| {
            // Strict: digits only (no sign, no spaces), no overflow.
            (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .then(|| v.parse::<u64>().ok())
                .flatten()
                .ok_or_else(not_a_number)
        })
        .transpose()
}

pub fn is_offset_stream(headers: &HeaderMap) -> bool {
    header_str(headers, "content-type")
        .ok()
        .flatten()
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(OFFSET_OCTET_STREAM))
}

/// Who is uploading into which case.
struct Uploading {
    case: CaseRow,
    uploader: Source,
}

impl Uploading {
    /// Where the upload's URL lives for this uploader.
    fn location(&self, upload_id: &UploadId) -> String {
        match self.uploader {
            Source::Centre { .. } => format!("/api/v1/grant/tus/{upload_id}"),
            _ => format!("/tus/{upload_id}"),
        }
    }
}

/// The uploader of a request and its case: the patient's own case; the
/// grant's case for a centre whose grant lets it reply; for a coordinator
/// the case its `Upload-Metadata` names (creation) or the one its upload is
/// in. For an existing upload, only the uploader that created it gets
/// past here (others: 404).
async fn uploading(
    state: &AppState,
    ctx: &RequestContext,
    principal: Principal,
    action: &'static str,
    target: Target<'_>,
) -> Result<Uploading, ApiError> {
    let uploads = &state.services.uploads;
    let found = match principal {
        Principal::Patient { case } => Uploading {
            case: *case,
            uploader: Source::Patient,
        },
        Principal::Centre { grant, centre } => {
            if !grant.may_reply {
                let entry = NewEntry::new(action, Outcome::Deny)
                    .case(&grant.case_id)
                    .centre(&centre.centre_id)
                    .grant(&grant.grant_id)
                    .reason("the grant does not allow the centre to reply");
                state.audit(ctx, entry).await?;
                return Err(ApiError::Forbidden);
            }
            Uploading {
                case: uploads.open_case(&grant.case_id).await?,
                uploader: Source::Centre {
                    centre_id: centre.centre_id,
                },
            }
        }
        Principal::Operator {
            role: OperatorRole::Coordinator,
            ..
        } => {
            let case = match target {
                Target::New(metadata) => uploads.coordinator_case(ctx, metadata).await?,
                Target::Existing(id) => uploads.coordinator_upload_case(ctx, action, id).await?,
            };
            return Ok(Uploading {
                case,
                uploader: Source::Coordinator,
            });
        }
        // The route table lets no other operator in; deny by default.
        Principal::Operator { .. } => return Err(ApiError::Forbidden),
    };
    if let Target::Existing(id) = target {
        uploads
            .check_owner(ctx, action, (&found.case, &found.uploader), id)
            .await?;
    }
    Ok(found)
}

/// What a tus request is about: a new upload (with its raw
/// `Upload-Metadata`) or an existing one.
#[derive(Clone, Copy)]
enum Target<'a> {
    New(Option<&'a str>),
    Existing(&'a UploadId),
}

/// A request that speaks tus 1.0.0: checked before anything else about
/// it, the upload id in its path included (412 otherwise).
pub struct TusResumable;

impl<S: Send + Sync> FromRequestParts<S> for TusResumable {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        check_version(&parts.headers).map(|()| TusResumable)
    }
}

fn set(headers: &mut HeaderMap, name: &'static str, value: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// `Upload-Expires` in HTTP-date form.
fn http_date(t: Timestamp) -> Option<String> {
    let system = std::time::UNIX_EPOCH
        + std::time::Duration::from_secs(u64::try_from(t.unix_seconds()).ok()?);
    Some(httpdate::fmt_http_date(system))
}

fn upload_headers(headers: &mut HeaderMap, upload: &UploadRow) {
    set(headers, "upload-offset", upload.offset);
    if upload.state == UploadState::Active
        && let Some(date) = http_date(upload.expires_at)
    {
        set(headers, "upload-expires", date);
    }
}

/// Adds `Tus-Resumable` to every tus response, errors included.
pub async fn tus_resumable_header(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(req).await;
    response
        .headers_mut()
        .insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    response
}

pub async fn options(State(state): State<AppState>) -> Response {
    let mut headers = HeaderMap::new();
    set(&mut headers, "tus-version", TUS_VERSION);
    set(&mut headers, "tus-extension", EXTENSIONS);
    set(
        &mut headers,
        "tus-max-size",
        state.services.config.limits.max_upload_bytes,
    );
    set(&mut headers, "tus-checksum-algorithm", checksum::ALGORITHMS);
    (StatusCode::NO_CONTENT, headers).into_response()
}

fn checksum_header(headers: &HeaderMap) -> Result<Option<ExpectedChecksum>, ApiError> {
    header_str(headers, "upload-checksum")
        .map_err(|()| ApiError::BadRequest("Upload-Checksum must be ASCII".into()))?
        .map(|h| ExpectedChecksum::parse(h).map_err(|e| ApiError::BadRequest(e.to_string())))
        .transpose()
}

/// Runs a PATCH in its own task: if the client goes away mid-request, the
/// task still sees the body end and keeps what arrived.
/// The grant a centre replies under: its PATCH bodies stop when it does
/// ([`reply_gate`]).
fn reply_grant(principal: &Principal) -> Option<GrantId> {
    match principal {
        Principal::Centre { grant, .. } => Some(grant.grant_id.clone()),
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_patch(
    state: &AppState,
    ctx: RequestContext,
    case: CaseRow,
    upload_id: UploadId,
    offset: u64,
    checksum: Option<ExpectedChecksum>,
    body: Body,
    grant: Option<GrantId>,
) -> Result<UploadRow, ApiError> {
    let uploads = state.services.uploads.clone();
    let body = reply_gate::gated(body.into_data_stream(), state.clone(), grant);
    let task = tokio::spawn(async move {
        uploads
            .patch(&ctx, &case, &upload_id, offset, checksum, body)
            .await
    });
    match task.await {
        Ok(result) => result.map_err(ApiError::from),
        Err(e) => {
            tracing::error!(error = %e, "upload task failed");
            Err(ApiError::Internal)
        }
    }
}

/// creation-with-upload: the upload exists whatever happens to its first
/// bytes; report what was stored and let the client resume.
async fn first_bytes(
    state: &AppState,
    ctx: RequestContext,
    case: &CaseRow,
    upload: UploadRow,
    checksum: Option<ExpectedChecksum>,
    body: Body,
    grant: Option<GrantId>,
) -> Result<UploadRow, ApiError> {
    let id = upload.upload_id;
    match run_patch(
        state,
        ctx,
        case.clone(),
        id.clone(),
        0,
        checksum,
        body,
        grant,
    )
    .await
    {
        Ok(u) => Ok(u),
        Err(e) => {
            tracing::info!(error = %e, "data sent with creation not stored");
            Ok(state.services.uploads.load(case, &id).await?)
        }
    }
}

pub async fn create(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    axum::Extension(principal): axum::Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_version(&headers)?;
    if headers.contains_key("upload-defer-length") {
        return Err(ApiError::BadRequest(
            "Upload-Defer-Length is not supported; send Upload-Length".into(),
        ));
    }
    let length = parse_u64(&headers, "upload-length")?
        .ok_or_else(|| ApiError::BadRequest("Upload-Length is required".into()))?;
    let metadata = header_str(&headers, "upload-metadata").map_err(|()| {
        ApiError::BadRequest("Upload-Metadata must be ASCII (values are base64)".into())
    })?;
    let with_data = headers.contains_key(header::CONTENT_TYPE);
    if with_data && !is_offset_stream(&headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let checksum = if with_data {
        checksum_header(&headers)?
    } else {
        None
    };
    let grant = reply_grant(&principal);
    let who = uploading(
        &state,
        &ctx,
        principal,
        "upload.create",
        Target::New(metadata),
    )
    .await?;
    let case = who.case.clone();
    let upload = state
        .services
        .uploads
        .create(&ctx, (&case, &who.uploader), length, metadata)
        .await?;
    let location = who.location(&upload.upload_id);
    let upload = if with_data || length == 0 {
        first_bytes(&state, ctx, &case, upload, checksum, body, grant).await?
    } else {
        upload
    };
    let mut out = HeaderMap::new();
    set(&mut out, "location", location);
    upload_headers(&mut out, &upload);
    Ok((StatusCode::CREATED, out).into_response())
}

/// How long a HEAD waits for a running PATCH on the same upload to end.
const HEAD_WAITS_FOR_PATCH: std::time::Duration = std::time::Duration::from_secs(10);

pub async fn head(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    axum::Extension(principal): axum::Extension<Principal>,
    _: TusResumable,
    Id(upload_id): Id<UploadId>,
) -> Result<Response, ApiError> {
    let target = Target::Existing(&upload_id);
    let case = uploading(&state, &ctx, principal, "upload.head", target)
        .await?
        .case;
    // A PATCH still running on this upload — typically one whose connection
    // just dropped, still syncing its last durable point (an S3 part and
    // the staging object take a while) — would move the offset after we
    // answered, and the client's next PATCH would get 409. Wait, bounded,
    // for it to finish; a PATCH that is still receiving after the bound is
    // live, and the durable offset is answered as it stands.
    let settled = state
        .services
        .uploads
        .registry
        .lock_within(upload_id.as_str(), HEAD_WAITS_FOR_PATCH)
        .await;
    let loaded = state.services.uploads.load(&case, &upload_id).await;
    drop(settled);
    let upload = match loaded {
        Ok(u) => u,
        Err(e) => {
            let entry = NewEntry::new("upload.head", Outcome::Deny)
                .case(&case.case_id)
                .reason(e.to_string());
            state.audit(&ctx, entry).await?;
            return Err(e.into());
        }
    };
    state
        .audit(
            &ctx,
            NewEntry::new("upload.head", Outcome::Allow)
                .case(&case.case_id)
                .file(&upload.file_id),
        )
        .await?;
    let mut out = HeaderMap::new();
    upload_headers(&mut out, &upload);
    set(&mut out, "upload-length", upload.length);
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(meta) = state.services.uploads.metadata_header(&case, &upload) {
        set(&mut out, "upload-metadata", meta);
    }
    Ok((StatusCode::OK, out).into_response())
}

pub async fn patch(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    axum::Extension(principal): axum::Extension<Principal>,
    _: TusResumable,
    Id(upload_id): Id<UploadId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let target = Target::Existing(&upload_id);
    let grant = reply_grant(&principal);
    let case = uploading(&state, &ctx, principal, "upload.patch", target)
        .await?
        .case;
    if !is_offset_stream(&headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let offset = parse_u64(&headers, "upload-offset")?
        .ok_or_else(|| ApiError::BadRequest("Upload-Offset is required".into()))?;
    let checksum = checksum_header(&headers)?;
    let upload = run_patch(&state, ctx, case, upload_id, offset, checksum, body, grant).await?;
    let mut out = HeaderMap::new();
    upload_headers(&mut out, &upload);
    Ok((StatusCode::NO_CONTENT, out).into_response())
}

pub async fn terminate(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    axum::Extension(principal): axum::Extension<Principal>,
    _: TusResumable,
    Id(upload_id): Id<UploadId>,
) -> Result<Response, ApiError> {
    let target = Target::Existing(&upload_id);
    let case = uploading(&state, &ctx, principal, "upload.terminate", target)
        .await?
        .case;
    state
        .services
        .uploads
        .terminate(&ctx, &case, &upload_id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
