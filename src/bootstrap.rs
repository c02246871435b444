//! Everything a start needs before it can listen: the data directory, the
//! master key, TLS certificates (development ones generated when absent),
//! the migrated database, and, on the very first start, the two operator
//! tokens that are printed once and stored only as hashes.

use std::path::{Path, PathBuf};

use crate::audit::note::{NoteError, NoteSigner};
use crate::audit::signing_key::{self, SigningKeyError};
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::clock::Timestamp;
use crate::config::Config;
use std::sync::Arc;

use crate::crypto::master::{MasterKeyError, MasterKeyFile};
use crate::crypto::{KeyEncryptionKey, LocalMasterKeys};
use crate::db::{self, Db, DbError, tokens::OperatorRole};
use crate::ids::OperatorTokenId;
use crate::tls::dev_certs::{self, DevCertError};
use crate::tls::server_config::{ServerIdentity, TlsSetupError};
use crate::token::{SecretToken, TokenKind};

/// Why the gateway cannot start. Each renders as one line naming the cause.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("refusing to start: {0}")]
    MasterKey(#[from] MasterKeyError),
    #[error("refusing to start: {0}")]
    DevCert(#[from] DevCertError),
    #[error("refusing to start: {0}")]
    AuditKey(#[from] SigningKeyError),
    #[error("audit.origin: {0}")]
    AuditOrigin(#[from] NoteError),
    #[error("refusing to start: {0}")]
    Tls(#[from] TlsSetupError),
    #[error("database ({url}): {source}")]
    Db { url: String, source: DbError },
    #[error(
        "refusing to start: {0} was missing and would have been created, but the database \
         was set up with keys already (copy the key file from the first gateway or the \
         backup; a new key could not open what the database holds)"
    )]
    KeyMissing(PathBuf),
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("object store {path}: {source}")]
    Store {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        key: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// The operator tokens minted on first start.
#[derive(Debug)]
pub struct BootstrapTokens {
    pub coordinator: SecretToken,
    pub compliance: SecretToken,
}

const BOOTSTRAPPED: &str = "bootstrap_tokens_issued";

/// Creates `dir` (mode 0700) if missing.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The database holds wrapped keys and sealed metadata: owner-only, like
/// the data directory. SQLite creates its WAL and shared-memory files with
/// the database file's mode, so creating that file 0600 before SQLite does
/// covers all three; files an older version created are tightened.
fn private_database_files(db: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if !db.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(db)?;
    }
    let mut files = vec![db.to_owned()];
    for suffix in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    for file in files.iter().filter(|f| f.exists()) {
        let mode = std::fs::metadata(file)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    Ok(())
}

/// The file path of a `sqlite:` URL, to create its directory.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

pub async fn open_db(config: &Config) -> Result<Db, StartError> {
    let url = &config.database.url;
    if let Some(parent) = sqlite_path(url)
        .as_deref()
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
    {
        ensure_private_dir(parent).map_err(|source| StartError::DataDir {
            path: parent.to_owned(),
            source,
        })?;
    }
    if let Some(path) = sqlite_path(url) {
        private_database_files(&path).map_err(|source| StartError::DataDir {
            path: path.clone(),
            source,
        })?;
    }
    let db_error = |source| StartError::Db {
        url: db::redacted_url(url),
        source,
    };
    let options = db::DbOptions::from(&config.database);
    let db = Db::open_with(url, &options).await.map_err(db_error)?;
    // Entries written before the audit tree existed join it now, before
    // anything appends.
    let added = db::audit::tree::catch_up(&db).await.map_err(db_error)?;
    if added > 0 {
        tracing::info!(added, "audit entries added to the audit tree");
    }
    // An entry the tree does not hold was written without an append:
    // it is never absorbed (and so never signed); every audited action is
    // refused until an officer has looked.
    if let Some((entries, leaves)) = db::audit::tree::disagreement(&db).await.map_err(db_error)? {
        tracing::error!(
            entries,
            tree_size = leaves,
            "ALERT: the audit log holds entries its tree does not (written behind the gateway's back) \
             or the tree is damaged; every audited action is refused and /readyz reports the audit log down"
        );
    }
    Ok(db)
}

/// The key-encryption key: from `keys.master_key` (environment) when set,
/// else the key file (created on first start, reloaded when rotated).
pub fn master_keys(config: &Config) -> Result<Arc<dyn KeyEncryptionKey>, StartError> {
    if let Some(secret) = &config.keys.master_key {
        let keys =
            LocalMasterKeys::parse(secret.expose()).map_err(|message| MasterKeyError::Format {
                path: "keys.master_key".into(),
                message,
            })?;
        return Ok(Arc::new(keys));
    }
    Ok(Arc::new(MasterKeyFile::open(&config.keys.master_key_file)?))
}

/// The audit checkpoint signer: the key at `audit.signing_key_file`
/// (created 0600 on first start, refused if others can read it), named
/// by the log's origin.
pub fn audit_signer(config: &Config) -> Result<NoteSigner, StartError> {
    let key = signing_key::load_or_create(&config.audit_signing_key_file())?;
    Ok(NoteSigner::new(&config.audit_origin(), key)?)
}

/// Prepares TLS: generates development certificates when none are
/// configured. Returns the identity and the CA path if one was generated.
pub fn tls_identity(config: &Config) -> Result<(ServerIdentity, Option<PathBuf>), StartError> {
    let host = dev_certs::host_of(&config.server.public_url);
    let generated = dev_certs::ensure(&config.tls.cert, &config.tls.key, host)?;
    Ok((
        ServerIdentity::load(&config.tls.cert, &config.tls.key)?,
        generated,
    ))
}

fn local_context(actor: &str) -> RequestContext {
    RequestContext {
        actor: actor.into(),
        role: "operator".into(),
        ..Default::default()
    }
}

/// Mints an operator token directly in the database (audited).
pub async fn create_operator_token(
    db: &Db,
    role: OperatorRole,
    actor: &str,
) -> Result<SecretToken, DbError> {
    let mut tx = db.begin().await?;
    let token = insert_operator_token(db, &mut tx, role, actor).await?;
    tx.commit().await?;
    Ok(token)
}

async fn insert_operator_token(
    db: &Db,
    tx: &mut db::Tx<'_>,
    role: OperatorRole,
    actor: &str,
) -> Result<SecretToken, DbError> {
    let now = Timestamp::now_utc();
    let token = SecretToken::generate(TokenKind::Operator);
    let id = OperatorTokenId::generate();
    db::tokens::insert(tx, &id, role, &token.hash(), now).await?;
    let entry = NewEntry::new("token.create", Outcome::Allow)
        .reason(format!("{} token {id}", role.as_str()));
    db::audit::append(db, tx, &local_context(actor), now, &entry)
        .await
        .map_err(|unavailable| unavailable.0)?;
    Ok(token)
}

/// The key files a start would create because they are missing: the
/// master key file (unless the key is given in the config) and the audit
/// signing key. Only a database's first start may create them.
pub fn missing_key_files(config: &Config) -> Vec<PathBuf> {
    let mut missing = Vec::new();
    if config.keys.master_key.is_none() && !config.keys.master_key_file.exists() {
        missing.push(config.keys.master_key_file.clone());
    }
    let signing = config.audit_signing_key_file();
    if !signing.exists() {
        missing.push(signing);
    }
    missing
}

/// Whether the database has had its first start (its first tokens minted).
pub async fn is_bootstrapped(db: &Db) -> Result<bool, DbError> {
    Ok(db.meta_get(BOOTSTRAPPED).await?.is_some())
}

/// On the first start only: one coordinator and one compliance token.
pub async fn bootstrap_tokens(db: &Db) -> Result<Option<BootstrapTokens>, DbError> {
    let mut tx = db.begin().await?;
    let done: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
        .bind(BOOTSTRAPPED)
        .fetch_optional(&mut *tx)
        .await?;
    if done.is_some() {
        return Ok(None);
    }
    let coordinator =
        insert_operator_token(db, &mut tx, OperatorRole::Coordinator, "system:bootstrap").await?;
    let compliance =
        insert_operator_token(db, &mut tx, OperatorRole::Compliance, "system:bootstrap").await?;
    Db::meta_set(&mut tx, BOOTSTRAPPED, &Timestamp::now_utc().to_string()).await?;
    tx.commit().await?;
    Ok(Some(BootstrapTokens {
        coordinator,
        compliance,
    }))
}

pub fn prepare_dirs(config: &Config) -> Result<(), StartError> {
    let dir = &config.server.data_dir;
    ensure_private_dir(dir).map_err(|source| StartError::DataDir {
        path: dir.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite://data/casegate.db"),
            Some(PathBuf::from("data/casegate.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:///var/lib/cg.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/cg.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }
}
