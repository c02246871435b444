//! The HTTP API: one router, one route table ([`access`]) saying which role
//! each route needs, an authorisation layer, thin handlers, and one error
//! type mapped to problem+json.

pub mod access;
pub mod audit_export;
pub mod auth;
pub mod cases;
pub mod centre_admin;
pub mod centre_auth;
pub mod centres;
pub mod conn;
pub mod download_stream;
pub mod downloads;
pub mod error;
pub mod grants;
pub mod health;
pub mod json;
pub mod limiter;
pub mod patient;
pub mod range;
pub mod state;
pub mod tus;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, head, options, post, put};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

use conn::RequestId;
use error::ApiError;
use state::AppState;

/// The main listener's router.
pub fn router(state: AppState) -> Router {
    let limits = &state.config.limits;
    let auth = || middleware::from_fn_with_state(state.clone(), auth::authorize);
    let api = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/v1/cases", post(cases::create).get(cases::list))
        .route(
            "/api/v1/cases/{case_id}",
            get(cases::manifest).delete(cases::delete),
        )
        .route(
            "/api/v1/cases/{case_id}/upload-token",
            post(cases::reissue_upload_token),
        )
        .route(
            "/api/v1/centres",
            post(centres::register).get(centres::list),
        )
        .route("/api/v1/patient/case", get(patient::case_manifest))
        .route("/api/v1/patient/access", get(patient::access))
        .route(
            "/api/v1/centres/{centre_id}",
            put(centre_admin::update).delete(centre_admin::disable),
        )
        .route(
            "/api/v1/cases/{case_id}/grants",
            post(grants::create).get(grants::list),
        )
        .route("/api/v1/grants/{grant_id}", delete(grants::revoke))
        .route("/api/v1/audit", get(audit_export::export))
        .route_layer(auth())
        .layer(DefaultBodyLimit::max(limits.json_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(limits.request_timeout_secs),
        ));
    // Uploads stream bodies of any size for as long as they flow: no body
    // limit, no whole-request deadline (a stalled body is cut by the
    // upload's idle timeout instead).
    let tus = Router::new()
        .route("/tus", options(tus::options).post(tus::create))
        .route("/tus/", options(tus::options).post(tus::create))
        .route(
            "/tus/{upload_id}",
            head(tus::head).patch(tus::patch).delete(tus::terminate),
        )
        .route_layer(auth())
        .layer(middleware::from_fn(tus::tus_resumable_header));
    let api = api.merge(tus);
    api.fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(request_id))
        .layer(CatchPanicLayer::custom(panicked))
        .with_state(state)
}

/// The centre listener's router: the grant routes only.
pub fn centre_router(state: AppState) -> Router {
    let limits = &state.config.limits;
    Router::new()
        .route("/api/v1/grant", get(downloads::grant_info))
        .route("/api/v1/grant/files/{file_id}", get(downloads::plaintext))
        .route(
            "/api/v1/grant/files/{file_id}/sealed",
            get(downloads::sealed),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .layer(DefaultBodyLimit::max(limits.json_body_bytes))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(request_id))
        .layer(CatchPanicLayer::custom(panicked))
        .with_state(state)
}

/// A handler that panics answers its own request with a 500; the
/// connection and every other request on it go on. The panic message is
/// logged, never sent.
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::Internal.into_response()
}

async fn fallback() -> Response {
    ApiError::NotFound.into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.into_response()
}

/// Gives every request an id, a tracing span carrying it (method and path
/// only: never headers, query strings or bodies, which may hold secrets),
/// and an `x-request-id` response header.
async fn request_id(mut req: Request, next: Next) -> Response {
    let id = RequestId::generate();
    req.extensions_mut().insert(id.clone());
    let span = tracing::info_span!("request", request_id = %id.0, method = %req.method(), path = %req.uri().path());
    async move {
        let started = std::time::Instant::now();
        let mut response = next.run(req).await;
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "response"
        );
        if let Ok(value) = HeaderValue::from_str(&id.0) {
            response.headers_mut().insert("x-request-id", value);
        }
        response
    }
    .instrument(span)
    .await
}
