//! `casegate fetch`: a reviewing centre downloads every file of its grant
//! end to end — the sealed object as stored, its file key sealed to the
//! centre's X25519 key — decrypts locally, verifies size and SHA-256, and
//! writes each file under `--out` as `category/[study/series/]name`: names
//! made safe (`names`), colliding ones kept apart by file id (`plan`).
//! Every read is bounded by what the manifest promised (`bounded`,
//! `download`); unfinished work waits in a hidden folder (`partial`) so an
//! interrupted fetch resumes, files already in place are skipped, and
//! files an earlier fetch left under another path are moved into place
//! (`adopt`) rather than downloaded again. A
//! file that fails is reported and the others go on; the exit status says
//! whether all landed; `index.csv` lists what is in place (`index`).
//! Nothing is written outside `--out`.

mod adopt;
mod decrypt;
mod download;
mod index;
mod manifest;
mod names;
mod one;
mod partial;
mod plan;
mod problem;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Args;
use futures_util::StreamExt;
use zeroize::Zeroizing;

use super::CliError;
use adopt::Earlier;
use manifest::GrantedFile;
use one::{Bars, Landed, Session, fetch_one};
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
    /// Files downloaded at the same time (1 to 16).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=16))]
    jobs: u16,
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
    /// Found under an earlier fetch's path and moved into place.
    moved: usize,
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
    let mut tally = Tally::default();
    let files = granted_files(&entries, &mut tally);
    let destinations = plan(&args.out, &files);
    let session = Session {
        client,
        base,
        token: &args.grant,
        secret,
        grant_id,
        case_id,
        partials: Partials::new(&args.out),
        earlier: std::sync::Arc::new(Earlier::read(&args.out, &destinations)),
        bars: Bars::new(),
    };
    session
        .bars
        .total
        .set_length(files.iter().map(|f| f.sealed_size).sum());
    let jobs = usize::from(args.jobs);
    fetch_all(
        &session,
        (&files, &destinations),
        &args.out,
        jobs,
        &mut tally,
    )
    .await;
    session.bars.total.finish_and_clear();
    session.partials.tidy();
    if let Err(e) = index::write(&args.out, (&files, &destinations)) {
        eprintln!("casegate: {}: {e}", args.out.join(index::NAME).display());
        tally.failed += 1;
    }
    report(&args.out, (&files, &destinations), entries.len(), &tally);
    if tally.failed > 0 {
        return Err(CliError::Failed(format!(
            "{} of {} files did not land (see above); run fetch again to retry them",
            tally.failed,
            entries.len()
        )));
    }
    Ok(())
}

/// The last line: what is really on disk, not what the loop believed.
fn report(
    out: &Path,
    (files, destinations): (&[GrantedFile], &[PathBuf]),
    listed: usize,
    tally: &Tally,
) {
    let on_disk = files
        .iter()
        .zip(destinations)
        .filter(|(file, dest)| {
            std::fs::metadata(dest).is_ok_and(|m| m.is_file() && m.len() == file.size)
        })
        .count();
    let moved = match tally.moved {
        0 => String::new(),
        n => format!(", {n} moved from an earlier fetch's place"),
    };
    eprintln!(
        "{on_disk} of {listed} files are in {}: {} fetched now, {} already there{moved}, {} failed",
        out.display(),
        tally.fetched,
        tally.already_there,
        tally.failed
    );
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

/// Fetches the files to their destinations under `out`, `jobs` at a time;
/// starts no new file once a failure would repeat for every file.
async fn fetch_all(
    session: &Session<'_>,
    (files, destinations): (&[GrantedFile], &[PathBuf]),
    out: &Path,
    jobs: usize,
    tally: &mut Tally,
) {
    let stopping = AtomicBool::new(false);
    let stopping = &stopping;
    let results: Vec<Outcome> = futures_util::stream::iter(files.iter().zip(destinations))
        .map(|(file, dest)| async move {
            if stopping.load(Ordering::SeqCst) {
                return Outcome::NotTried;
            }
            let shown = dest.strip_prefix(out).unwrap_or(dest).display().to_string();
            if !dest.starts_with(out) {
                session.bars.println(format!(
                    "casegate: {shown}: refusing to write outside --out"
                ));
                return Outcome::Failed;
            }
            match fetch_one(session, file, dest, &shown).await {
                Ok(landed) => Outcome::Landed(landed),
                Err(e) => {
                    session.bars.println(format!(
                        "casegate: {shown} ({}): {}",
                        file.file_id, e.message
                    ));
                    if e.stop && !stopping.swap(true, Ordering::SeqCst) {
                        session
                            .bars
                            .println("casegate: stopping; no further files are tried".into());
                    }
                    Outcome::Failed
                }
            }
        })
        .buffer_unordered(jobs)
        .collect()
        .await;
    for outcome in results {
        match outcome {
            Outcome::Landed(Landed::Fetched) => tally.fetched += 1,
            Outcome::Landed(Landed::AlreadyThere) => tally.already_there += 1,
            Outcome::Landed(Landed::Moved) => tally.moved += 1,
            Outcome::Failed | Outcome::NotTried => tally.failed += 1,
        }
    }
}

/// What became of one file.
enum Outcome {
    Landed(Landed),
    Failed,
    /// Not started: an earlier failure stopped the fetch.
    NotTried,
}
