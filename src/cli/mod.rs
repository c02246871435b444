//! The `casegate` command line: clap verbs mapped onto library calls.

pub mod admin;
pub mod api_client;
pub mod audit;
mod bounded;
pub mod centre;
mod error;
pub mod fetch;
pub mod keys;
pub mod reply;
pub mod serve;
pub mod upload;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use error::CliError;

#[derive(Debug, Parser)]
#[command(
    name = "casegate",
    version,
    about = "Secure document-exchange gateway for second-opinion medical cases"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (embedded defaults when no config file is given).
    Serve {
        /// A TOML config file; environment variables CASEGATE_<SECTION>__<KEY> override it.
        #[arg(long, env = "CASEGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Operator commands.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Reviewing centre: key generation.
    Centre {
        #[command(subcommand)]
        command: centre::CentreCommand,
    },
    /// Reviewing centre: download, decrypt and verify every file of a grant.
    Fetch(fetch::FetchArgs),
    /// Patient: send files and folders (a hospital CD, PDFs) into your case.
    Upload(upload::UploadArgs),
    /// Reviewing centre: return your written opinion into the grant's case.
    Reply(reply::ReplyArgs),
    /// Compliance: export the audit log, verify it offline, print the
    /// checkpoint verifier key.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Master key rotation (on the gateway's host).
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
}

impl Command {
    /// What is logged unless `CASEGATE_LOG` says otherwise. A patient's
    /// terminal gets no library chatter: the DICOM reader's warnings about
    /// odd headers (common on real CDs) mean nothing to them, and the
    /// gateway flags such files itself.
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Upload(_) | Command::Reply(_) => {
                "warn,dicom_object=error,dicom_parser=error,dicom_encoding=error,dicom_core=error"
            }
            _ => "info",
        }
    }
}

/// Runs the parsed command; the error is printed as one line by `main`.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve { config } => serve::run(config).await,
        Command::Admin { command } => admin::run(command).await,
        Command::Keys { command } => keys::run(command).await,
        Command::Audit { command } => audit::run(command).await,
        Command::Centre { command } => centre::run(command),
        Command::Fetch(args) => fetch::run(args).await,
        Command::Upload(args) => upload::run(args).await,
        Command::Reply(args) => reply::run(args).await,
    }
}

/// Loads the config: the file if given, then the process environment.
pub fn load_config(
    file: Option<&std::path::Path>,
) -> Result<crate::config::Config, crate::config::ConfigError> {
    crate::config::Config::load(file, std::env::vars())
}
