//! `casegate serve`: start both listeners, print the start-up lines and (on
//! first start only) the operator tokens, stop on SIGTERM/SIGINT.

use std::path::PathBuf;

use super::CliError;
use crate::Application;

pub async fn run(config_file: Option<PathBuf>) -> Result<(), CliError> {
    let config = super::load_config(config_file.as_deref())?;
    // Handlers are installed before the start-up lines are printed, so a
    // supervisor that signals right after reading them gets a clean stop.
    let shutdown = shutdown_signal().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let mut app = Application::build(config).await?;
    if let Some(ca) = app.generated_ca() {
        say(&format!(
            "generated development certificates; clients trust {}",
            ca.display()
        ));
    }
    // These lines are a contract (SPEC "Listeners", "Configuration"):
    // their own lines, nothing in front.
    say(&format!("listening on https://{}", app.addr()));
    say(&format!("centre listener on https://{}", app.centre_addr()));
    if let Some(tokens) = app.take_bootstrap_tokens() {
        say(&format!(
            "coordinator token: {}",
            tokens.coordinator.expose()
        ));
        say(&format!("compliance token: {}", tokens.compliance.expose()));
        say("(these tokens are shown once; store them now)");
    }
    app.run_until_stopped(shutdown).await;
    say("stopped");
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        say("shutting down: draining open requests");
    })
}

/// A status line on stderr. Unlike `eprintln!`, a closed stderr (the
/// supervisor went away) never panics: not at start, not in the drain.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}
