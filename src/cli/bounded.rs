//! Reading from the gateway with a bound on every body (`fetch` and
//! `upload`): a broken or hostile server must not fill the user's memory
//! or disk, nor write to their terminal. Sealed downloads are bounded by
//! the manifest's `sealed_size` (in `fetch::download`); manifests and
//! error answers by fixed limits.

use futures_util::StreamExt;

/// A grant's or a case's file list. At the default quota of 20,000 files
/// per case, with 1 KiB names and DICOM fields, it stays near 32 MiB.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// An error answer (problem+json) is a few hundred bytes.
pub const MAX_PROBLEM_BYTES: u64 = 64 << 10;

#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Announced or sent more than the limit.
    TooLarge,
    Interrupted(String),
}

/// The whole body, refused once it announces or reaches more than `limit`
/// bytes; the rest is never read.
pub async fn body_within(resp: reqwest::Response, limit: u64) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| BodyError::Interrupted(e.to_string()))?;
        if (body.len() + piece.len()) as u64 > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&piece);
    }
    Ok(body)
}

/// Text from the gateway made safe to print: control and format
/// characters (terminal escapes, bidi overrides) become `_`.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if crate::text::hidden(c) { '_' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(body: Vec<u8>) -> reqwest::Response {
        reqwest::Response::from(axum::http::Response::new(body))
    }

    // An announced Content-Length over the limit is covered end to end
    // (tests/api/fetch_hostile.rs): a response built here announces its
    // real length.
    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        assert_eq!(
            body_within(response(vec![1; 10]), 10).await,
            Ok(vec![1; 10])
        );
        assert_eq!(
            body_within(response(vec![1; 11]), 10).await,
            Err(BodyError::TooLarge)
        );
    }

    #[test]
    fn escapes_never_reach_the_terminal() {
        assert_eq!(
            printable("bad\u{1b}[2Jthing\u{202e}: see /api"),
            "bad_[2Jthing_: see /api"
        );
    }
}
