//! The patient's download of a file released to it: plaintext decrypted on
//! the fly, a single `Range` (206), `ETag` = the plaintext SHA-256,
//! `Content-Disposition` with the stored (neutralised) name. Which files a
//! patient may read is `service::release`; the read itself decrypts only
//! the chunks a window needs, one window (1 MiB) in memory at a time.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::downloads::content_disposition;
use super::error::ApiError;
use super::extract::Id;
use super::range;
use super::state::AppState;
use crate::audit::RequestContext;
use crate::crypto::format::Decryptor;
use crate::ids::FileId;
use crate::service::principal::Principal;
use crate::service::release::{self, PatientDownload};

/// Plaintext per store read: a whole number of chunks for every allowed
/// chunk size (powers of two up to 1 MiB).
const WINDOW: u64 = 1024 * 1024;

pub async fn download(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    axum::Extension(principal): axum::Extension<Principal>,
    Id(file_id): Id<FileId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let case = principal.patient_case().ok_or(ApiError::Forbidden)?;
    let range = range::parse(&headers);
    let opened = release::open_for_patient(&state.services, &ctx, case, &file_id, range).await?;
    let (status, head) = response_head(&opened);
    let key = crate::store::object_key(&case.case_id, &opened.file_id);
    Ok((status, head, body(state, key, opened)).into_response())
}

fn response_head(d: &PatientDownload) -> (StatusCode, HeaderMap) {
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
    out.insert(
        header::CONTENT_DISPOSITION,
        content_disposition(&d.filename),
    );
    if let Some(sha) = &d.sha256
        && let Ok(v) = HeaderValue::from_str(&format!("\"{sha}\""))
    {
        out.insert(header::ETAG, v);
    }
    if !d.partial {
        return (StatusCode::OK, out);
    }
    let (start, end, total) = (d.span.start, d.span.end, d.size);
    if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{total}", end - 1)) {
        out.insert(header::CONTENT_RANGE, v);
    }
    (StatusCode::PARTIAL_CONTENT, out)
}

/// The span's plaintext, window by window; a store or decryption failure
/// cuts the body (the client sees a short read and resumes with a Range).
fn body(state: AppState, key: String, d: PatientDownload) -> Body {
    let object = Arc::new(Decryptor::from_cipher(d.cipher, d.size));
    let (start, end) = (d.span.start, d.span.end);
    let stream = futures_util::stream::unfold(start, move |at| {
        let (state, key, object) = (state.clone(), key.clone(), object.clone());
        async move {
            if at >= end {
                return None;
            }
            // Windows end on multiples of WINDOW, which are chunk
            // boundaries: no chunk is read and decrypted twice.
            let next = ((at / WINDOW + 1) * WINDOW).min(end);
            let read = object
                .read_range(at..next, |r| state.services.store.get_range(&key, r))
                .await;
            match read {
                Ok(bytes) if bytes.len() as u64 == next - at => {
                    Some((Ok(Bytes::from(bytes)), next))
                }
                Ok(_) => Some((
                    Err(std::io::Error::other("stored object shorter than expected")),
                    end,
                )),
                Err(e) => {
                    tracing::error!(error = %e, "patient download cut");
                    Some((Err(std::io::Error::other("read failed")), end))
                }
            }
        }
    });
    Body::from_stream(stream)
}
