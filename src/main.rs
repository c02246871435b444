//! The `casegate` binary: parse the command line, run it, print any error as
//! one line and exit non-zero.
#![forbid(unsafe_code)]
#![warn(clippy::too_many_lines)]

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    malloc_tuning::apply();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("casegate: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run());
    // A blocking task stuck on hung storage (a checkpoint copy the server
    // gave up waiting for) must not keep the process alive: after a grace
    // period it is abandoned, where dropping the runtime would wait forever.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    code
}

async fn run() -> std::process::ExitCode {
    let cli = casegate::cli::Cli::parse();
    let filter = EnvFilter::try_from_env("CASEGATE_LOG")
        .unwrap_or_else(|_| EnvFilter::new(cli.command.default_log_filter()));
    // Never `std::io::stderr` directly: tracing-subscriber reports a failed
    // write with `eprintln!`, which panics on a closed stderr — in every
    // request that logs. The lossy writer drops such lines instead.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(casegate::logging::LossyStderr::start())
        .log_internal_errors(false)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match casegate::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("casegate: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc's malloc raises its mmap threshold after the first large free, and
/// from then on serves large buffers from per-thread heaps that fragment:
/// with 16 uploads at once the gateway's RSS reached ~140 MiB for ~25 MiB of
/// live buffers. A fixed threshold stops that; a fixed threshold at its
/// 128 KiB default, though, maps and unmaps every 1–2 MiB download window
/// (page faults halved download throughput), so buffers up to 4 MiB come
/// from the heaps and up to 32 MiB of free heap top is kept for reuse
/// (measured in docs/operations.md: ~85 MiB for 16 uploads, downloads
/// faster than with glibc's defaults). glibc reads these settings only from
/// the environment at start, so `serve` re-executes itself once with them
/// set, unless the operator set either (then theirs are used as they are).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod malloc_tuning {
    use std::os::unix::process::CommandExt;

    const SETTINGS: [(&str, &str); 2] = [
        ("MALLOC_MMAP_THRESHOLD_", "4194304"),
        ("MALLOC_TRIM_THRESHOLD_", "33554432"),
    ];

    pub fn apply() {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        if args.get(1).is_none_or(|a| a != "serve")
            || SETTINGS
                .iter()
                .any(|(var, _)| std::env::var_os(var).is_some())
        {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        // Returns only if the exec failed; then run untuned.
        let err = std::process::Command::new(exe)
            .args(&args[1..])
            .envs(SETTINGS)
            .exec();
        eprintln!("casegate: running with the default allocator settings ({err})");
    }
}
