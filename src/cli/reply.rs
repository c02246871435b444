//! `casegate reply`: a reviewing centre returns files (its written
//! opinion) into the case of its grant, over tus on the centre listener
//! with its client certificate — the same sending as `casegate upload`
//! (progress, resume from the journal in `--state-dir`, receipt of the
//! gateway's SHA-256s), filed as `second_opinion_report` unless
//! `--category other`.

use std::path::PathBuf;

use clap::Args;

use super::CliError;
use super::upload::{CentreReply, UploadArgs};
use crate::token::{SecretToken, TokenKind};

/// What a centre may file its reply under.
const CATEGORIES: [&str; 2] = ["second_opinion_report", "other"];

#[derive(Debug, Args)]
pub struct ReplyArgs {
    /// The gateway's centre listener, e.g. https://gateway.example.org:8444
    #[arg(long)]
    server: String,
    /// The grant token (cgg_…); prefer the variable.
    #[arg(long, env = "CASEGATE_GRANT", hide_env_values = true)]
    grant: String,
    /// The centre's client certificate (PEM), as registered.
    #[arg(long)]
    cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// A PEM CA to trust (else the system trust store).
    #[arg(long, env = "CASEGATE_CA")]
    ca: Option<PathBuf>,
    /// `second_opinion_report` (the default) or `other`.
    #[arg(long, default_value = "second_opinion_report")]
    category: String,
    /// Send without asking for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Files sent at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=16))]
    parallel: u16,
    /// Where the resume state and the receipt CSV are kept.
    #[arg(long, default_value = "casegate-reply")]
    state_dir: PathBuf,
    /// At most this many bytes per second.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_rate: Option<u64>,
    /// Files and folders to return.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

pub async fn run(args: ReplyArgs) -> Result<(), CliError> {
    if !CATEGORIES.contains(&args.category.as_str()) {
        return Err(CliError::Failed(format!(
            "--category {}: a reply is filed as {}",
            args.category,
            CATEGORIES.join(" or ")
        )));
    }
    if !args.server.starts_with("https://") {
        return Err(CliError::Failed(
            "--server must be the gateway's https:// centre address".into(),
        ));
    }
    let grant = match SecretToken::parse(args.grant.trim()) {
        Some((TokenKind::Grant, token)) => token,
        _ => {
            return Err(CliError::Failed(
                "--grant: not a grant token (it starts with cgg_); copy the whole token the \
                 coordinator sent"
                    .into(),
            ));
        }
    };
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| CliError::Failed(format!("{}: {e}", path.display())))
    };
    let mut identity_pem = read(&args.cert)?;
    identity_pem.push(b'\n');
    identity_pem.extend_from_slice(&read(&args.key)?);
    let upload = UploadArgs {
        link: None,
        server: None,
        token: None,
        ca: args.ca,
        category: Some(args.category),
        yes: args.yes,
        parallel: args.parallel,
        state_dir: args.state_dir,
        max_rate: args.max_rate,
        paths: args.paths,
        centre: Some(CentreReply {
            server: args.server.trim_end_matches('/').to_owned(),
            grant,
            identity_pem,
        }),
    };
    super::upload::run(upload).await
}
