//! `casegate keys …`: master key rotation on the gateway's host.

use std::path::PathBuf;

use clap::Subcommand;

use crate::rotation::{self, RotateStep};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a master key version and rewrap every case key under it (object
    /// data is not touched). Safe while the gateway runs. With several
    /// gateways: --stage, copy the key file to each, then --activate.
    Rotate {
        /// Do not add a version; finish rewrapping under the active one
        /// (after an interrupted rotation).
        #[arg(long, conflicts_with_all = ["stage", "activate"])]
        resume: bool,
        /// Add a version that gateways load but wrap nothing under yet.
        #[arg(long, conflicts_with = "activate")]
        stage: bool,
        /// Make the staged version the one new case keys use, and rewrap
        /// every case key under it.
        #[arg(long)]
        activate: bool,
        #[arg(long, env = "CASEGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Remove an old master key version once no case key uses it.
    Retire {
        #[arg(long)]
        version: u32,
        #[arg(long, env = "CASEGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// List master key versions and how many case keys each wraps.
    Status {
        #[arg(long, env = "CASEGATE_CONFIG")]
        config: Option<PathBuf>,
    },
}

pub async fn run(command: KeysCommand) -> Result<(), super::CliError> {
    let actor = super::admin::local_actor();
    match command {
        KeysCommand::Rotate {
            resume,
            stage,
            activate,
            config,
        } => {
            let config = super::load_config(config.as_deref())?;
            let step = match (resume, stage, activate) {
                (true, _, _) => RotateStep::Resume,
                (_, true, _) => RotateStep::Stage,
                (_, _, true) => RotateStep::Activate,
                _ => RotateStep::Whole,
            };
            let report = rotation::rotate(&config, step, &actor).await?;
            if step == RotateStep::Stage {
                println!(
                    "master key version {} staged: copy the key file to every gateway, then run `casegate keys rotate --activate`",
                    report.version
                );
            } else {
                println!(
                    "master key version {} active: {} case keys rewrapped, {} skipped (deleted or changed meanwhile)",
                    report.version, report.rewrapped, report.skipped
                );
            }
            Ok(())
        }
        KeysCommand::Retire { version, config } => {
            let config = super::load_config(config.as_deref())?;
            rotation::retire(&config, version, &actor).await?;
            println!("master key version {version} retired");
            Ok(())
        }
        KeysCommand::Status { config } => {
            let config = super::load_config(config.as_deref())?;
            let status = rotation::status(&config).await?;
            for (version, cases) in status.versions {
                let mark = match version.cmp(&status.active) {
                    std::cmp::Ordering::Equal => " (active)",
                    std::cmp::Ordering::Greater => " (staged)",
                    std::cmp::Ordering::Less => "",
                };
                println!("version {version}: {cases} case keys{mark}");
            }
            Ok(())
        }
    }
}
