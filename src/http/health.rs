//! Liveness and readiness. Readiness checks what serving needs: the
//! database, the object store and the audit log.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use super::state::AppState;
use crate::db;

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = state.db.ping().await.is_ok();
    let store = state.store.check().await.is_ok();
    let audit = db::audit::head(&state.db).await.is_ok();
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let ready = database && store && audit;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if ready { "ready" } else { "unavailable" },
            "checks": { "database": word(database), "object_store": word(store), "audit_log": word(audit) }
        })),
    )
}
