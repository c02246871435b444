//! Sending one part of a multipart upload: an S3 `UploadPart` signed with
//! AWS Signature Version 4 over the part's SHA-256, hashed once (ring) and
//! sent from the shared part buffer without a copy.
//!
//! rust-s3's own `put_multipart_chunk` computes a `Content-MD5` and hashes
//! the payload twice with a software SHA-256 for every attempt, and copies
//! the body each time: ~40 % of the gateway's CPU on an S3 upload. Here
//! rust-s3 still builds the part's URL and provides the SigV4 steps
//! (canonical request, string to sign, signing key, header); the payload
//! hash is ring's and the HMAC is ring's.
//!
//! A part is given up when it stops moving, not after a fixed time: it is
//! sent in slices, and once no slice has been taken for the bucket's
//! request timeout (or no answer came that long after the last), the
//! attempt fails as a transport error and is retried. A fixed deadline
//! would fail every part at once on a link shared by many uploads, and
//! their retries would fail the same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{
    AUTHORIZATION, CONTENT_LENGTH, ETAG, HOST, HeaderMap, HeaderName, HeaderValue,
};
use ring::{digest, hmac};
use s3::Bucket;
use s3::command::{Command, Multipart};
use s3::error::S3Error;
use s3::request::Request;
use s3::request::tokio_backend::ReqwestRequest;
use s3::signing;

use super::{CONTENT_TYPE, S3Store, local, retry_guarded};
use crate::store::{StoreError, WriteGuard};

const CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");
const AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");

/// Uploads part `number` of `upload_id` and answers its ETag. Every
/// attempt is asked of `guard` first (the upload's lease).
pub(super) async fn upload_part(
    store: S3Store,
    key: String,
    upload_id: String,
    number: u32,
    bytes: Bytes,
    guard: Option<WriteGuard>,
) -> Result<String, StoreError> {
    let payload = bytes.clone();
    // 8 MiB of SHA-256 is a few milliseconds: off the runtime's workers,
    // which carry the uploads' TLS and sealing.
    let sha256 = tokio::task::spawn_blocking(move || {
        crate::hex::encode(digest::digest(&digest::SHA256, &payload).as_ref())
    })
    .await
    .map_err(|e| StoreError::Backend(format!("upload part: hashing: {e}")))?;
    let bucket = &*store.bucket;
    retry_guarded("upload part", guard.as_ref(), || {
        send(bucket, &key, &upload_id, number, &bytes, &sha256)
    })
    .await
}

/// One attempt.
async fn send(
    bucket: &Bucket,
    key: &str,
    upload_id: &str,
    number: u32,
    bytes: &Bytes,
    sha256: &str,
) -> Result<String, S3Error> {
    // The request object only names the part (its URL, host and time);
    // its own body and headers are never built.
    let command = Command::PutObject {
        content: &[],
        multipart: Some(Multipart::new(number, upload_id)),
        custom_headers: None,
        content_type: CONTENT_TYPE,
    };
    let request = ReqwestRequest::new(bucket, key, command)
        .await
        .map_err(|e| local(format!("request: {e}")))?;
    let url = request.url().map_err(|e| local(format!("URL: {e}")))?;
    let headers = signed_headers(bucket, &request, &url, sha256)
        .await
        .map_err(|e| local(format!("signing: {e}")))?;
    let stall = bucket.request_timeout().unwrap_or(DEFAULT_TIMEOUT);
    let moved = Progress::new();
    let request = bucket
        .http_client()
        .put(url)
        .headers(headers)
        .header(CONTENT_LENGTH, bytes.len())
        .body(reqwest::Body::wrap_stream(moved.slices(bytes.clone())))
        .send();
    let response = tokio::select! {
        response = request => response?,
        () = moved.stalled(stall) => {
            return Err(S3Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("part stalled: nothing sent or answered for {} s", stall.as_secs()),
            )));
        }
    };
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(S3Error::HttpFailWithBody(status.as_u16(), body));
    }
    let etag = response
        .headers()
        .get(ETAG)
        .and_then(|etag| etag.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_default();
    // Read to its end, so the connection can carry the next part.
    let _ = response.bytes().await;
    if etag.is_empty() {
        // A part without an ETag cannot be named at completion.
        return Err(local("the store answered without an ETag"));
    }
    Ok(etag)
}

/// rust-s3's default request timeout, for a bucket that has none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Slices a part is sent in: how finely its progress is seen.
const SLICE: usize = 256 * 1024;

/// When a part's upload last moved (milliseconds since `origin`).
#[derive(Clone)]
struct Progress {
    origin: Instant,
    last: Arc<AtomicU64>,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            origin: Instant::now(),
            last: Arc::default(),
        }
    }

    fn mark(&self) {
        let now = self.origin.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    /// `bytes` as a stream of slices (shared, not copied), marking
    /// progress as each is taken.
    fn slices(
        &self,
        bytes: Bytes,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + use<> {
        let moved = self.clone();
        let count = bytes.len().div_ceil(SLICE);
        futures_util::stream::iter((0..count).map(move |i| {
            moved.mark();
            let end = ((i + 1) * SLICE).min(bytes.len());
            Ok(bytes.slice(i * SLICE..end))
        }))
    }

    /// Ends once nothing has moved for `stall`.
    async fn stalled(&self, stall: Duration) {
        self.mark();
        loop {
            let quiet = (self.origin.elapsed().as_millis() as u64)
                .saturating_sub(self.last.load(Ordering::Relaxed));
            let left = (stall.as_millis() as u64).saturating_sub(quiet);
            if left == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(left)).await;
        }
    }
}

/// The headers of a SigV4-signed PUT of a payload whose SHA-256 is
/// `sha256` (hex).
async fn signed_headers(
    bucket: &Bucket,
    request: &ReqwestRequest<'_>,
    url: &reqwest::Url,
    sha256: &str,
) -> Result<HeaderMap, S3Error> {
    let now = request.datetime();
    let amz_date = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let mut headers = HeaderMap::new();
    headers.insert(HOST, HeaderValue::from_str(&request.host_header())?);
    headers.insert(CONTENT_SHA256, HeaderValue::from_str(sha256)?);
    headers.insert(AMZ_DATE, HeaderValue::from_str(&amz_date)?);
    let region = bucket.region();
    let canonical = signing::canonical_request("PUT", url, &headers, sha256)?;
    let to_sign = signing::string_to_sign(&now, &region, &canonical)?;
    let (Some(access_key), Some(secret_key)) =
        (bucket.access_key().await?, bucket.secret_key().await?)
    else {
        return Err(local("no S3 credentials"));
    };
    let signing_key = signing::signing_key(&now, &secret_key, &region, "s3")?;
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &signing_key),
        to_sign.as_bytes(),
    );
    let authorization = signing::authorization_header(
        &access_key,
        &now,
        &region,
        &signing::signed_header_string(&headers),
        &crate::hex::encode(tag.as_ref()),
    )?;
    headers.insert(AUTHORIZATION, HeaderValue::from_str(&authorization)?);
    Ok(headers)
}
