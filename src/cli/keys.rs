//! `casegate keys …`: master key rotation on the gateway's host.

use std::path::PathBuf;

use clap::Subcommand;

use crate::rotation;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a master key version and rewrap every case key under it (object
    /// data is not touched). Safe while the gateway runs.
    Rotate {
        /// Do not add a version; finish rewrapping under the newest one
        /// (after an interrupted rotation).
        #[arg(long)]
        resume: bool,
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
        KeysCommand::Rotate { resume, config } => {
            let config = super::load_config(config.as_deref())?;
            let report = rotation::rotate(&config, resume, &actor).await?;
            println!(
                "master key version {}: {} case keys rewrapped, {} skipped (deleted or changed meanwhile)",
                report.version, report.rewrapped, report.skipped
            );
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
            for (version, cases) in rotation::status(&config).await? {
                println!("version {version}: {cases} case keys");
            }
            Ok(())
        }
    }
}
