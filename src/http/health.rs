//! Liveness and readiness. Readiness checks what serving needs: the
//! database, the object store and the audit log — each by a write, since a
//! full disk or a read-only database still answers reads.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::state::AppState;
use crate::db;

/// How long one readiness answer is reused. The route is anonymous and each
/// check commits a write, so a flood of probes must not become a flood of
/// fsyncs.
const READINESS_TTL: Duration = Duration::from_secs(1);

/// The last readiness answer and when it was computed.
#[derive(Default)]
pub struct Readiness {
    last: Mutex<Option<(Instant, bool, Value)>>,
}

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    // Held across the checks, so concurrent probes wait for one answer.
    let mut last = state.readiness.last.lock().await;
    let (ready, body) = match last.as_ref() {
        Some((at, ready, body)) if at.elapsed() < READINESS_TTL => (*ready, body.clone()),
        _ => {
            let (ready, body) = check(&state).await;
            *last = Some((Instant::now(), ready, body.clone()));
            (ready, body)
        }
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

async fn check(state: &AppState) -> (bool, Value) {
    let database = state.db.ping().await.is_ok();
    let store = state.store.check().await.is_ok();
    // The audit log is ready only if an entry could be committed now: its
    // sequence is readable and a write transaction goes through.
    let audit = db::audit::head(&state.db).await.is_ok()
        && state.db.probe_write(state.timestamp()).await.is_ok();
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let ready = database && store && audit;
    (
        ready,
        json!({
            "status": if ready { "ready" } else { "unavailable" },
            "checks": { "database": word(database), "object_store": word(store), "audit_log": word(audit) }
        }),
    )
}
