//! What a DICOMweb client may ask for in `Accept`. Search and metadata
//! answer DICOM JSON; retrievals answer `multipart/related` with
//! `application/dicom` parts, each in the transfer syntax the instance is
//! stored in (named in the part's `Content-Type`): the gateway never
//! transcodes, so a `transfer-syntax` parameter is accepted and the stored
//! syntax served. Anything else is 406.

use axum::http::{HeaderMap, header};

use super::super::error::ApiError;

/// The media ranges of `Accept` (type and its parameters, lower case);
/// none when the header is absent.
fn ranges(headers: &HeaderMap) -> Vec<(String, Vec<(String, String)>)> {
    let Some(raw) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Vec::new();
    };
    raw.split(',')
        .map(|range| {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let params = parts
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| {
                    let v = v.trim().trim_matches('"');
                    (k.trim().to_ascii_lowercase(), v.to_ascii_lowercase())
                })
                .collect();
            (media, params)
        })
        .filter(|(media, _)| !media.is_empty())
        .collect()
}

fn refuse(offered: &str) -> ApiError {
    ApiError::NotAcceptable(format!("this resource is available as {offered}"))
}

/// Search and metadata: DICOM JSON (or plain JSON, or anything).
pub fn json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ranges = ranges(headers);
    let fits = ranges.is_empty()
        || ranges.iter().any(|(media, _)| {
            matches!(
                media.as_str(),
                "application/dicom+json" | "application/json" | "application/*" | "*/*"
            )
        });
    fits.then_some(())
        .ok_or_else(|| refuse("application/dicom+json"))
}

/// Retrieval: `multipart/related` of `application/dicom` (the default
/// when `type` is left out), or anything.
pub fn dicom_multipart(headers: &HeaderMap) -> Result<(), ApiError> {
    let ranges = ranges(headers);
    let fits = ranges.is_empty()
        || ranges.iter().any(|(media, params)| match media.as_str() {
            "*/*" | "multipart/*" => true,
            "multipart/related" => params
                .iter()
                .filter(|(k, _)| k == "type")
                .all(|(_, v)| v == "application/dicom"),
            _ => false,
        });
    fits.then_some(())
        .ok_or_else(|| refuse("multipart/related; type=\"application/dicom\""))
}

/// Frames: `multipart/related` of `application/octet-stream` (or of the
/// image type a viewer names for compressed frames: each part says the
/// stored syntax), or anything.
pub fn frames(headers: &HeaderMap) -> Result<(), ApiError> {
    let ranges = ranges(headers);
    let fits = ranges.is_empty()
        || ranges.iter().any(|(media, _)| {
            matches!(media.as_str(), "*/*" | "multipart/*" | "multipart/related")
        });
    fits.then_some(())
        .ok_or_else(|| refuse("multipart/related; type=\"application/octet-stream\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(accept: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static(accept));
        h
    }

    #[test]
    fn retrieval_accepts_dicom_parts_in_any_syntax() {
        assert!(dicom_multipart(&HeaderMap::new()).is_ok());
        assert!(dicom_multipart(&with("*/*")).is_ok());
        assert!(
            dicom_multipart(&with(
                "multipart/related; type=\"application/dicom\"; transfer-syntax=*"
            ))
            .is_ok()
        );
        assert!(dicom_multipart(&with("multipart/related; type=application/dicom")).is_ok());
        assert!(dicom_multipart(&with("application/zip")).is_err());
        assert!(dicom_multipart(&with("multipart/related; type=\"image/jpeg\"")).is_err());
    }

    #[test]
    fn search_answers_json() {
        assert!(json(&with("application/dicom+json")).is_ok());
        assert!(json(&with("application/json, text/plain")).is_ok());
        assert!(json(&with("text/html")).is_err());
    }
}
