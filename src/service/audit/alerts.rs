//! Alerts: audit entries whose action starts with `alert.`, written by the
//! gateway when something needs a compliance officer's eye, and read back
//! with counts per kind (`GET /api/v1/audit/alerts`). Being entries, they
//! are in the Merkle tree like any other, so an alert cannot be removed
//! unnoticed either.
//!
//! Raised so far: `alert.checkpoint_copy` (a checkpoint could not be
//! copied to `audit.checkpoint_copy`) and `alert.history_rewritten` (the
//! tree no longer extends the last signed checkpoint).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{AuditError, record};
use crate::audit::{AuditEntry, NewEntry, Outcome, RequestContext};
use crate::db::audit;
use crate::service::Services;

/// How many recent alerts a read returns.
const RECENT: i64 = 100;

/// Recent alerts, newest first, and the number of each kind in the log.
#[derive(Debug, Clone, Serialize)]
pub struct Alerts {
    pub counts: BTreeMap<String, i64>,
    pub recent: Vec<AuditEntry>,
}

/// A compliance read of the alerts (audited).
pub async fn read(svc: &Services, ctx: &RequestContext) -> Result<Alerts, AuditError> {
    record(svc, ctx, NewEntry::new("audit.alerts.read", Outcome::Allow)).await?;
    let (recent, counts) = audit::alerts(&svc.db, RECENT).await?;
    Ok(Alerts {
        counts: counts.into_iter().collect(),
        recent,
    })
}

/// Writes an alert of `kind` (an `alert.*` action) as `system:<source>`.
/// An alert that cannot be written is logged: the failure it reports has
/// been logged already, and there is no action to refuse.
pub async fn raise(svc: &Services, source: &str, kind: &'static str, reason: String) {
    let ctx = RequestContext {
        actor: format!("system:{source}"),
        role: "system".into(),
        ..Default::default()
    };
    let entry = NewEntry::new(kind, Outcome::Error).reason(reason);
    if let Err(e) = record(svc, &ctx, entry).await {
        tracing::error!(error = %e, kind, "alert could not be written to the audit log");
    }
}
