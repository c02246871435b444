//! The patient upload page (`GET /upload`) and its assets
//! (`GET /upload/assets/{name}`), built from `web/` and embedded in the
//! binary (`build.rs` writes the table), so the gateway serves them with no
//! Node or files at run time. Anonymous: the page reads the patient's token
//! from the link's fragment, which the browser never sends.
//!
//! Every answer, a 404 included, carries a strict Content-Security-Policy
//! (scripts and styles only from this origin, no inline code, no
//! third-party requests, no framing), `nosniff` and `no-referrer`. The page
//! itself is never cached (a new release must reach patients at once); the
//! assets' names carry a hash of their content, so they are cached for a
//! year.

use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

mod files {
    include!(concat!(env!("OUT_DIR"), "/upload_page_files.rs"));
}

/// The page's Content-Security-Policy.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const PAGE_CACHE: &str = "no-store";
const ASSET_CACHE: &str = "public, max-age=31536000, immutable";

/// The security headers every answer of the page and its assets carries.
fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let fixed: [(HeaderName, &'static str); 4] = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The media type of an asset, by its extension.
fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `GET /upload`: the page.
pub async fn page() -> Response {
    let response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, PAGE_CACHE),
        ],
        files::PAGE,
    )
        .into_response();
    secured(response)
}

/// `GET /upload/assets/{name}`: one of the page's content-hashed assets;
/// any other name is 404.
pub async fn asset(Path(name): Path<String>) -> Response {
    let Some((_, bytes)) = files::ASSETS.iter().find(|(n, _)| *n == name) else {
        return secured(ApiError::NotFound.into_response());
    };
    let response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type(&name)),
            (header::CACHE_CONTROL, ASSET_CACHE),
        ],
        *bytes,
    )
        .into_response();
    secured(response)
}

/// The names of the embedded assets (for tests and diagnostics).
pub fn asset_names() -> impl Iterator<Item = &'static str> {
    files::ASSETS.iter().map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_references_only_embedded_assets() {
        let html = String::from_utf8_lossy(files::PAGE);
        let referenced: Vec<&str> = html
            .split("/upload/assets/")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert!(!referenced.is_empty());
        for name in referenced {
            assert!(asset_names().any(|n| n == name), "{name} is not embedded");
        }
        assert!(!html.contains("<script>"), "no inline script");
        assert!(!html.contains("<style"), "no inline style");
        assert!(!html.contains(" style="), "no inline style attribute");
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type("main-AB12.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("style-AB12.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
