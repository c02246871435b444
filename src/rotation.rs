//! Master key rotation: add a version, then rewrap every case key under it.
//! Object data is never read or rewritten: file keys are wrapped under case
//! keys, which do not change. Each case is rewrapped in its own small
//! transaction with a compare-and-swap, so the run is resumable
//! (`--resume`) and safe while the gateway serves (it reloads the key file
//! when it changes). Old versions can be retired once nothing uses them.

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
    #[error("master key version {0} is the current version or does not exist")]
    NotRetirable(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
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

async fn audit(db: &Db, actor: &str, entry: NewEntry) -> Result<(), RotationError> {
    let ctx = RequestContext {
        actor: actor.into(),
        role: "operator".into(),
        ..Default::default()
    };
    db::audit::record(db, &ctx, Timestamp::now_utc(), &entry).await?;
    Ok(())
}

/// Adds a master key version (unless `resume`) and rewraps every open
/// case's key under the newest version.
pub async fn rotate(
    config: &Config,
    resume: bool,
    actor: &str,
) -> Result<RotationReport, RotationError> {
    let path = key_file(config)?;
    let mut keys = LocalMasterKeys::load(path)?;
    let db = bootstrap::open_db(config).await?;
    if !resume {
        keys.add_version();
        // The new version is on disk before any case key depends on it.
        write_keys(path, &keys)?;
    }
    let version = keys.current_version();
    let keyring = Keyring::new(std::sync::Arc::new(keys));
    let mut report = RotationReport {
        version,
        rewrapped: 0,
        skipped: 0,
    };
    loop {
        let batch = db::cases::keys_not_at(&db, version, BATCH).await?;
        if batch.is_empty() {
            break;
        }
        for (case_id, old) in batch {
            let new =
                keyring
                    .rewrap_case_key(&case_id, &old)
                    .map_err(|_| RotationError::CaseKey {
                        case_id: case_id.clone(),
                        version: old.kek_version,
                    })?;
            let mut tx = db.begin().await?;
            if db::cases::rewrap(&mut tx, &case_id, &old, &new).await? {
                tx.commit().await?;
                report.rewrapped += 1;
            } else {
                // Deleted or rewrapped meanwhile; the next query excludes it.
                report.skipped += 1;
            }
        }
    }
    audit(
        &db,
        actor,
        NewEntry::new("keys.rotate", Outcome::Allow).reason(format!(
            "master key version {version}; {} case keys rewrapped",
            report.rewrapped
        )),
    )
    .await?;
    Ok(report)
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
    if !keys.retire(version) {
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

/// Versions in the key file and how many case keys each wraps.
pub async fn status(config: &Config) -> Result<Vec<(u32, i64)>, RotationError> {
    let path = key_file(config)?;
    let keys = LocalMasterKeys::load(path)?;
    let db = bootstrap::open_db(config).await?;
    let used = db::cases::key_versions(&db).await?;
    Ok(keys
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
        .collect())
}
