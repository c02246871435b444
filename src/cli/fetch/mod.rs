//! `casegate fetch`: a reviewing centre downloads every file of its grant
//! end to end — the sealed object as stored, its file key sealed to the
//! centre's X25519 key — decrypts locally, verifies size and SHA-256, and
//! writes each file under `--out` as `category/[study/series/]name`: names
//! made safe (`names`), colliding ones kept apart by file id (`plan`).
//! Every read is bounded by what the manifest promised (`bounded`,
//! `download`); unfinished work waits in a hidden folder (`partial`) so an
//! interrupted fetch resumes, and files already in place are skipped. A
//! file that fails is reported and the others go on; the exit status says
//! whether all landed. Nothing is written outside `--out`.

mod decrypt;
mod download;
mod manifest;
mod names;
mod one;
mod partial;
mod plan;
mod problem;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Args;
use indicatif::ProgressStyle;
use zeroize::Zeroizing;

use super::CliError;
use manifest::GrantedFile;
use one::{Landed, Session, fetch_one};
use partial::Partials;
use plan::plan;

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The gateway's centre listener, e.g. https://gateway.example.org:8444
    #[arg(long)]
    server: String,
    /// The grant token.
    #[arg(long, env = "CASEGATE_GRANT")]
    grant: String,
    /// The centre's client certificate (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// The centre's X25519 secret key (base64url, from `centre keygen`).
    #[arg(long = "x25519-key")]
    x25519_key: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// A PEM CA to trust (else the system trust store).
    #[arg(long, env = "CASEGATE_CA")]
    ca: Option<PathBuf>,
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn client(args: &FetchArgs) -> Result<reqwest::Client, String> {
    let mut identity = read(&args.cert)?;
    identity.extend_from_slice(b"\n");
    identity.extend_from_slice(&read(&args.key)?);
    let builder = reqwest::Client::builder().identity(
        reqwest::Identity::from_pem(&identity)
            .map_err(|e| format!("client certificate/key: {e}"))?,
    );
    super::api_client::trusting(builder, args.ca.as_deref())?
        .build()
        .map_err(|e| e.to_string())
}

fn x25519_secret(path: &Path) -> Result<Zeroizing<[u8; 32]>, CliError> {
    crate::fsutil::check_private(path)?;
    let text = Zeroizing::new(
        String::from_utf8(read(path)?).map_err(|_| "x25519 key is not text".to_string())?,
    );
    let raw = Zeroizing::new(
        URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| "x25519 key is not base64url".to_string())?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    if raw.len() != 32 {
        return Err(CliError::Failed("x25519 key must be 32 bytes".into()));
    }
    key.copy_from_slice(&raw);
    Ok(key)
}

/// What became of the grant's files.
#[derive(Default)]
struct Tally {
    fetched: usize,
    already_there: usize,
    failed: usize,
}

pub async fn run(args: FetchArgs) -> Result<(), CliError> {
    let secret = x25519_secret(&args.x25519_key)?;
    let client = client(&args)?;
    let base = args.server.trim_end_matches('/');
    let manifest::Grant {
        grant_id,
        case_id,
        entries,
    } = manifest::fetch(&client, base, &args.grant).await?;
    crate::fsutil::private_dir_all(&args.out)
        .map_err(|e| format!("{}: {e}", args.out.display()))?;
    let session = Session {
        client,
        base,
        token: &args.grant,
        secret,
        grant_id,
        case_id,
        partials: Partials::new(&args.out),
        style: ProgressStyle::with_template(
            "{msg:40!} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    };
    let mut tally = Tally::default();
    let files = granted_files(&entries, &mut tally);
    let destinations = plan(&args.out, &files);
    fetch_all(&session, &files, &destinations, &args.out, &mut tally).await;
    session.partials.tidy();
    // Count what is really on disk, not what the loop believed.
    let on_disk = files
        .iter()
        .zip(&destinations)
        .filter(|(file, dest)| {
            std::fs::metadata(dest).is_ok_and(|m| m.is_file() && m.len() == file.size)
        })
        .count();
    eprintln!(
        "{on_disk} of {} files are in {}: {} fetched now, {} already there, {} failed",
        entries.len(),
        args.out.display(),
        tally.fetched,
        tally.already_there,
        tally.failed
    );
    if tally.failed > 0 {
        return Err(CliError::Failed(format!(
            "{} of {} files did not land (see above); run fetch again to retry them",
            tally.failed,
            entries.len()
        )));
    }
    Ok(())
}

/// The manifest's entries that describe a file, each file once; the others
/// are reported and counted as failed.
fn granted_files(entries: &[serde_json::Value], tally: &mut Tally) -> Vec<GrantedFile> {
    let mut files = Vec::new();
    let mut ids = HashSet::new();
    for entry in entries {
        match GrantedFile::parse(entry) {
            Ok(file) if ids.insert(file.file_id.clone()) => files.push(file),
            Ok(file) => {
                eprintln!("casegate: skipped: the grant lists {} twice", file.file_id);
                tally.failed += 1;
            }
            Err(why) => {
                eprintln!("casegate: skipped: {why}");
                tally.failed += 1;
            }
        }
    }
    files
}

/// Fetches each file to its destination under `out`, one after another;
/// stops early when a failure would repeat for every file.
async fn fetch_all(
    session: &Session<'_>,
    files: &[GrantedFile],
    destinations: &[PathBuf],
    out: &Path,
    tally: &mut Tally,
) {
    for (index, (file, dest)) in files.iter().zip(destinations).enumerate() {
        let shown = dest.strip_prefix(out).unwrap_or(dest).display().to_string();
        if !dest.starts_with(out) {
            eprintln!("casegate: {shown}: refusing to write outside --out");
            tally.failed += 1;
            continue;
        }
        match fetch_one(session, file, dest, &shown).await {
            Ok(Landed::Fetched) => tally.fetched += 1,
            Ok(Landed::AlreadyThere) => tally.already_there += 1,
            Err(e) => {
                eprintln!("casegate: {shown} ({}): {}", file.file_id, e.message);
                tally.failed += 1;
                if e.stop {
                    let rest = files.len() - index - 1;
                    eprintln!("casegate: stopping; {rest} more files not tried");
                    tally.failed += rest;
                    break;
                }
            }
        }
    }
}
