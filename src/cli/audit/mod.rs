//! `casegate audit …` for compliance staff: export the log with its signed
//! checkpoint ([`export`]), verify an export offline ([`verify`]), a case's
//! accounting of disclosures ([`disclosures`]), and print the checkpoint
//! verifier key on the gateway's host.

pub mod disclosures;
pub mod export;
mod proven;
pub mod verify;

use std::path::PathBuf;

use clap::Subcommand;

use crate::audit::note::NoteSigner;
use crate::audit::signing_key;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Export the audit log (JSONL) over the API, with the signed
    /// checkpoint (FILE.checkpoint) and the tree's leaf hashes (FILE.leaves).
    Export(export::ExportArgs),
    /// Verify an exported log offline against a checkpoint and the public key.
    Verify(verify::VerifyArgs),
    /// A case's accounting of disclosures: every download of its files by
    /// a centre, with the checkpoint it was read under.
    Disclosures(disclosures::DisclosuresArgs),
    /// Print the checkpoint verifier key (C2SP note format), read from the
    /// signing key file the config names (on the gateway's host, offline).
    PublicKey {
        #[arg(long, env = "CASEGATE_CONFIG")]
        config: Option<PathBuf>,
    },
}

pub async fn run(command: AuditCommand) -> Result<(), super::CliError> {
    match command {
        AuditCommand::Export(args) => export::run(args).await,
        AuditCommand::Verify(args) => verify::run(args),
        AuditCommand::Disclosures(args) => disclosures::run(args).await,
        AuditCommand::PublicKey { config } => {
            let config = super::load_config(config.as_deref())?;
            let path = config.audit_signing_key_file();
            if !path.exists() {
                return Err(format!(
                    "{}: no audit signing key yet (the gateway creates it on its first start)",
                    path.display()
                )
                .into());
            }
            let key = signing_key::load(&path).map_err(|e| e.to_string())?;
            let signer = NoteSigner::new(&config.audit_origin(), key).map_err(|e| e.to_string())?;
            println!("{}", signer.verifier_key());
            Ok(())
        }
    }
}
