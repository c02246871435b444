//! `casegate upload`: a patient sends files and folders (a hospital CD with
//! its DICOMDIR, a USB stick, a few PDFs) into their case over tus, from
//! the upload link the coordinator sent. The flow: walk the paths
//! ([`walk`]), tell DICOM from documents and suggest categories ([`sniff`],
//! [`category`]), summarise and ask ([`summary`]), compare with the resume
//! state and the gateway's manifest so nothing is sent twice ([`state`],
//! [`matching`]), send a few files at once with retries and resume
//! ([`send`], [`tus`], [`body`], [`progress`]), and end with a receipt of
//! SHA-256s the gateway confirmed ([`receipt`]). Every refusal is a plain
//! sentence saying what to do next ([`problem`]).
//!
//! `casegate reply` (`super::reply`) runs the same flow for a reviewing
//! centre: its grant token and client certificate, the centre listener's
//! tus route, its own replies as what was sent ([`CentreReply`]).

mod body;
mod category;
mod credentials;
mod hashing;
mod matching;
mod plan;
mod problem;
mod progress;
mod receipt;
mod send;
mod skip;
mod sniff;
mod stall;
mod state;
mod summary;
mod ticker;
mod tus;
mod walk;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;

use super::CliError;
pub use credentials::CredentialsError;
use credentials::SecretArg;
use matching::ServerFiles;
use problem::Failure;
use send::{Job, Outcome, Sender};
use sniff::Sniffed;
pub use state::StateError;
use state::StateStore;
use tus::{Route, Tus};
use walk::LocalFile;
pub use walk::WalkError;

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The upload link your coordinator sent (https://…/upload#token=cgu_…);
    /// gives both the gateway and the token.
    #[arg(long, env = "CASEGATE_UPLOAD_LINK", hide_env_values = true)]
    pub(crate) link: Option<SecretArg>,
    /// The gateway, e.g. https://gateway.example.org:8443 (overrides the link's).
    #[arg(long)]
    pub(crate) server: Option<String>,
    /// The upload token (cgu_…); prefer the variable or --link.
    #[arg(long, env = "CASEGATE_UPLOAD_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<SecretArg>,
    /// A PEM CA to trust (else the system trust store).
    #[arg(long, env = "CASEGATE_CA")]
    pub(crate) ca: Option<PathBuf>,
    /// One category for every file that is not DICOM (else suggested from names).
    #[arg(long)]
    pub(crate) category: Option<String>,
    /// Send without asking for confirmation.
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
    /// Files sent at once.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub(crate) parallel: u16,
    /// Where the resume state and the receipt CSV are kept.
    #[arg(long, default_value = "casegate-upload")]
    pub(crate) state_dir: PathBuf,
    /// At most this many bytes per second (e.g. to leave room on a shared line).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_rate: Option<u64>,
    /// Files and folders to send.
    #[arg(required = true)]
    pub(crate) paths: Vec<PathBuf>,
    /// Set by `casegate reply`: a centre sends, not a patient.
    #[arg(skip)]
    pub(crate) centre: Option<CentreReply>,
}

/// A reviewing centre's reply: the gateway's centre listener, the grant
/// token and the client certificate with its key (PEM).
pub struct CentreReply {
    pub server: String,
    pub grant: crate::token::SecretToken,
    pub identity_pem: Vec<u8>,
}

impl std::fmt::Debug for CentreReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CentreReply")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// Who sends: a patient (from its link or token) or a centre.
enum Who {
    Patient(credentials::Credentials),
    Centre(CentreReply),
}

/// A file found, what it is and the category it will be sent as.
struct Found {
    file: LocalFile,
    kind: Sniffed,
    category: &'static str,
}

pub async fn run(mut args: UploadArgs) -> Result<(), CliError> {
    let creds = match args.centre.take() {
        None => Who::Patient(credentials::resolve(
            args.server.as_deref(),
            args.token.as_ref(),
            args.link.as_ref(),
        )?),
        Some(centre) => Who::Centre(centre),
    };
    let forced = args.category.as_deref().map(category::forced).transpose()?;
    let found = find(&args, forced, matches!(creds, Who::Centre(_))).await?;
    if !args.yes && !std::io::stdin().is_terminal() {
        return Err(CliError::Failed(
            "not sending: there is nobody to confirm (no terminal); check the summary above and \
             run again with --yes"
                .into(),
        ));
    }
    let (tus, manifest, state) = connect(&args, creds).await?;
    let mut server = ServerFiles::from_manifest(&manifest);
    let plan::Plan {
        jobs,
        mut lines,
        stale,
    } = plan::plan(&tus, &state, &mut server, found).await;
    if !confirm(&jobs, args.yes, &tus.gateway())? {
        return Err(CliError::Failed("nothing sent".into()));
    }
    // Only now: a patient who answers no has changed nothing.
    for url in &stale {
        tus.terminate(url).await;
    }
    let total: u64 = jobs.iter().map(|j| j.file.size).sum();
    let progress = progress::Progress::new(total, jobs.len() as u64);
    let limit = args.max_rate.map(body::RateLimit::new);
    let sender = Sender::new(tus, state, std::sync::Arc::clone(&progress), limit);
    // From the first byte sent to the receipt, Ctrl-C stops cleanly:
    // running requests are dropped (the gateway keeps what arrived), the
    // state is written whole, and the patient is told how to go on.
    let sent_and_confirmed = async {
        let outcomes = sender.send_all(&jobs, usize::from(args.parallel)).await;
        progress.finish();
        let stopped = record_outcomes(&mut lines, &jobs, outcomes);
        report(&sender, &mut lines, stopped).await
    };
    tokio::select! {
        result = sent_and_confirmed => result,
        Ok(()) = tokio::signal::ctrl_c() => {
            progress.finish();
            sender.state.fold()?;
            Err(CliError::Failed(
                "stopped. What was sent is safe on the gateway; run the same command again \
                 to continue where it stopped"
                    .into(),
            ))
        }
    }
}

/// The receipt: the gateway's SHA-256 for every file (from its manifest
/// now), printed and written as CSV; the state folded; the exit.
async fn report(
    sender: &Sender,
    lines: &mut [receipt::Line],
    stopped: Option<String>,
) -> Result<(), CliError> {
    let manifest = case_manifest(&sender.tus).await?;
    receipt::confirm(lines, &mut ServerFiles::from_manifest(&manifest));
    lines.sort_by(|a, b| a.shown.cmp(&b.shown));
    receipt::print(lines);
    let csv = sender.state.receipt_path();
    receipt::write_csv(&csv, lines).map_err(|e| format!("{}: {e}", csv.display()))?;
    eprintln!("receipt written to {}", csv.display());
    sender.state.fold()?;
    finish(lines, stopped)
}

/// The gateway (HTTP/1.1: one connection per file being sent), the case as
/// it stands there, and this case's resume state.
async fn connect(
    args: &UploadArgs,
    who: Who,
) -> Result<(Tus, serde_json::Value, StateStore), CliError> {
    let mut builder = reqwest::Client::builder();
    let (server, token, route) = match who {
        Who::Patient(creds) => (creds.server, creds.token, Route::Patient),
        Who::Centre(centre) => {
            let identity = reqwest::Identity::from_pem(&centre.identity_pem).map_err(|_| {
                "the client certificate and key do not load (PEM certificate and its key)"
                    .to_string()
            })?;
            builder = builder.identity(identity);
            (centre.server, centre.grant, Route::Centre)
        }
    };
    let client = super::api_client::trusting(builder, args.ca.as_deref())?
        .http1_only()
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let tus = Tus::new(client, &server, token, route)?;
    let manifest = case_manifest(&tus).await?;
    // The id names the state files: only a well-formed one is used.
    let case_id = manifest["case_id"]
        .as_str()
        .and_then(crate::ids::CaseId::parse)
        .ok_or_else(|| {
            "the gateway's answer is not a case manifest; check the address".to_string()
        })?;
    let state = StateStore::open(&args.state_dir, case_id.as_str())?;
    Ok((tus, manifest, state))
}

/// Asks the patient, naming the gateway, unless `--yes` or there is
/// nothing to send.
fn confirm(jobs: &[Job], yes: bool, gateway: &str) -> Result<bool, CliError> {
    if jobs.is_empty() {
        eprintln!("every file is on the gateway already; nothing to send");
        return Ok(true);
    }
    if yes {
        return Ok(true);
    }
    eprint!("Send these files to {gateway}? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}

/// Puts each outcome on its receipt line; the reason the run stopped, if
/// it did.
fn record_outcomes(
    lines: &mut [receipt::Line],
    jobs: &[Job],
    outcomes: Vec<Outcome>,
) -> Option<String> {
    let mut stopped = None;
    for (job, outcome) in jobs.iter().zip(outcomes) {
        let line = &mut lines[job.line];
        match outcome {
            Outcome::Sent { sha256 } => line.local_sha256 = Some(sha256),
            Outcome::Failed(why) => line.problem = Some(why),
            Outcome::Stopped(why) => {
                if stopped.is_none() && why != send::NOT_SENT {
                    stopped = Some(why.clone());
                }
                line.problem = Some(why);
            }
        }
    }
    stopped
}

/// The exit: success only when every file is confirmed by the gateway.
fn finish(lines: &[receipt::Line], stopped: Option<String>) -> Result<(), CliError> {
    if let Some(why) = stopped {
        return Err(CliError::Failed(why));
    }
    let bad = lines.iter().filter(|l| !l.confirmed()).count();
    if bad > 0 {
        return Err(CliError::Failed(format!(
            "{bad} of {} files are not confirmed by the gateway (see the receipt); run the same \
             command again to retry them",
            lines.len()
        )));
    }
    Ok(())
}

/// Tries for the case manifest before giving up (about half a minute).
const MANIFEST_TRIES: u32 = 5;

/// The case manifest, asked again while the network or gateway is away.
async fn case_manifest(tus: &Tus) -> Result<serde_json::Value, CliError> {
    let mut tries = 0;
    loop {
        match tus.manifest().await {
            Ok(manifest) => return Ok(manifest),
            Err(Failure::Retry { why, after }) if tries < MANIFEST_TRIES => {
                tries += 1;
                let wait = after.unwrap_or_else(|| send::backoff(tries));
                eprintln!("{why}; trying again in {}s", wait.as_secs().max(1));
                tokio::time::sleep(wait).await;
            }
            Err(f) => {
                return Err(CliError::Failed(match f {
                    Failure::Stop(m) | Failure::File(m) => m,
                    Failure::Retry { why, .. } => format!(
                        "{why}; check the internet connection and the address, then run the \
                         same command again"
                    ),
                    Failure::Gone => "the gateway does not know this case (it may have been \
                                       closed); ask your coordinator for a new upload link"
                        .into(),
                }));
            }
        }
    }
}

/// Walks, sniffs and categorises; prints what is skipped and the summary.
async fn find(
    args: &UploadArgs,
    forced: Option<&'static str>,
    centre: bool,
) -> Result<Vec<Found>, CliError> {
    let roots = args.paths.clone();
    let exclude = args.state_dir.clone();
    let found = tokio::task::spawn_blocking(move || -> Result<Vec<Found>, WalkError> {
        let walked = walk::walk(&roots, Some(&exclude))?;
        for s in &walked.skipped {
            eprintln!("skipped {}: {}", s.shown, s.why);
        }
        if walked.viewer > 0 {
            eprintln!(
                "skipped {} files of the CD's image viewer program (not medical records)",
                walked.viewer
            );
        }
        let mut found = Vec::with_capacity(walked.files.len());
        let total = walked.files.len();
        let mut ticker = ticker::Ticker::new("checking file types");
        for (i, file) in walked.files.into_iter().enumerate() {
            ticker.tick(i, Some(total));
            let kind = match sniff::sniff(&file.path) {
                Ok(kind) => kind,
                Err(e) => {
                    eprintln!("skipped {}: {}", file.shown, walk::plain_io(&e));
                    continue;
                }
            };
            let category = match (&kind, forced) {
                // A centre files everything as its reply.
                (_, Some(c)) if centre => c,
                (Sniffed::Dicom { .. }, _) => category::DICOM,
                (Sniffed::Document, Some(c)) => c,
                (Sniffed::Document, None) => category::suggest(&file.shown),
            };
            found.push(Found {
                file,
                kind,
                category,
            });
        }
        Ok(found)
    })
    .await
    .map_err(|e| CliError::Failed(e.to_string()))??;
    if found.is_empty() {
        return Err(CliError::Failed(
            "nothing to send: no readable, non-empty files in the paths given".into(),
        ));
    }
    let counted = found.iter().map(|f| summary::Counted {
        size: f.file.size,
        kind: &f.kind,
        category: f.category,
    });
    eprintln!("{}", summary::summary(counted));
    Ok(found)
}
