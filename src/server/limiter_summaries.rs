//! The failure limiter's aggregate audit entries: one per limiting window
//! that refused requests, with their number; and one `alert.token_guessing`
//! per window in which the address presented at least
//! `audit.alert_token_guesses` unknown or malformed bearer tokens (capped at
//! `limits.auth_failures_per_minute`, the most a window looks at before
//! answering 429), with the count — so a flood of guesses is one alert, not
//! one per guess. Written when the window ends — looked for every few
//! seconds, so the count is recorded even if the address never returns —
//! and, at shutdown, for the windows still running.

use std::time::Duration;

use tokio::sync::watch;

use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::http::limiter::{Subject, Summary};
use crate::http::state::AppState;
use crate::service::audit::alerts;

/// How often ended windows are looked for; also how late a summary may be.
const EVERY: Duration = Duration::from_secs(5);

/// Writes summaries of ended windows until `stop` turns true.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        write(&state, state.limiter.sweep()).await;
    }
}

/// Ends every window and writes its summary (after the listeners stopped,
/// so no refusal comes after it).
pub async fn flush(state: &AppState) {
    write(state, state.limiter.drain()).await;
}

fn context(subject: Subject) -> RequestContext {
    RequestContext {
        actor: "system:limiter".into(),
        role: "system".into(),
        client_addr: match subject {
            Subject::Address(address) => Some(address.to_string()),
            Subject::Overflow => None,
        },
        ..Default::default()
    }
}

fn entry(summary: &Summary) -> NewEntry {
    let whom = match summary.subject {
        Subject::Address(_) => "this address",
        Subject::Overflow => "addresses beyond the limiter's table",
    };
    NewEntry::new("auth.rate_limited", Outcome::Deny).reason(format!(
        "{} requests from {whom} refused with 429 in a limiting window that has ended; not recorded one by one",
        summary.refused
    ))
}

/// Unknown tokens in one window that make an alert: the configured
/// threshold, but never more than a window can see.
fn guessing_threshold(state: &AppState) -> u32 {
    let config = &state.services.config;
    config
        .audit
        .alert_token_guesses
        .min(config.limits.auth_failures_per_minute)
        .max(1)
}

fn guessing_alert(summary: &Summary, threshold: u32) -> NewEntry {
    let whom = match summary.subject {
        Subject::Address(address) => format!("address {address}"),
        Subject::Overflow => "addresses beyond the limiter's table (one shared window)".into(),
    };
    NewEntry::new("alert.token_guessing", Outcome::Error).reason(format!(
        "{} requests from {whom} presented unknown or malformed bearer tokens within one 60 s limiting window (alert threshold {threshold}); {} further requests were refused with 429 without their tokens being looked at",
        summary.unknown_tokens, summary.refused
    ))
}

/// Writes one window's entries; on failure returns what is still to
/// write (the rate-limiting count, then the alert).
async fn write_one(state: &AppState, mut summary: Summary, threshold: u32) -> Result<(), Summary> {
    let ctx = context(summary.subject);
    if summary.refused > 0
        && let Err(e) = state.audit(&ctx, entry(&summary)).await
    {
        tracing::error!(error = %e, "cannot write a rate-limiting summary; will retry");
        return Err(summary);
    }
    if summary.unknown_tokens >= threshold {
        let alert = guessing_alert(&summary, threshold);
        if let Err(e) = alerts::try_raise(&state.services, "limiter", Some(&ctx), alert).await {
            tracing::error!(error = %e, "cannot write a token-guessing alert; will retry");
            // The count is written: only the alert is left.
            summary.refused = 0;
            return Err(summary);
        }
    }
    Ok(())
}

async fn write(state: &AppState, summaries: Vec<Summary>) {
    let threshold = guessing_threshold(state);
    let mut pending = summaries.into_iter();
    while let Some(summary) = pending.next() {
        if let Err(left) = write_one(state, summary, threshold).await {
            // Kept for the next round: neither count may be lost.
            state
                .limiter
                .requeue(std::iter::once(left).chain(pending).collect());
            return;
        }
    }
}
