//! `casegate audit export`: the audit log over the API into FILE (JSONL),
//! with FILE.checkpoint and FILE.leaves beside it; filtered, with
//! FILE.checkpoint and FILE.proofs (each entry's inclusion proof).
//!
//! Order matters: the checkpoint is fetched first, then the leaf hashes of
//! exactly its size, then the log. The export covers every entry up to the
//! moment it is asked for, so it always holds at least the checkpoint's
//! entries (plus a few later ones, such as the export's own entry, which
//! `verify` reports as not yet signed). Fetched the other way round, the
//! checkpoint could sign entries the file does not hold. A filtered export
//! is proven against the checkpoint's size and stops there; with
//! `--previous-checkpoint`, FILE.consistency holds the proof that the
//! signed log extends that earlier checkpoint. Files are written
//! under temporary names and linked to their names only when complete; no
//! existing file is ever overwritten (FILE, or any of FILE.checkpoint,
//! FILE.leaves, FILE.proofs: a stale one would be read with the new export).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use futures_util::StreamExt;

use super::super::CliError;
use super::super::api_client::{ApiClient, ServerArgs};
use crate::audit::note::Checkpoint;

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Where to write the log; FILE.checkpoint and FILE.leaves go beside it.
    #[arg(long)]
    pub out: PathBuf,
    /// Only entries of this case. A filtered export holds each entry's
    /// inclusion proof (FILE.proofs) instead of the leaf hashes.
    #[arg(long)]
    pub case_id: Option<String>,
    #[arg(long)]
    pub centre_id: Option<String>,
    #[arg(long)]
    pub actor: Option<String>,
    #[arg(long)]
    pub action: Option<String>,
    /// allow, deny or error.
    #[arg(long)]
    pub outcome: Option<String>,
    /// RFC 3339 time, inclusive.
    #[arg(long)]
    pub since: Option<String>,
    /// RFC 3339 time, exclusive.
    #[arg(long)]
    pub until: Option<String>,
    /// A filtered export only: an earlier checkpoint you kept; the proof
    /// that the signed log extends it is saved as FILE.consistency (the
    /// whole log is checked against one by `verify` itself).
    #[arg(long)]
    pub previous_checkpoint: Option<PathBuf>,
}

impl ExportArgs {
    fn filters(&self) -> Vec<(&'static str, &str)> {
        [
            ("case_id", &self.case_id),
            ("centre_id", &self.centre_id),
            ("actor", &self.actor),
            ("action", &self.action),
            ("outcome", &self.outcome),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

fn beside(out: &Path, suffix: &str) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Streams the answer to `path` into `file` (created owner-only); returns
/// the number of lines.
async fn download(client: &ApiClient, path: &str, file: &Path) -> Result<u64, CliError> {
    let resp = client.get(path).await?;
    let mut out =
        crate::fsutil::private_file(file, true).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut body = resp.bytes_stream();
    let mut lines = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("the export broke off: {e}"))?;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        out.write_all(&chunk)
            .map_err(|e| format!("{}: {e}", file.display()))?;
    }
    out.sync_all()
        .map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(lines)
}

/// The gateway's current checkpoint (written to a temporary file beside
/// `out`) and the tree size it signs.
async fn checkpoint(client: &ApiClient, out: &Path) -> Result<(Saved, u64), CliError> {
    let note = client
        .get("/api/v1/audit/checkpoint")
        .await?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let text = note.rsplit_once("\n\n").map(|(t, _)| t).unwrap_or(&note);
    let size = Checkpoint::parse(&format!("{text}\n"))
        .map_err(|e| format!("the gateway's checkpoint: {e}"))?
        .size;
    let tmp = beside(out, ".checkpoint.partial");
    std::fs::write(&tmp, &note).map_err(|e| format!("{}: {e}", tmp.display()))?;
    Ok(((tmp, beside(out, ".checkpoint")), size))
}

/// A file written under a temporary name, and its final name.
type Saved = (PathBuf, PathBuf);

/// The whole log: the leaf hashes of exactly the checkpoint's size, then
/// the log up to now.
async fn whole(client: &ApiClient, out: &Path, size: u64) -> Result<(Vec<Saved>, u64), CliError> {
    let leaves_tmp = beside(out, ".leaves.partial");
    if size > 0 {
        let path = format!("/api/v1/audit/leaves?tree_size={size}");
        download(client, &path, &leaves_tmp).await?;
    } else {
        crate::fsutil::private_file(&leaves_tmp, true)
            .map_err(|e| format!("{}: {e}", leaves_tmp.display()))?;
    }
    let log_tmp = beside(out, ".partial");
    let entries = download(client, "/api/v1/audit?format=jsonl", &log_tmp).await?;
    Ok((
        vec![
            (leaves_tmp, beside(out, ".leaves")),
            (log_tmp, out.to_owned()),
        ],
        entries,
    ))
}

/// A filtered log: each entry with its inclusion proof in the tree of the
/// checkpoint's size (FILE and FILE.proofs, line by line).
async fn filtered(
    client: &ApiClient,
    out: &Path,
    size: u64,
    filters: &[(&str, &str)],
) -> Result<(Vec<Saved>, u64), CliError> {
    if size == 0 {
        return Err("the audit log is empty".to_owned().into());
    }
    let query: String = filters
        .iter()
        .map(|(k, v)| format!("&{k}={}", percent_encode(v)))
        .collect();
    let path = format!("/api/v1/audit?format=jsonl&proofs=1&tree_size={size}{query}");
    let (log_tmp, proofs_tmp) = (beside(out, ".partial"), beside(out, ".proofs.partial"));
    let entries = super::proven::download(client, &path, &log_tmp, &proofs_tmp).await?;
    Ok((
        vec![
            (proofs_tmp, beside(out, ".proofs")),
            (log_tmp, out.to_owned()),
        ],
        entries,
    ))
}

/// The tree size a saved checkpoint note signs.
fn size_of(note: &str, what: &str) -> Result<u64, CliError> {
    let text = note.rsplit_once("\n\n").map(|(t, _)| t).unwrap_or(note);
    Ok(Checkpoint::parse(&format!("{text}\n"))
        .map_err(|e| format!("{what}: {e}"))?
        .size)
}

/// The consistency proof from the earlier checkpoint at `previous` to the
/// tree of `size` entries, saved beside `out`.
async fn consistency(
    client: &ApiClient,
    out: &Path,
    previous: &Path,
    size: u64,
) -> Result<Saved, CliError> {
    let note =
        std::fs::read_to_string(previous).map_err(|e| format!("{}: {e}", previous.display()))?;
    let first = size_of(&note, &previous.display().to_string())?;
    if first > size {
        return Err(format!(
            "the gateway's checkpoint signs {size} entries, fewer than the previous checkpoint's {first}: the log was truncated or rolled back"
        )
        .into());
    }
    let resp = client
        .get(&format!("/api/v1/audit/proof?first={first}&second={size}"))
        .await?;
    let proof = super::super::bounded::body_within(resp, super::super::bounded::MAX_PROBLEM_BYTES)
        .await
        .map_err(|e| format!("the consistency proof: {e:?}"))?;
    let tmp = beside(out, ".consistency.partial");
    std::fs::write(&tmp, proof).map_err(|e| format!("{}: {e}", tmp.display()))?;
    Ok((tmp, beside(out, ".consistency")))
}

/// Gives each complete file its final name, never replacing one (a hard
/// link fails if the name exists, where a rename would overwrite it).
fn publish(saved: &[Saved]) -> Result<(), CliError> {
    for (tmp, path) in saved {
        let linked = std::fs::hard_link(tmp, path);
        let _ = std::fs::remove_file(tmp);
        linked.map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

pub async fn run(args: ExportArgs) -> Result<(), CliError> {
    let client = ApiClient::new(&args.server)?;
    let out = args.out.clone();
    // No file of an export is ever replaced: a stale FILE.proofs or
    // FILE.leaves beside a new export would be read with it.
    for suffix in ["", ".checkpoint", ".leaves", ".proofs", ".consistency"] {
        let path = beside(&out, suffix);
        if path.exists() {
            return Err(format!("{} exists; choose another --out", path.display()).into());
        }
    }
    let filters = args.filters();
    if args.previous_checkpoint.is_some() && filters.is_empty() {
        return Err("--previous-checkpoint is for a filtered export; the whole log is checked against it by `audit verify --previous-checkpoint`".to_owned().into());
    }
    let fetched = async {
        let (saved_checkpoint, size) = checkpoint(&client, &out).await?;
        let (mut saved, entries) = if filters.is_empty() {
            whole(&client, &out, size).await?
        } else {
            filtered(&client, &out, size, &filters).await?
        };
        if let Some(previous) = &args.previous_checkpoint {
            saved.push(consistency(&client, &out, previous, size).await?);
        }
        saved.push(saved_checkpoint);
        Ok::<_, CliError>((saved, entries))
    }
    .await;
    let (saved, entries) = match fetched {
        Ok(done) => done,
        Err(e) => {
            // Nothing half-written stays behind.
            for suffix in [
                ".partial",
                ".leaves.partial",
                ".proofs.partial",
                ".checkpoint.partial",
                ".consistency.partial",
            ] {
                let _ = std::fs::remove_file(beside(&out, suffix));
            }
            return Err(e);
        }
    };
    publish(&saved)?;
    println!("exported {entries} entries to {}", out.display());
    print_next_step(
        &out,
        filters.is_empty(),
        args.previous_checkpoint.as_deref(),
    );
    Ok(())
}

/// What was saved beside the log, and the command that verifies it.
fn print_next_step(out: &Path, whole: bool, previous: Option<&Path>) {
    let (beside_it, flag) = match (whole, previous) {
        (true, _) => ("leaf hashes in {0}.leaves", String::new()),
        (false, None) => (
            "each entry's inclusion proof in {0}.proofs (a subset: it cannot prove no entry was left out)",
            " --proofs {0}.proofs".to_owned(),
        ),
        (false, Some(previous)) => (
            "each entry's inclusion proof in {0}.proofs (a subset: it cannot prove no entry was left out), the proof that the log extends the previous checkpoint in {0}.consistency",
            format!(
                " --proofs {{0}}.proofs --previous-checkpoint {}",
                previous.display()
            ),
        ),
    };
    let name = out.display().to_string();
    println!(
        "checkpoint in {0}.checkpoint, {1}; verify offline with:\n  casegate audit verify --log {0} --checkpoint {0}.checkpoint --public-key <verifier key file>{2}",
        name,
        beside_it.replace("{0}", &name),
        flag.replace("{0}", &name)
    );
}
