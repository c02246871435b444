//! `casegate audit verify`: checks an exported log offline (no gateway,
//! no network) with `crate::audit::verify`; one line on success, the first
//! failing entry named otherwise (exit status non-zero).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use clap::Args;

use super::super::CliError;
use crate::audit::note::NoteVerifier;
use crate::audit::verify::{Inputs, verify, verify_extends, verify_proven};

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
    /// extend it, so truncation or a rewritten past is caught. With
    /// `--proofs`, checked with the consistency proof the filtered export
    /// saved (`--consistency`).
    #[arg(long)]
    pub previous_checkpoint: Option<PathBuf>,
    /// Subset mode with `--previous-checkpoint`: the consistency proof
    /// between it and the checkpoint (default: LOG.consistency, saved by
    /// `audit export --previous-checkpoint`).
    #[arg(long, requires = "proofs")]
    pub consistency: Option<PathBuf>,
    /// The export's leaf hashes, to name a modified entry (default:
    /// LOG.leaves when present). Only a hint: the root decides.
    #[arg(long, conflicts_with = "proofs")]
    pub leaves: Option<PathBuf>,
    /// Subset mode, for a filtered export: each entry is checked with its
    /// own inclusion proof from this file (one per line). It proves the
    /// entries held are in the signed log, NOT that none were left out; a
    /// whole-log check never switches to it on its own.
    #[arg(long)]
    pub proofs: Option<PathBuf>,
}

/// LOG + `suffix`.
fn beside_log(log: &Path, suffix: &str) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn read(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()).into())
}

fn open(path: &Path) -> Result<BufReader<File>, CliError> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(BufReader::with_capacity(1 << 20, file))
}

/// A subset checked against an earlier checkpoint: the signed log must
/// extend it (its consistency proof), before any entry is looked at.
/// Returns the earlier checkpoint's size.
fn extends(
    args: &VerifyArgs,
    checkpoint: &str,
    previous: &str,
    verifier: &NoteVerifier,
) -> Result<u64, CliError> {
    let path = args
        .consistency
        .clone()
        .unwrap_or_else(|| beside_log(&args.log, ".consistency"));
    let proof = read(&path).map_err(|e| {
        format!("{e} (a filtered export checked against a previous checkpoint needs its consistency proof: export with --previous-checkpoint)")
    })?;
    Ok(verify_extends(checkpoint, previous, &proof, verifier)
        .map_err(|e| format!("log NOT verified: {e}"))?)
}

pub fn run(args: VerifyArgs) -> Result<(), CliError> {
    let verifier = NoteVerifier::parse(&read(&args.public_key)?)
        .map_err(|e| format!("{}: {e}", args.public_key.display()))?;
    let checkpoint = read(&args.checkpoint)?;
    let previous = args.previous_checkpoint.as_deref().map(read).transpose()?;
    let extends = match (&args.proofs, &previous) {
        (Some(_), Some(previous)) => Some(extends(&args, &checkpoint, previous, &verifier)?),
        _ => None,
    };
    let verified = match &args.proofs {
        Some(proofs) => verify_proven(open(&args.log)?, open(proofs)?, &checkpoint, &verifier),
        None => {
            let stray = beside_log(&args.log, ".proofs");
            if stray.exists() {
                eprintln!(
                    "note: {} is ignored: the whole log is checked (for a filtered export's subset check, pass --proofs)",
                    stray.display()
                );
            }
            let leaves = args
                .leaves
                .clone()
                .or_else(|| Some(beside_log(&args.log, ".leaves")).filter(|p| p.exists()));
            verify(Inputs {
                log: open(&args.log)?,
                checkpoint: &checkpoint,
                verifier: &verifier,
                previous: previous.as_deref(),
                leaves: leaves.as_deref().map(open).transpose()?,
            })
        }
    }
    .map_err(|e| format!("log NOT verified: {e}"))?;
    match extends {
        Some(size) => println!(
            "{}; the signed log extends the previous checkpoint of {size} entries",
            verified.summary()
        ),
        None => println!("{}", verified.summary()),
    }
    if let Some(line) = verified.leaves_ignored {
        eprintln!(
            "note: the leaves file is malformed at line {line} and was ignored (it only helps name a changed entry)"
        );
    }
    if verified.unsigned > 0 {
        eprintln!(
            "note: {} later entries in the log are not covered by this checkpoint yet",
            verified.unsigned
        );
    }
    Ok(())
}
