//! Cross-origin access (CORS) to the patient's routes — tus uploads and the
//! patient API — for the origins named in `server.allowed_origins` (an
//! upload page hosted on a hospital's own site, say), and to every route of
//! the centre listener for the origins in `server.centre_allowed_origins`
//! (a browser DICOM viewer at the reviewing centre, which sends the
//! centre's client certificate, so answers there allow credentials and
//! always name the one origin, never `*`). Closed by default: with no
//! origin configured, no CORS header is ever sent, and the gateway's own
//! page needs none (it is same-origin).
//!
//! Written out here rather than with tower-http's `CorsLayer` because that
//! layer answers every OPTIONS request itself, which would swallow tus
//! discovery (`OPTIONS /tus/`, which must reach its handler). A preflight
//! from a listed origin is answered here, before the authorisation layer:
//! it carries no token, so it is neither an authentication failure nor an
//! audited denial. A preflight from any other origin goes on to the router
//! as a plain OPTIONS request and gets no CORS header, so the browser stops.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

const ALLOW_METHODS: &str = "POST, HEAD, PATCH, DELETE, OPTIONS, GET";
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Tus-Resumable, Upload-Length, Upload-Metadata, Upload-Offset, Upload-Checksum, Upload-Defer-Length, Upload-Concat, X-HTTP-Method-Override";
const EXPOSE_HEADERS: &str = "Location, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, Upload-Offset, Upload-Length, Upload-Expires, Upload-Metadata";
/// The centre listener adds what downloads and DICOMweb send and read.
const CENTRE_ALLOW_HEADERS: &str = "Authorization, Accept, Content-Type, Range, If-None-Match, Tus-Resumable, Upload-Length, Upload-Metadata, Upload-Offset, Upload-Checksum, Upload-Defer-Length, Upload-Concat, X-HTTP-Method-Override";
const CENTRE_EXPOSE_HEADERS: &str = "Content-Length, Content-Range, Content-Disposition, ETag, Warning, Casegate-Sealed-Key, Location, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, Upload-Offset, Upload-Length, Upload-Expires, Upload-Metadata";
/// How long a browser may reuse a preflight's answer.
const MAX_AGE_SECS: &str = "600";

/// The origins allowed to call a listener's routes from a browser.
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins {
    list: Vec<String>,
    /// The centre listener: every route, with credentials.
    centre: bool,
}

impl AllowedOrigins {
    /// From `server.allowed_origins` (validated at start as
    /// `scheme://host[:port]`); compared as browsers send them: lower case,
    /// no trailing slash.
    pub fn new(origins: &[String]) -> Arc<AllowedOrigins> {
        let list = origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        Arc::new(AllowedOrigins {
            list,
            centre: false,
        })
    }

    /// From `server.centre_allowed_origins`, for the centre listener.
    pub fn centre(origins: &[String]) -> Arc<AllowedOrigins> {
        let mut allowed = Arc::unwrap_or_clone(AllowedOrigins::new(origins));
        allowed.centre = true;
        Arc::new(allowed)
    }

    fn is_closed(&self) -> bool {
        self.list.is_empty()
    }

    /// The request's `Origin`, if it is one of the allowed.
    fn allowed<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?.to_ascii_lowercase();
        self.list.contains(&text).then_some(origin)
    }

    /// The routes a browser page on another origin may call: on the centre
    /// listener what a viewer reads (DICOMweb and the grant's listing),
    /// never the sealed downloads or the reply uploads.
    fn in_scope(&self, path: &str) -> bool {
        if self.centre {
            path == "/api/v1/grant" || path.starts_with("/dicomweb/")
        } else {
            in_scope(path)
        }
    }

    fn allow_headers(&self) -> &'static str {
        if self.centre {
            CENTRE_ALLOW_HEADERS
        } else {
            ALLOW_HEADERS
        }
    }

    fn expose_headers(&self) -> &'static str {
        if self.centre {
            CENTRE_EXPOSE_HEADERS
        } else {
            EXPOSE_HEADERS
        }
    }

    /// Credentials (the client certificate) go with the centre's requests.
    fn credentials(&self, headers: &mut HeaderMap) {
        if self.centre {
            set(headers, header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true");
        }
    }
}

/// The patient's routes a browser page on another origin may call.
fn in_scope(path: &str) -> bool {
    path == "/tus" || path.starts_with("/tus/") || path.starts_with("/api/v1/patient/")
}

fn is_preflight(req: &Request) -> bool {
    req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn set(headers: &mut HeaderMap, name: header::HeaderName, value: &'static str) {
    headers.insert(name, HeaderValue::from_static(value));
}

/// The answer to a listed origin's preflight.
fn preflight(origins: &AllowedOrigins, origin: HeaderValue) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    origins.credentials(headers);
    set(headers, header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS);
    let allow = origins.allow_headers();
    set(headers, header::ACCESS_CONTROL_ALLOW_HEADERS, allow);
    set(headers, header::ACCESS_CONTROL_MAX_AGE, MAX_AGE_SECS);
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    response
}

/// The CORS middleware of a listener.
pub async fn layer(
    State(origins): State<Arc<AllowedOrigins>>,
    req: Request,
    next: Next,
) -> Response {
    if origins.is_closed() || !origins.in_scope(req.uri().path()) {
        return next.run(req).await;
    }
    let origin = origins.allowed(req.headers()).cloned();
    if let Some(origin) = origin.clone()
        && is_preflight(&req)
    {
        return preflight(&origins, origin);
    }
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    // Answers differ by Origin, so caches must keep them apart.
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        origins.credentials(headers);
        let expose = origins.expose_headers();
        set(headers, header::ACCESS_CONTROL_EXPOSE_HEADERS, expose);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_as_browsers_send_them() {
        let origins = AllowedOrigins::new(&["https://Portal.Example.org/".into()]);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://portal.example.org"),
        );
        assert!(origins.allowed(&headers).is_some());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://portal.example.org.evil.test"),
        );
        assert!(origins.allowed(&headers).is_none());
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(origins.allowed(&headers).is_none());
    }

    #[test]
    fn only_the_patients_routes_are_in_scope() {
        assert!(in_scope("/tus/"));
        assert!(in_scope("/tus/upl_1"));
        assert!(in_scope("/api/v1/patient/case"));
        assert!(!in_scope("/api/v1/cases"));
        assert!(!in_scope("/tusk"));
        assert!(!in_scope("/upload"));
    }
}
