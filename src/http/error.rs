//! The API's one error type and its one mapping to HTTP: RFC 9457
//! `application/problem+json` with a stable `code`. Strangers get a short,
//! vague `detail`; the precise reason goes to the audit log and tracing.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::service::audit::AuditError;
use crate::service::cases::CaseError;
use crate::service::centres::CentreError;
use crate::service::grants::GrantError;
use crate::service::principal::PrincipalError;
use crate::service::release::ReleaseError;
use crate::upload::UploadError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("authentication required")]
    Unauthenticated,
    #[error("not allowed for this role")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    NotAcceptable(String),
    #[error("too many failed attempts; try again later")]
    RateLimited,
    #[error("upload period has ended")]
    UploadExpired,
    #[error("request timed out")]
    Timeout,
    #[error("the audit log cannot be written")]
    AuditUnavailable,
    #[error("Tus-Resumable must be 1.0.0")]
    TusVersion,
    #[error("a client certificate is required on this listener")]
    ClientCertificateRequired,
    #[error("the client certificate is not the one registered for this grant's centre")]
    CertificateMismatch,
    #[error("the grant has expired")]
    GrantExpired,
    #[error("the grant was revoked")]
    GrantRevoked,
    #[error("the grant's downloads of this file are used up")]
    GrantExhausted,
    #[error("range not satisfiable")]
    RangeNotSatisfiable(u64),
    #[error("{0}")]
    OffsetMismatch(String),
    #[error("the upload has expired or was terminated")]
    UploadGone,
    #[error("another request is writing this upload")]
    UploadLocked,
    #[error("{0}")]
    UploadTooLarge(String),
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("too many uploads are running for this case; try again shortly")]
    TooManyUploads,
    #[error("checksum mismatch; the bytes of this request were discarded")]
    ChecksumMismatch,
    #[error("storage is unavailable")]
    StorageUnavailable,
    #[error("internal error")]
    Internal,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "not_acceptable"),
            ApiError::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::UploadExpired => (StatusCode::FORBIDDEN, "upload_expired"),
            ApiError::Timeout => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            ApiError::AuditUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
            ApiError::TusVersion => (StatusCode::PRECONDITION_FAILED, "tus_version_unsupported"),
            ApiError::ClientCertificateRequired => {
                (StatusCode::UNAUTHORIZED, "client_certificate_required")
            }
            ApiError::CertificateMismatch => (StatusCode::FORBIDDEN, "certificate_mismatch"),
            ApiError::GrantExpired => (StatusCode::FORBIDDEN, "grant_expired"),
            ApiError::GrantRevoked => (StatusCode::FORBIDDEN, "grant_revoked"),
            ApiError::GrantExhausted => (StatusCode::FORBIDDEN, "grant_exhausted"),
            ApiError::RangeNotSatisfiable(_) => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
            ApiError::OffsetMismatch(_) => (StatusCode::CONFLICT, "offset_mismatch"),
            ApiError::UploadGone => (StatusCode::GONE, "upload_gone"),
            ApiError::UploadLocked => (StatusCode::LOCKED, "upload_locked"),
            ApiError::UploadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "upload_too_large"),
            ApiError::QuotaExceeded(_) => (StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded"),
            ApiError::TooManyUploads => (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"),
            ApiError::ChecksumMismatch => (checksum_mismatch(), "checksum_mismatch"),
            ApiError::StorageUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
            }
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }
}

/// Failures of ours, not the client's: logged with detail, answered
/// vaguely.
fn storage(e: &dyn std::error::Error) -> ApiError {
    tracing::error!(error = %e, "database error");
    ApiError::StorageUnavailable
}

fn internal(e: &dyn std::error::Error) -> ApiError {
    tracing::error!(error = %e, "internal error");
    ApiError::Internal
}

impl From<AuditError> for ApiError {
    fn from(e: AuditError) -> Self {
        match e {
            // Logged where it happened, with the action.
            AuditError::Unavailable(_) => ApiError::AuditUnavailable,
            AuditError::Db(e) => storage(&e),
            AuditError::BadQuery(m) => ApiError::BadRequest(m),
            // Logged and alerted where it was found.
            AuditError::HistoryRewritten(_) => ApiError::AuditUnavailable,
        }
    }
}

impl From<PrincipalError> for ApiError {
    fn from(e: PrincipalError) -> Self {
        storage(&e)
    }
}

impl From<CaseError> for ApiError {
    fn from(e: CaseError) -> Self {
        match e {
            CaseError::NotFound => ApiError::NotFound,
            CaseError::BadRequest(m) => ApiError::BadRequest(m),
            CaseError::Key(_) | CaseError::Manifest(_) => internal(&e),
            CaseError::KeyVersionMissing(_) => {
                tracing::error!(error = %e, "cannot create a case");
                ApiError::StorageUnavailable
            }
            CaseError::Audit(e) => e.into(),
            CaseError::Db(e) => storage(&e),
        }
    }
}

impl From<ReleaseError> for ApiError {
    fn from(e: ReleaseError) -> Self {
        match e {
            ReleaseError::NotFound => ApiError::NotFound,
            ReleaseError::Conflict(m) => ApiError::Conflict(m),
            ReleaseError::RangeNotSatisfiable(len) => ApiError::RangeNotSatisfiable(len),
            ReleaseError::StorageUnavailable => ApiError::StorageUnavailable,
            ReleaseError::Internal(_) => internal(&e),
            ReleaseError::Audit(e) => e.into(),
            ReleaseError::Db(e) => storage(&e),
        }
    }
}

impl From<CentreError> for ApiError {
    fn from(e: CentreError) -> Self {
        match e {
            CentreError::NotFound => ApiError::NotFound,
            CentreError::BadRequest(m) => ApiError::BadRequest(m),
            CentreError::Conflict(m) => ApiError::Conflict(m),
            CentreError::Audit(e) => e.into(),
            CentreError::Db(e) => storage(&e),
        }
    }
}

impl From<GrantError> for ApiError {
    fn from(e: GrantError) -> Self {
        match e {
            GrantError::NotFound => ApiError::NotFound,
            GrantError::BadRequest(m) => ApiError::BadRequest(m),
            GrantError::Unauthenticated => ApiError::Unauthenticated,
            GrantError::ClientCertificateRequired => ApiError::ClientCertificateRequired,
            GrantError::CertificateMismatch => ApiError::CertificateMismatch,
            GrantError::Expired => ApiError::GrantExpired,
            GrantError::Revoked => ApiError::GrantRevoked,
            GrantError::Exhausted => ApiError::GrantExhausted,
            GrantError::RangeNotSatisfiable(len) => ApiError::RangeNotSatisfiable(len),
            GrantError::StorageUnavailable => ApiError::StorageUnavailable,
            GrantError::Internal(_) => internal(&e),
            GrantError::Audit(e) => e.into(),
            GrantError::Db(e) => storage(&e),
        }
    }
}

/// tus's 460 Checksum Mismatch (not an IANA status).
fn checksum_mismatch() -> StatusCode {
    StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST)
}

/// Upload errors, mapped to the tus status codes SPEC.md fixes.
impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::NotFound => ApiError::NotFound,
            UploadError::Gone => ApiError::UploadGone,
            UploadError::Locked
            | UploadError::LeaseLost
            | UploadError::Store(crate::store::StoreError::Fenced) => ApiError::UploadLocked,
            UploadError::OffsetMismatch { .. } => ApiError::OffsetMismatch(e.to_string()),
            UploadError::BeyondLength | UploadError::OverMaxSize => {
                ApiError::UploadTooLarge(e.to_string())
            }
            UploadError::QuotaExceeded(m) => ApiError::QuotaExceeded(m),
            UploadError::TooManyRunning => ApiError::TooManyUploads,
            UploadError::ChecksumMismatch => ApiError::ChecksumMismatch,
            UploadError::BadRequest(m) => ApiError::BadRequest(m),
            UploadError::Audit => ApiError::AuditUnavailable,
            UploadError::Db(e) => {
                tracing::error!(error = %e, "upload storage failure");
                ApiError::StorageUnavailable
            }
            UploadError::Store(e) => {
                tracing::error!(error = %e, "upload storage failure");
                ApiError::StorageUnavailable
            }
            UploadError::Internal(m) => {
                tracing::error!(error = %m, "upload internal failure");
                ApiError::Internal
            }
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'a str,
    status: u16,
    code: &'static str,
    detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            code,
            detail: self.to_string(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::RangeNotSatisfiable(size) = &self
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        if status == StatusCode::PRECONDITION_FAILED {
            response
                .headers_mut()
                .insert("tus-version", HeaderValue::from_static("1.0.0"));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        }
        response
    }
}
