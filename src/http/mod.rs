//! The HTTP API: one route table ([`endpoint`]) that the routers, the
//! authorisation layer and the role-matrix test read; thin handlers that
//! parse a request, call one service (`crate::service`, `crate::upload`)
//! and map its error to problem+json in one place ([`error`]); the
//! middleware (request ids, authorisation, the failure limiter, CORS), the
//! streamed download body, and the embedded patient upload page.

pub mod audit_export;
pub mod audit_proof;
pub mod auth;
pub mod cases;
pub mod centres;
pub mod conn;
pub mod cors;
pub mod dicomweb;
pub mod disclosures;
pub mod download_stream;
pub mod downloads;
pub mod endpoint;
pub mod error;
pub mod extract;
pub mod grants;
pub mod health;
pub mod json;
pub mod limiter;
pub mod patient;
pub mod patient_files;
pub mod range;
pub mod release;
pub mod reply_gate;
pub mod state;
pub mod tus;
pub mod upload_page;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

use conn::RequestId;
use endpoint::{Endpoint, Listener};
use error::ApiError;
use state::AppState;

/// The handler of each endpoint.
fn handler_of(endpoint: Endpoint) -> MethodRouter<AppState> {
    use Endpoint as E;
    let spec = endpoint.spec();
    // Every method in the table is one axum can filter on.
    let method = MethodFilter::try_from(spec.method).unwrap_or(MethodFilter::GET);
    match endpoint {
        E::Healthz => on(method, health::healthz),
        E::Readyz => on(method, health::readyz),
        E::CreateCase => on(method, cases::create),
        E::ListCases => on(method, cases::list),
        E::ReadCase => on(method, cases::manifest),
        E::DeleteCase => on(method, cases::delete),
        E::ReissueUploadToken => on(method, cases::reissue_upload_token),
        E::RegisterCentre => on(method, centres::register),
        E::ListCentres => on(method, centres::list),
        E::UpdateCentre => on(method, centres::update),
        E::DisableCentre => on(method, centres::disable),
        E::CreateGrant => on(method, grants::create),
        E::ListGrants => on(method, grants::list),
        E::RevokeGrant => on(method, grants::revoke),
        E::PatientCase => on(method, patient::case_manifest),
        E::PatientAccess => on(method, patient::access),
        E::GrantInfo => on(method, downloads::grant_info),
        E::DownloadPlaintext => on(method, downloads::plaintext),
        E::DownloadSealed => on(method, downloads::sealed),
        E::DicomwebStudies => on(method, dicomweb::search_studies),
        E::DicomwebStudySeries => on(method, dicomweb::search_series),
        E::DicomwebStudyInstances | E::DicomwebSeriesInstances => {
            on(method, dicomweb::search_instances)
        }
        E::DicomwebStudy | E::DicomwebSeries | E::DicomwebInstance => {
            on(method, dicomweb::retrieve_instances)
        }
        E::DicomwebStudyMetadata | E::DicomwebSeriesMetadata | E::DicomwebInstanceMetadata => {
            on(method, dicomweb::metadata)
        }
        E::DicomwebFrames => on(method, dicomweb::frames),
        E::AuditExport => on(method, audit_export::export),
        E::AuditCheckpoint => on(method, audit_proof::checkpoint),
        E::AuditProof => on(method, audit_proof::proof),
        E::AuditLeaves => on(method, audit_proof::leaves),
        E::AuditAlerts => on(method, audit_proof::alerts),
        E::CaseDisclosures => on(method, disclosures::report),
        E::TusOptions | E::TusOptionsSlash => on(method, tus::options),
        E::TusCreate | E::TusCreateSlash => on(method, tus::create),
        E::TusHead => on(method, tus::head),
        E::TusPatch => on(method, tus::patch),
        E::TusTerminate => on(method, tus::terminate),
        E::UploadPage => on(method, upload_page::page),
        E::UploadAsset => on(method, upload_page::asset),
        E::GrantTusCreate | E::GrantTusCreateSlash => on(method, tus::create),
        E::GrantTusHead => on(method, tus::head),
        E::GrantTusPatch => on(method, tus::patch),
        E::GrantTusTerminate => on(method, tus::terminate),
        E::ReleaseFile => on(method, release::release),
        E::PatientFile => on(method, patient_files::download),
    }
}

/// The table's endpoints that `keep` selects, routed, behind the
/// authorisation layer.
fn routes(state: &AppState, keep: impl Fn(Endpoint) -> bool) -> Router<AppState> {
    let router = Endpoint::ALL
        .into_iter()
        .filter(|e| keep(*e))
        .fold(Router::new(), |router, e| {
            router.route(e.spec().path, handler_of(e))
        });
    router.route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::authorize,
    ))
}

/// What every answer of a listener gets: unknown routes and methods as
/// problems, a request id, a panic answered 500.
fn finish(router: Router<AppState>, state: AppState) -> Router {
    router
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(request_id))
        .layer(CatchPanicLayer::custom(panicked))
        .with_state(state)
}

/// The main listener's router.
pub fn router(state: AppState) -> Router {
    let limits = &state.services.config.limits;
    let on_main = |e: Endpoint| e.spec().listener == Listener::Main;
    let api = routes(&state, |e| on_main(e) && !e.is_tus())
        .layer(DefaultBodyLimit::max(limits.json_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(limits.request_timeout_secs),
        ));
    // Uploads stream bodies of any size for as long as they flow: no body
    // limit, no whole-request deadline (a stalled body is cut by the
    // upload's idle timeout instead).
    let tus = routes(&state, |e| on_main(e) && e.is_tus())
        .layer(middleware::from_fn(tus::tus_resumable_header));
    let origins = cors::AllowedOrigins::new(&state.services.config.server.allowed_origins);
    finish(api.merge(tus), state).layer(middleware::from_fn_with_state(origins, cors::layer))
}

/// The centre listener's router: the grant routes only; replies stream
/// over tus like patients' uploads.
pub fn centre_router(state: AppState) -> Router {
    let limits = &state.services.config.limits;
    let on_centre = |e: Endpoint| e.spec().listener == Listener::Centre;
    let centre = routes(&state, |e| on_centre(e) && !e.is_tus())
        .layer(DefaultBodyLimit::max(limits.json_body_bytes));
    let tus = routes(&state, |e| on_centre(e) && e.is_tus())
        .layer(middleware::from_fn(tus::tus_resumable_header));
    let origins =
        cors::AllowedOrigins::centre(&state.services.config.server.centre_allowed_origins);
    finish(centre.merge(tus), state).layer(middleware::from_fn_with_state(origins, cors::layer))
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
    // A load balancer asks every second or two; a healthy answer is noise.
    let probe = matches!(req.uri().path(), "/healthz" | "/readyz");
    async move {
        let started = std::time::Instant::now();
        let mut response = next.run(req).await;
        let (status, elapsed_ms) = (
            response.status().as_u16(),
            started.elapsed().as_millis() as u64,
        );
        if probe && response.status().is_success() {
            tracing::debug!(status, elapsed_ms, "response");
        } else {
            tracing::info!(status, elapsed_ms, "response");
        }
        if let Ok(value) = HeaderValue::from_str(&id.0) {
            response.headers_mut().insert("x-request-id", value);
        }
        response
    }
    .instrument(span)
    .await
}
