//! `casegate serve`: start both listeners, print the start-up lines and (on
//! first start only) the operator tokens, stop on SIGTERM/SIGINT.

use std::path::PathBuf;

use crate::Application;

pub async fn run(config_file: Option<PathBuf>) -> Result<(), String> {
    let config = super::load_config(config_file.as_deref())?;
    let mut app = Application::build(config)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(ca) = app.generated_ca() {
        eprintln!(
            "generated development certificates; clients trust {}",
            ca.display()
        );
    }
    // These lines are a contract (SPEC "Listeners", "Configuration"):
    // their own lines, nothing in front.
    eprintln!("listening on https://{}", app.addr());
    eprintln!("centre listener on https://{}", app.centre_addr());
    if let Some(tokens) = app.take_bootstrap_tokens() {
        eprintln!("coordinator token: {}", tokens.coordinator.expose());
        eprintln!("compliance token: {}", tokens.compliance.expose());
        eprintln!("(these tokens are shown once; store them now)");
    }
    app.run_until_stopped(shutdown_signal()).await;
    eprintln!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    eprintln!("shutting down: draining open requests");
}
