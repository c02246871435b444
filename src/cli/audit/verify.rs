//! `casegate audit verify`: checks an exported log offline (no gateway,
//! no network) with `crate::audit::verify`; one line on success, the first
//! failing entry named otherwise (exit status non-zero).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use clap::Args;

use super::super::CliError;
use crate::audit::note::NoteVerifier;
use crate::audit::verify::{Inputs, verify};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The exported log (JSONL).
    #[arg(long)]
    pub log: PathBuf,
    /// The signed checkpoint saved with it (FILE.checkpoint).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The verifier key (`casegate audit public-key`), obtained separately.
    #[arg(long)]
    pub public_key: PathBuf,
    /// An earlier checkpoint (e.g. from the external copy): the log must
    /// extend it, so truncation or a rewritten past is caught.
    #[arg(long)]
    pub previous_checkpoint: Option<PathBuf>,
    /// The export's leaf hashes, to name a modified entry (default:
    /// LOG.leaves when present).
    #[arg(long)]
    pub leaves: Option<PathBuf>,
}

fn read(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()).into())
}

fn open(path: &Path) -> Result<BufReader<File>, CliError> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(BufReader::with_capacity(1 << 20, file))
}

pub fn run(args: VerifyArgs) -> Result<(), CliError> {
    let verifier = NoteVerifier::parse(&read(&args.public_key)?)
        .map_err(|e| format!("{}: {e}", args.public_key.display()))?;
    let checkpoint = read(&args.checkpoint)?;
    let previous = args.previous_checkpoint.as_deref().map(read).transpose()?;
    let leaves_path = args.leaves.clone().or_else(|| {
        let mut name = args.log.as_os_str().to_owned();
        name.push(".leaves");
        Some(PathBuf::from(name)).filter(|p| p.exists())
    });
    let leaves = leaves_path.as_deref().map(open).transpose()?;
    let verified = verify(Inputs {
        log: open(&args.log)?,
        checkpoint: &checkpoint,
        verifier: &verifier,
        previous: previous.as_deref(),
        leaves,
    })
    .map_err(|e| format!("log NOT verified: {e}"))?;
    println!("{}", verified.summary());
    if verified.unsigned > 0 {
        eprintln!(
            "note: {} later entries in the log are not covered by this checkpoint yet",
            verified.unsigned
        );
    }
    Ok(())
}
