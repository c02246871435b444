//! Master key rotation: add a version, then rewrap every case key under it.
//! Object data is never read or rewritten: file keys are wrapped under case
//! keys, which do not change. Each case is rewrapped in its own small
//! transaction with a compare-and-swap, so the run is resumable
//! (`--resume`) and safe while the gateway serves (it reloads the key file
//! when it changes). Old versions can be retired once nothing uses them.
//!
//! Several gateways sharing one database each read their own copy of the
//! key file, so rotation there has two steps ([`RotateStep`]): `--stage`
//! adds the version (gateways unwrap with it once their file has it, but
//! wrap nothing under it), then, once every copy has it, `--activate`
//! records it in the database as the version new case keys are wrapped
//! under and rewraps. The database's active version is what every gateway
//! wraps under.

use std::path::{Path, PathBuf};

use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::bootstrap::{self, StartError};
use crate::clock::Timestamp;
use crate::config::Config;
use crate::crypto::master::MasterKeyError;
use crate::crypto::{KeyEncryptionKey, Keyring, LocalMasterKeys};
use crate::db::{self, Db, DbError};
use crate::fsutil;
use crate::ids::CaseId;

/// Why a rotation, retirement or status query stopped.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(
        "the master key comes from keys.master_key (environment): add a version in your secret store and restart instead"
    )]
    KeyFromEnvironment,
    #[error(transparent)]
    MasterKey(#[from] MasterKeyError),
    #[error(transparent)]
    Open(#[from] StartError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Commit(#[from] sqlx::Error),
    #[error(transparent)]
    Audit(#[from] db::audit::AuditUnavailable),
    #[error("cannot write {}: {source}", .path.display())]
    WriteKeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("case {case_id}: key does not unwrap under master key version {version}")]
    CaseKey { case_id: CaseId, version: u32 },
    #[error(
        "master key version {version} still wraps {cases} case keys; run `casegate keys rotate --resume` first"
    )]
    InUse { version: u32, cases: i64 },
    #[error("master key version {0} is the active or newest version, or does not exist")]
    NotRetirable(u32),
    #[error(
        "no staged master key version to activate: version {0} is already active (run `keys rotate --stage` first)"
    )]
    NothingStaged(u32),
    #[error(
        "master key version {0} is active in the database but not in this key file; copy the key file from where `keys rotate --stage` ran"
    )]
    VersionMissing(u32),
}

/// What one `casegate keys rotate` run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateStep {
    /// Add a version, make it active and rewrap (one gateway).
    Whole,
    /// Add a version the gateways load but wrap nothing under yet.
    Stage,
    /// Make the newest version active and rewrap under it.
    Activate,
    /// Finish rewrapping under the active version.
    Resume,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    pub step: RotateStep,
    /// The version added (`Stage`) or now active.
    pub version: u32,
    pub rewrapped: u64,
    /// Cases deleted or rewrapped by someone else while this run worked.
    pub skipped: u64,
}

const BATCH: i64 = 200;

fn key_file(config: &Config) -> Result<&Path, RotationError> {
    if config.keys.master_key.is_some() {
        return Err(RotationError::KeyFromEnvironment);
    }
    Ok(&config.keys.master_key_file)
}

/// Writes the new key file in place of the old one.
fn write_keys(path: &Path, keys: &LocalMasterKeys) -> Result<(), RotationError> {
    fsutil::replace_secret_file(path, keys.serialize().as_bytes()).map_err(|source| {
        RotationError::WriteKeyFile {
            path: path.to_owned(),
            source,
        }
    })
}

fn operator_context(actor: &str) -> RequestContext {
    RequestContext {
        actor: actor.into(),
        role: "operator".into(),
        ..Default::default()
    }
}

async fn audit(db: &Db, actor: &str, entry: NewEntry) -> Result<(), RotationError> {
    db::audit::record(db, &operator_context(actor), Timestamp::now_utc(), &entry).await?;
    Ok(())
}

/// Runs one rotation step (see [`RotateStep`]).
pub async fn rotate(
    config: &Config,
    step: RotateStep,
    actor: &str,
) -> Result<RotationReport, RotationError> {
    let path = key_file(config)?;
    let mut keys = LocalMasterKeys::load(path)?;
    let db = bootstrap::open_db(config).await?;
    let active = db::master_keys::active_version(&db).await?;
    let version = match step {
        RotateStep::Whole | RotateStep::Stage => {
            let before = keys.current_version();
            let added = keys.add_version();
            // The new version is on disk before any case key depends on it.
            write_keys(path, &keys)?;
            if step == RotateStep::Stage {
                // Gateways keep wrapping under the version in use.
                let kept = active.unwrap_or(before);
                let why = format!("master key version {added} staged; version {kept} stays active");
                set_active(&db, actor, kept, "keys.stage", why).await?;
                return Ok(RotationReport {
                    step,
                    version: added,
                    rewrapped: 0,
                    skipped: 0,
                });
            }
            added
        }
        RotateStep::Activate => {
            let newest = keys.current_version();
            if active.is_some_and(|a| a >= newest) {
                return Err(RotationError::NothingStaged(newest));
            }
            newest
        }
        RotateStep::Resume => active.unwrap_or(keys.current_version()),
    };
    if !keys.versions().contains(&version) {
        return Err(RotationError::VersionMissing(version));
    }
    if step != RotateStep::Resume {
        let why = format!("master key version {version} active");
        set_active(&db, actor, version, "keys.activate", why).await?;
    }
    let (rewrapped, skipped) =
        rewrap_all(&db, &Keyring::new(std::sync::Arc::new(keys)), version).await?;
    let why = format!("master key version {version}; {rewrapped} case keys rewrapped");
    audit(
        &db,
        actor,
        NewEntry::new("keys.rotate", Outcome::Allow).reason(why),
    )
    .await?;
    Ok(RotationReport {
        step,
        version,
        rewrapped,
        skipped,
    })
}

/// Records `version` as the one new case keys are wrapped under, with its
/// audit entry, in one transaction.
async fn set_active(
    db: &Db,
    actor: &str,
    version: u32,
    action: &'static str,
    reason: String,
) -> Result<(), RotationError> {
    let ctx = operator_context(actor);
    let mut tx = db::audit::begin(db).await?;
    db::master_keys::set_active_version(&mut tx, version).await?;
    let entry = NewEntry::new(action, Outcome::Allow).reason(reason);
    db::audit::commit(db, tx, &ctx, Timestamp::now_utc(), &entry).await?;
    Ok(())
}

/// Rewraps every open case's key not yet under `version`; returns how
/// many were rewrapped and how many changed meanwhile.
async fn rewrap_all(db: &Db, keyring: &Keyring, version: u32) -> Result<(u64, u64), RotationError> {
    let (mut rewrapped, mut skipped) = (0, 0);
    loop {
        let batch = db::cases::keys_not_at(db, version, BATCH).await?;
        if batch.is_empty() {
            return Ok((rewrapped, skipped));
        }
        for (case_id, old) in batch {
            let new = keyring
                .rewrap_case_key_under(&case_id, &old, version)
                .map_err(|_| RotationError::CaseKey {
                    case_id: case_id.clone(),
                    version: old.kek_version,
                })?;
            let mut tx = db.begin().await?;
            if db::cases::rewrap(&mut tx, &case_id, &old, &new).await? {
                tx.commit().await?;
                rewrapped += 1;
            } else {
                // Deleted or rewrapped meanwhile; the next query excludes it.
                skipped += 1;
            }
        }
    }
}

/// Removes master key `version` from the key file, refusing while any open
/// case key is still wrapped under it, and refusing the current version.
pub async fn retire(config: &Config, version: u32, actor: &str) -> Result<(), RotationError> {
    let path = key_file(config)?;
    let mut keys = LocalMasterKeys::load(path)?;
    let db = bootstrap::open_db(config).await?;
    let in_use = db::cases::key_versions(&db)
        .await?
        .into_iter()
        .find(|(v, _)| *v == version)
        .map(|(_, n)| n)
        .unwrap_or(0);
    if in_use > 0 {
        return Err(RotationError::InUse {
            version,
            cases: in_use,
        });
    }
    let active = db::master_keys::active_version(&db).await?;
    if active == Some(version) || !keys.retire(version) {
        return Err(RotationError::NotRetirable(version));
    }
    write_keys(path, &keys)?;
    audit(
        &db,
        actor,
        NewEntry::new("keys.retire", Outcome::Allow)
            .reason(format!("master key version {version}")),
    )
    .await
}

/// The versions of a key file and what the database makes of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    /// Each version and how many case keys it wraps.
    pub versions: Vec<(u32, i64)>,
    /// The version new case keys are wrapped under; newer ones are staged.
    pub active: u32,
}

/// Versions in the key file, how many case keys each wraps, which is
/// active.
pub async fn status(config: &Config) -> Result<KeyStatus, RotationError> {
    let path = key_file(config)?;
    let keys = LocalMasterKeys::load(path)?;
    let db = bootstrap::open_db(config).await?;
    let used = db::cases::key_versions(&db).await?;
    let active = db::master_keys::active_version(&db)
        .await?
        .unwrap_or(keys.current_version());
    let versions = keys
        .versions()
        .into_iter()
        .map(|v| {
            (
                v,
                used.iter()
                    .find(|(u, _)| *u == v)
                    .map(|(_, n)| *n)
                    .unwrap_or(0),
            )
        })
        .collect();
    Ok(KeyStatus { versions, active })
}
