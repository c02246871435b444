//! `casegate admin …`: operator verbs. `token create` works on the local
//! database named by `database.url`, for an operator on the gateway's host.

use std::path::PathBuf;

use base64::Engine;
use clap::{Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::json;

use super::api_client::{ApiClient, ServerArgs};
use crate::bootstrap;
use crate::db::tokens::OperatorRole;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Operator tokens (on the gateway's host, in its local database).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Cases, over the HTTP API (coordinator token).
    Case {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: CaseCommand,
    },
    /// Reviewing centres, over the HTTP API (coordinator token).
    Centre {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: CentreAdmin,
    },
    /// Download grants, over the HTTP API (coordinator token).
    Grant {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: GrantCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaseCommand {
    /// Open a case; prints the patient's upload link (shown once).
    Create {
        #[arg(long)]
        reference: Option<String>,
    },
    List,
    /// The case manifest.
    Show {
        case_id: String,
    },
    /// A new upload link (the old one stops working).
    ReissueToken {
        case_id: String,
    },
    /// Make a file (a centre's reply, a translation) downloadable by the
    /// case's patient.
    Release {
        case_id: String,
        file_id: String,
    },
    /// Crypto-shred the case.
    Delete {
        case_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CentreAdmin {
    /// Register a centre from the files `casegate centre keygen` wrote.
    Register {
        #[arg(long)]
        name: String,
        #[arg(long)]
        country: String,
        /// The centre's client certificate (centre.pem).
        #[arg(long)]
        cert: PathBuf,
        /// The centre's X25519 public key file (x25519.pub).
        #[arg(long)]
        x25519_pub: PathBuf,
    },
    List,
    /// Replace the certificate and/or X25519 key.
    Update {
        centre_id: String,
        #[arg(long)]
        cert: Option<PathBuf>,
        #[arg(long)]
        x25519_pub: Option<PathBuf>,
    },
    /// Disable the centre; its grants are revoked.
    Disable {
        centre_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// Grant a centre a case's files (all complete files unless --file).
    Create {
        case_id: String,
        #[arg(long)]
        centre: String,
        #[arg(long = "file")]
        files: Vec<String>,
        /// Validity in seconds (at most 30 days).
        #[arg(long, default_value_t = 7 * 24 * 3600)]
        expires_in: u64,
        #[arg(long, default_value_t = 3)]
        max_downloads: u32,
        /// Do not let the centre upload its reply into the case.
        #[arg(long)]
        no_reply: bool,
    },
    List {
        case_id: String,
    },
    Revoke {
        grant_id: String,
    },
}

fn read_text(path: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn x25519_pub(path: &PathBuf) -> Result<String, String> {
    let text = read_text(path)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim())
        .map_err(|_| format!("{}: not base64url", path.display()))?;
    if raw.len() != 32 {
        return Err(format!("{}: not a 32-byte key", path.display()));
    }
    Ok(text.trim().to_owned())
}

async fn case(api: &ApiClient, command: CaseCommand) -> Result<(), String> {
    match command {
        CaseCommand::Create { reference } => {
            let body = reference
                .map(|r| json!({ "reference": r }))
                .unwrap_or(json!({}));
            api.call(Method::POST, "/api/v1/cases", Some(body)).await?;
        }
        CaseCommand::List => {
            api.call(Method::GET, "/api/v1/cases", None).await?;
        }
        CaseCommand::Show { case_id } => {
            api.call(Method::GET, &format!("/api/v1/cases/{case_id}"), None)
                .await?;
        }
        CaseCommand::ReissueToken { case_id } => {
            api.call(
                Method::POST,
                &format!("/api/v1/cases/{case_id}/upload-token"),
                None,
            )
            .await?;
        }
        CaseCommand::Release { case_id, file_id } => {
            let (Some(case), Some(file)) = (
                crate::ids::CaseId::parse(&case_id),
                crate::ids::FileId::parse(&file_id),
            ) else {
                return Err("give a case id (case_…) and a file id (file_…)".into());
            };
            let path = format!("/api/v1/cases/{case}/files/{file}/release");
            api.call(Method::POST, &path, None).await?;
            eprintln!("{file} is released: the patient can download it with their link");
        }
        CaseCommand::Delete { case_id } => {
            api.call(Method::DELETE, &format!("/api/v1/cases/{case_id}"), None)
                .await?;
            eprintln!("case {case_id} deleted: its key is destroyed");
        }
    }
    Ok(())
}

async fn centre(api: &ApiClient, command: CentreAdmin) -> Result<(), String> {
    match command {
        CentreAdmin::Register {
            name,
            country,
            cert,
            x25519_pub: key,
        } => {
            let body = json!({ "name": name, "country": country, "client_cert_pem": read_text(&cert)?, "x25519_public_key": x25519_pub(&key)? });
            api.call(Method::POST, "/api/v1/centres", Some(body))
                .await?;
        }
        CentreAdmin::List => {
            api.call(Method::GET, "/api/v1/centres", None).await?;
        }
        CentreAdmin::Update {
            centre_id,
            cert,
            x25519_pub: key,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(c) = cert {
                body.insert("client_cert_pem".into(), read_text(&c)?.into());
            }
            if let Some(k) = key {
                body.insert("x25519_public_key".into(), x25519_pub(&k)?.into());
            }
            api.call(
                Method::PUT,
                &format!("/api/v1/centres/{centre_id}"),
                Some(body.into()),
            )
            .await?;
        }
        CentreAdmin::Disable { centre_id } => {
            api.call(
                Method::DELETE,
                &format!("/api/v1/centres/{centre_id}"),
                None,
            )
            .await?;
            eprintln!("centre {centre_id} disabled; its grants are revoked");
        }
    }
    Ok(())
}

async fn grant(api: &ApiClient, command: GrantCommand) -> Result<(), String> {
    match command {
        GrantCommand::Create {
            case_id,
            centre,
            files,
            expires_in,
            max_downloads,
            no_reply,
        } => {
            let mut body = json!({
                "centre_id": centre, "expires_in_secs": expires_in,
                "max_downloads": max_downloads, "may_reply": !no_reply,
            });
            if !files.is_empty() {
                body["file_ids"] = json!(files);
            }
            api.call(
                Method::POST,
                &format!("/api/v1/cases/{case_id}/grants"),
                Some(body),
            )
            .await?;
            eprintln!("give the grant_token to the centre; it is shown only once");
        }
        GrantCommand::List { case_id } => {
            api.call(
                Method::GET,
                &format!("/api/v1/cases/{case_id}/grants"),
                None,
            )
            .await?;
        }
        GrantCommand::Revoke { grant_id } => {
            api.call(Method::DELETE, &format!("/api/v1/grants/{grant_id}"), None)
                .await?;
            eprintln!("grant {grant_id} revoked; running downloads stop within seconds");
        }
    }
    Ok(())
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

pub async fn run(command: AdminCommand) -> Result<(), super::CliError> {
    match command {
        AdminCommand::Token {
            command: TokenCommand::Create { role, config },
        } => {
            let config = super::load_config(config.as_deref())?;
            let db = bootstrap::open_db(&config).await?;
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
        AdminCommand::Case { server, command } => {
            Ok(case(&ApiClient::new(&server)?, command).await?)
        }
        AdminCommand::Centre { server, command } => {
            Ok(centre(&ApiClient::new(&server)?, command).await?)
        }
        AdminCommand::Grant { server, command } => {
            Ok(grant(&ApiClient::new(&server)?, command).await?)
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
