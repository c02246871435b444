//! How S3 calls are retried and how their failures read: transport
//! failures, timeouts, throttling and server errors are tried again (every
//! call here is idempotent); the rest becomes a [`StoreError`] that names
//! the operation and never carries the store's answer body.

use std::time::Duration;

use s3::error::S3Error;

use crate::store::{StoreError, WriteGuard};

pub(super) fn status(e: &S3Error) -> Option<u16> {
    match e {
        S3Error::HttpFailWithBody(code, _) => Some(*code),
        _ => None,
    }
}

/// A failure found on this side of the wire (a header that cannot be
/// built, an answer that cannot be used): never worth another attempt.
/// Carried as a status below 100 so [`transient`] refuses it.
pub(super) fn local(message: impl Into<String>) -> S3Error {
    S3Error::HttpFailWithBody(0, message.into())
}

pub(super) fn backend(op: &str, e: &S3Error) -> StoreError {
    match (status(e), e) {
        (Some(404), _) => StoreError::NotFound,
        // Not an HTTP error ([`local`]): the message says what went wrong.
        (Some(0), S3Error::HttpFailWithBody(_, message)) => {
            StoreError::Backend(format!("{op}: {message}"))
        }
        (Some(code), _) => StoreError::Backend(format!("{op}: HTTP {code}")),
        (None, _) => StoreError::Backend(format!("{op}: {e}")),
    }
}

/// Transport failures (timeouts included), throttling, server errors and
/// a store that timed out reading the body are worth retrying; everything
/// here is idempotent (puts overwrite, parts are re-uploadable).
pub(super) fn transient(e: &S3Error) -> bool {
    match (status(e), e) {
        // 501: the store does not implement the call; asking again is no use.
        (Some(code), _) if code == 408 || code == 429 || (code >= 500 && code != 501) => true,
        // AWS answers a body that arrived too slowly with 400 RequestTimeout.
        (Some(400), S3Error::HttpFailWithBody(_, body)) => {
            body.contains("<Code>RequestTimeout</Code>")
        }
        (Some(_), _) => false,
        (None, _) => !matches!(e, S3Error::HttpFail),
    }
}

pub(super) async fn retry<T, F, Fut>(op: &str, call: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, S3Error>>,
{
    retry_guarded(op, None, call).await
}

/// [`retry`], asking `guard` before every attempt.
pub(super) async fn retry_guarded<T, F, Fut>(
    op: &str,
    guard: Option<&WriteGuard>,
    mut call: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, S3Error>>,
{
    let mut delay = Duration::from_millis(200);
    for attempt in 1.. {
        if guard.is_some_and(|may_write| !may_write()) {
            return Err(StoreError::Fenced);
        }
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < 4 && transient(&e) => {
                tracing::warn!(op, attempt, error = %backend(op, &e), "S3 call failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 3;
            }
            Err(e) => return Err(backend(op, &e)),
        }
    }
    unreachable!("the loop returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_retried() {
        let http = |code: u16, body: &str| S3Error::HttpFailWithBody(code, body.into());
        for (e, again) in [
            (http(500, ""), true),
            (http(503, "SlowDown"), true),
            (http(429, ""), true),
            (http(408, ""), true),
            (
                http(400, "<Error><Code>RequestTimeout</Code></Error>"),
                true,
            ),
            (http(400, "<Error><Code>BadDigest</Code></Error>"), false),
            (http(403, ""), false),
            (http(404, ""), false),
            (http(501, ""), false),
            (local("the store answered without an ETag"), false),
            (S3Error::HttpFail, false),
            (
                S3Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "stalled")),
                true,
            ),
        ] {
            assert_eq!(transient(&e), again, "{e:?}");
        }
        let said = |e: StoreError| e.to_string();
        assert!(said(backend("upload part", &local("no ETag"))).contains("no ETag"));
        assert!(said(backend("get", &http(301, "<Key>cases/c1/f1</Key>"))).contains("HTTP 301"));
        assert!(!said(backend("get", &http(301, "<Key>cases/c1/f1</Key>"))).contains("cases/"));
        assert!(matches!(
            backend("get", &http(404, "")),
            StoreError::NotFound
        ));
    }
}
