//! Signed checkpoints of the audit log: made on demand (the checkpoint
//! route, [`read`], unless only checkpoint reads were logged since the
//! last; the server's last act, [`current`]) and by a background task at
//! least every `audit.checkpoint_interval_secs` while entries arrive
//! ([`run`]); stored, and copied to `audit.checkpoint_copy` when set. One
//! checkpoint is made at a time; a failed copy (or one stuck longer than
//! [`COPY_TIMEOUT`], say on a hung network share) is logged and raised as
//! an alert (`alert.checkpoint_copy`), and does not stop the checkpoint. Before
//! signing, the tree must extend the last checkpoint (same root at its
//! size): a rewritten or cut history is an alert (`alert.history_rewritten`)
//! and is never signed.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{Mutex, watch};

use super::AuditError;
use crate::audit::checkpoint_copy;
use crate::audit::checkpoint_copy_s3::S3Copy;
use crate::audit::note::{Checkpoint, NoteSigner, NoteVerifier};
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::clock::Timestamp;
use crate::config::Config;
use crate::db;
use crate::db::audit::checkpoints::{self, CheckpointRow};
use crate::db::audit::tree;
use crate::service::Services;

/// Where checkpoints are copied (`audit.checkpoint_copy`).
#[derive(Debug)]
enum CopyTarget {
    Dir(PathBuf),
    S3(S3Copy),
    /// An S3 target that could not be set up: every copy fails with this.
    Broken(String),
}

impl CopyTarget {
    fn from_config(config: &Config) -> Option<CopyTarget> {
        let target = config.audit.checkpoint_copy.as_deref()?;
        if !target.starts_with("s3://") {
            return Some(CopyTarget::Dir(PathBuf::from(target)));
        }
        let retention = config.audit.checkpoint_copy_retention_days;
        let opened = config
            .checkpoint_copy_connection()
            .and_then(|connection| S3Copy::open(target, &connection, retention));
        Some(match opened {
            Some(copy) => CopyTarget::S3(copy),
            None => {
                tracing::error!(target, "the S3 checkpoint copy target cannot be set up");
                CopyTarget::Broken(format!(
                    "{target} cannot be set up (audit.checkpoint_copy_s3 or storage.s3 settings)"
                ))
            }
        })
    }

    /// Writes the copy within [`COPY_TIMEOUT`]; the failure, if any.
    async fn write(&self, size: u64, note: &str, now: Timestamp) -> Option<String> {
        let late = || {
            format!(
                "the copy did not finish within {} s (storage stuck?)",
                COPY_TIMEOUT.as_secs()
            )
        };
        match self {
            CopyTarget::Dir(dir) => {
                let (dir, note) = (dir.clone(), note.to_owned());
                let copy =
                    tokio::task::spawn_blocking(move || checkpoint_copy::write(&dir, size, &note));
                match tokio::time::timeout(COPY_TIMEOUT, copy).await {
                    Ok(Ok(Ok(_))) => None,
                    Ok(Ok(Err(e))) => Some(e.to_string()),
                    Ok(Err(e)) => Some(format!("copy task failed: {e}")),
                    Err(_) => Some(late()),
                }
            }
            CopyTarget::S3(s3) => {
                match tokio::time::timeout(COPY_TIMEOUT, s3.write(size, note, now)).await {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some(late()),
                }
            }
            CopyTarget::Broken(why) => Some(why.clone()),
        }
    }
}

/// What makes checkpoints: the signer, the copy target, and the lock
/// that makes one at a time.
#[derive(Debug)]
pub struct Checkpoints {
    signer: NoteSigner,
    copy: Option<CopyTarget>,
    /// Held while a checkpoint is made; holds the size of the checkpoint a
    /// rewritten history was last alerted against (one alert, not one per
    /// interval).
    making: Mutex<Option<u64>>,
    /// This gateway's name for the periodic signing lease (random per
    /// process): of several replicas, one signs checkpoints on schedule.
    holder: String,
}

/// The lease of the replica that signs checkpoints on schedule.
const SIGNING_LEASE: &str = "audit-checkpoint";

impl Checkpoints {
    /// Checkpoints signed by `signer`, copied where the config says.
    pub fn new(signer: NoteSigner, config: &Config) -> Checkpoints {
        Checkpoints {
            signer,
            copy: CopyTarget::from_config(config),
            making: Mutex::new(None),
            holder: crate::hex::encode(&crate::random::array::<8>()),
        }
    }

    /// The verifier key of the checkpoints' signatures.
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }
}

/// How long a checkpoint copy may take before it counts as failed. The
/// copy's thread cannot be cancelled and is left behind; the checkpoint,
/// the request and the shutdown go on.
pub const COPY_TIMEOUT: Duration = Duration::from_secs(5);

/// The action of a checkpoint read's own entry.
const READ_ACTION: &str = "audit.checkpoint.read";

/// A compliance read of the checkpoint: audited, then the latest
/// checkpoint, made first if anything but checkpoint reads happened since
/// it (then it covers the read's own entry). Each read is itself an entry,
/// so the tree always grew; signing for reads alone would have a monitor
/// polling every second sign, store and copy a checkpoint every second.
/// Reads alone are signed by the background task, once per interval.
pub async fn read(svc: &Services, ctx: &RequestContext) -> Result<CheckpointRow, AuditError> {
    super::record(svc, ctx, NewEntry::new(READ_ACTION, Outcome::Allow)).await?;
    made(svc, true, None).await
}

/// The latest checkpoint, made first if the tree grew since the last one.
pub async fn current(svc: &Services) -> Result<CheckpointRow, AuditError> {
    made(svc, false, None).await
}

/// The latest checkpoint if it covers the first `entries` entries, else a
/// new one. A report that read entries 1..=N needs no newer signature (its
/// own audit entry would otherwise make every read sign, and copy, one).
pub async fn covering(svc: &Services, entries: u64) -> Result<CheckpointRow, AuditError> {
    made(svc, false, Some(entries)).await
}

/// The latest checkpoint, made first if the tree grew since it (by more
/// than checkpoint reads, if `reads_wait`; beyond `covers` entries, if
/// given). Either way the tree must extend it.
async fn made(
    svc: &Services,
    reads_wait: bool,
    covers: Option<u64>,
) -> Result<CheckpointRow, AuditError> {
    let cp = &svc.checkpoints;
    let mut alerted = cp.making.lock().await;
    let size = tree::current_size(&svc.db).await?;
    let latest = checkpoints::latest(&svc.db).await?;
    if let Some(latest) = &latest {
        extends(svc, latest, size, &mut alerted).await?;
    }
    match latest {
        Some(latest) if latest.tree_size >= covers.unwrap_or(size) => Ok(latest),
        Some(latest)
            if reads_wait
                && !db::audit::written_since(&svc.db, latest.tree_size, READ_ACTION).await? =>
        {
            Ok(latest)
        }
        _ => make(svc, size).await,
    }
}

/// The tree as it stands must extend the last checkpoint signed: as large,
/// with the same root at that size. Otherwise entries or tree nodes were
/// removed or rewritten behind the gateway's back; it raises
/// `alert.history_rewritten` and signs nothing over it.
async fn extends(
    svc: &Services,
    latest: &CheckpointRow,
    size: u64,
    alerted: &mut Option<u64>,
) -> Result<(), AuditError> {
    // The stored row must be what was signed (a row whose root was edited
    // to match a rewritten tree is not), and the tree must extend it.
    let intact = signed_as_stored(&svc.checkpoints.signer, latest)
        && latest.tree_size <= size
        && tree::root(&svc.db, latest.tree_size).await? == latest.root;
    let refused = || Err(AuditError::HistoryRewritten(latest.tree_size));
    if intact {
        return Ok(());
    }
    if *alerted == Some(latest.tree_size) {
        return refused();
    }
    *alerted = Some(latest.tree_size);
    let reason = format!(
        "the audit tree ({size} entries) does not extend the checkpoint of {} entries (or that stored checkpoint is not what this gateway's key signed): history was removed or rewritten; no checkpoint is signed over it",
        latest.tree_size
    );
    tracing::error!("{reason}");
    super::alerts::raise(svc, "checkpoints", "alert.history_rewritten", reason).await;
    refused()
}

/// Whether the stored note is this gateway's signature over exactly the
/// row's origin, size and root.
fn signed_as_stored(signer: &NoteSigner, row: &CheckpointRow) -> bool {
    let Ok(verifier) = NoteVerifier::parse(&signer.verifier_key()) else {
        return false;
    };
    verifier
        .verify(&row.note)
        .ok()
        .and_then(|text| Checkpoint::parse(text).ok())
        .is_some_and(|cp| {
            cp.origin == signer.name() && cp.size == row.tree_size && cp.root == row.root
        })
}

async fn make(svc: &Services, size: u64) -> Result<CheckpointRow, AuditError> {
    let cp = &svc.checkpoints;
    let root = tree::root(&svc.db, size).await?;
    let text = Checkpoint {
        origin: cp.signer.name().to_owned(),
        size,
        root,
    }
    .text();
    let row = CheckpointRow {
        tree_size: size,
        root,
        note: cp.signer.sign(&text),
        created_at: svc.timestamp(),
    };
    if !checkpoints::insert(&svc.db, &row).await? {
        // Another replica signed this size first: serve its checkpoint.
        return Ok(checkpoints::latest(&svc.db).await?.unwrap_or(row));
    }
    tracing::info!(tree_size = size, "audit checkpoint signed");
    if let Some(target) = &cp.copy
        && let Some(failure) = target.write(size, &row.note, svc.timestamp()).await
    {
        tracing::error!(error = %failure, "audit checkpoint copy failed");
        let reason = format!("checkpoint of {size} entries not copied: {failure}");
        super::alerts::raise(svc, "checkpoints", "alert.checkpoint_copy", reason).await;
    }
    Ok(row)
}

/// Makes a checkpoint every `audit.checkpoint_interval_secs` while the
/// tree grows (one at once, for a log that grew while the gateway was
/// down), until `stop` turns true. The server makes a last one with
/// [`current`] once it has drained. Of several replicas sharing the
/// database, the one holding the signing lease does this (the lease lasts
/// three intervals, so a replica that died is replaced); any replica still
/// signs a checkpoint a request asks for.
pub async fn run(svc: &Services, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_secs(svc.config.audit.checkpoint_interval_secs);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let holder = &svc.checkpoints.holder;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
        let ttl = 3 * every.as_millis() as i64;
        match db::leases::acquire(&svc.db, SIGNING_LEASE, holder, ttl).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::error!(error = %e, "audit checkpoint lease could not be read");
                continue;
            }
        }
        if let Err(e) = current(svc).await {
            tracing::error!(error = %e, "audit checkpoint could not be made");
        }
    }
    if let Err(e) = db::leases::release(&svc.db, SIGNING_LEASE, holder).await {
        tracing::warn!(error = %e, "audit checkpoint lease not released");
    }
}
