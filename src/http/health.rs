//! Liveness and readiness routes; what readiness checks is the service
//! layer's ([`crate::service::health`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use super::state::AppState;

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let checks = state.readiness.check(&state.services).await;
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let ready = checks.ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "checks": {
            "database": word(checks.database),
            "object_store": word(checks.object_store),
            "audit_log": word(checks.audit_log),
        }
    });
    (status, Json(body))
}
