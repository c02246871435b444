//! The failure limiter's aggregate audit entries: one per limiting window
//! that refused requests, with their number. Written when the window ends —
//! looked for every few seconds, so the count is recorded even if the
//! address never returns — and, at shutdown, for the windows still running.

use std::time::Duration;

use tokio::sync::watch;

use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::http::limiter::{Subject, Summary};
use crate::http::state::AppState;

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

async fn write(state: &AppState, summaries: Vec<Summary>) {
    let mut pending = summaries.into_iter();
    while let Some(summary) = pending.next() {
        if let Err(e) = state
            .audit(&context(summary.subject), entry(&summary))
            .await
        {
            // Kept for the next round: the count must not be lost.
            tracing::error!(error = %e, "cannot write a rate-limiting summary; will retry");
            state
                .limiter
                .requeue(std::iter::once(summary).chain(pending).collect());
            return;
        }
    }
}
