//! `casegate admin …`: operator verbs. `token create` works on the local
//! database named by `database.url`, for an operator on the gateway's host.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use crate::bootstrap;
use crate::db::tokens::OperatorRole;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Operator tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint an operator token in the local database; printed once on stdout.
    Create {
        #[arg(long, value_enum)]
        role: RoleArg,
        #[arg(long, env = "CASEGATE_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Coordinator,
    Compliance,
}

pub async fn run(command: AdminCommand) -> Result<(), String> {
    match command {
        AdminCommand::Token {
            command: TokenCommand::Create { role, config },
        } => {
            let config = super::load_config(config.as_deref())?;
            let db = bootstrap::open_db(&config)
                .await
                .map_err(|e| e.to_string())?;
            let role = match role {
                RoleArg::Coordinator => OperatorRole::Coordinator,
                RoleArg::Compliance => OperatorRole::Compliance,
            };
            let actor = local_actor();
            let token = bootstrap::create_operator_token(&db, role, &actor)
                .await
                .map_err(|e| format!("cannot create token: {e}"))?;
            println!("{}", token.expose());
            Ok(())
        }
    }
}

/// The audit actor of a verb run on the gateway's host.
pub fn local_actor() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".into());
    format!("local-admin:{user}")
}
