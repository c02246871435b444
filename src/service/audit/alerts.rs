//! Alerts: audit entries whose action starts with `alert.`, written by the
//! gateway when something needs a compliance officer's eye, and read back
//! with counts per kind (`GET /api/v1/audit/alerts`). Being entries, they
//! are in the Merkle tree like any other, so an alert cannot be removed
//! unnoticed either.
//!
//! The kinds, and who raises them:
//! - `alert.checkpoint_copy`: a checkpoint could not be copied to
//!   `audit.checkpoint_copy` ([`super::checkpoints`]);
//! - `alert.history_rewritten`: the tree no longer extends the last signed
//!   checkpoint ([`super::checkpoints`]);
//! - `alert.token_guessing`: many unknown bearer tokens from one address
//!   in one limiting window (the limiter's summaries, `server`);
//! - `alert.outside_grant`, `alert.over_download`, `alert.disabled_centre`:
//!   a centre asking for more than its grant, or a disabled centre's
//!   certificate ([`super::centre_alerts`]).
//!
//! An alert is about something that has been recorded (or refused)
//! already, so it never decides a request: one that cannot be written is
//! logged, and the request's answer stays what it was. Alerts that could
//! repeat are raised once per subject ([`raise_once`]): a flood of bad
//! requests adds at most one alert per subject and window.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{AuditError, record};
use crate::audit::{AuditEntry, NewEntry, Outcome, RequestContext};
use crate::db::audit::{self, AlertKey};
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
    let entry = NewEntry::new(kind, Outcome::Error).reason(reason);
    raise_about(svc, source, None, entry).await;
}

/// The context of an alert's entry: written by `system:<source>`, with the
/// address, certificate and request id of the request it is about.
fn system_context(source: &str, about: Option<&RequestContext>) -> RequestContext {
    let about = about.cloned().unwrap_or_default();
    RequestContext {
        actor: format!("system:{source}"),
        role: "system".into(),
        ..about
    }
}

/// Writes `entry` (an `alert.*` action, outcome `error`) about the request
/// `about` (its address, certificate and request id); a failure is logged.
pub async fn raise_about(
    svc: &Services,
    source: &str,
    about: Option<&RequestContext>,
    entry: NewEntry,
) {
    let kind = entry.action;
    if let Err(e) = try_raise(svc, source, about, entry).await {
        tracing::error!(error = %e, kind, "alert could not be written to the audit log");
    }
}

/// [`raise_about`] for a caller that keeps what it could not write (the
/// limiter's summaries, retried later).
pub async fn try_raise(
    svc: &Services,
    source: &str,
    about: Option<&RequestContext>,
    entry: NewEntry,
) -> Result<(), AuditError> {
    record(svc, &system_context(source, about), entry).await
}

/// Writes `entry` unless the log already holds an alert matching `key`:
/// the check and the append are one transaction under the write lock, so
/// concurrent requests raise it once. Returns whether it was written; a
/// failure is logged.
pub async fn raise_once(
    svc: &Services,
    source: &str,
    about: Option<&RequestContext>,
    entry: NewEntry,
    key: &AlertKey,
) -> bool {
    let ctx = system_context(source, about);
    let kind = entry.action;
    match write_once(svc, &ctx, &entry, key).await {
        Ok(written) => written,
        Err(e) => {
            tracing::error!(error = %e, kind, "alert could not be written to the audit log");
            false
        }
    }
}

async fn write_once(
    svc: &Services,
    ctx: &RequestContext,
    entry: &NewEntry,
    key: &AlertKey,
) -> Result<bool, AuditError> {
    let mut tx = audit::begin(&svc.db).await?;
    if audit::alerted(&mut tx, key).await? {
        return Ok(false);
    }
    audit::commit(&svc.db, tx, ctx, svc.timestamp(), entry).await?;
    Ok(true)
}
