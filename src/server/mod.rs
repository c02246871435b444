//! The application: built from a config (binding both listeners, so port 0
//! works and the real addresses are known), then run until a shutdown
//! future completes. The binary and the tests build it the same way.

pub mod limiter_summaries;
pub mod listener;
pub mod proxy_protocol;
pub mod shares;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::bootstrap::{self, BootstrapTokens, StartError};
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, StorageBackend};
use crate::crypto::Keyring;
use crate::db::Db;
use crate::http::state::{AppContext, AppState};
use crate::http::{self, limiter::FailureLimiter};
use crate::service::Services;
use crate::service::audit::checkpoints::{self, Checkpoints};
use crate::store::{FsStore, ObjectStore, S3Store};
use crate::tls::server_config;
use crate::upload::{UploadRegistry, Uploads};
use listener::ListenerLimits;

/// The longest the server waits for its last checkpoint at shutdown (the
/// copy alone may take `checkpoints::COPY_TIMEOUT`).
const FINAL_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long shutdown waits for cut uploads to take their last durable
/// point.
const UPLOADS_SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Application {
    main: TcpListener,
    centre: TcpListener,
    main_tls: Arc<rustls::ServerConfig>,
    centre_tls: Arc<rustls::ServerConfig>,
    main_router: Router,
    centre_router: Router,
    limits: ListenerLimits,
    state: AppState,
    bootstrap_tokens: Option<BootstrapTokens>,
    generated_ca: Option<std::path::PathBuf>,
    uploads: Uploads,
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { key, addr, source })
}

/// Opens the database for serving: migrated, download leases of an earlier
/// run settled, the first start's operator tokens minted.
async fn open_db(
    config: &Config,
    clock: &SharedClock,
    created_keys: &[std::path::PathBuf],
) -> Result<(Db, Option<BootstrapTokens>), StartError> {
    let db = bootstrap::open_db(config).await?;
    let db_error = |source| StartError::Db {
        url: crate::db::redacted_url(&config.database.url),
        source,
    };
    // A key file created by this start, for a database that was set up
    // before (a replica or a restored host without its key file): the new
    // key could open nothing the database holds, and cases created with it
    // nothing the others could. Remove it and stop.
    if let Some(created) = created_keys.first()
        && bootstrap::is_bootstrapped(&db).await.map_err(db_error)?
    {
        for path in created_keys {
            let _ = std::fs::remove_file(path);
        }
        return Err(StartError::KeyMissing(created.clone()));
    }
    // Downloads that were running when an earlier run of this gateway
    // died: their leases are settled at the progress they recorded, so
    // they can be continued. (Only `serve` does this: another command
    // on the same database must not end a running gateway's leases.) On
    // PostgreSQL other replicas may be serving downloads right now: only
    // leases whose heartbeat stopped (their gateway died) are settled.
    let stale_before = match db.backend() {
        crate::db::Backend::Sqlite => None,
        crate::db::Backend::Postgres => {
            Some(clock.now().unix_timestamp() - crate::service::downloads::LEASE_TTL_SECS)
        }
    };
    let settled = crate::db::grants::settle_orphaned_leases(&db, stale_before)
        .await
        .map_err(db_error)?;
    if settled > 0 {
        tracing::info!(settled, "settled download leases left by an earlier run");
    }
    let bootstrap_tokens = bootstrap::bootstrap_tokens(&db).await.map_err(db_error)?;
    Ok((db, bootstrap_tokens))
}

impl ListenerLimits {
    fn from_config(config: &Config) -> ListenerLimits {
        ListenerLimits {
            max_connections: config.limits.max_connections,
            max_connections_per_address: config.limits.connections_per_address(),
            handshake_timeout: Duration::from_secs(config.limits.tls_handshake_timeout_secs),
            header_read_timeout: Duration::from_secs(config.limits.header_read_timeout_secs),
            shutdown_grace: Duration::from_secs(config.server.shutdown_grace_secs),
        }
    }
}

impl Application {
    pub async fn build(config: Config) -> Result<Application, StartError> {
        Application::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        config: Config,
        clock: SharedClock,
    ) -> Result<Application, StartError> {
        config.validate()?;
        bootstrap::prepare_dirs(&config)?;
        let created_keys = bootstrap::missing_key_files(&config);
        let kek = bootstrap::master_keys(&config)?;
        let audit_signer = bootstrap::audit_signer(&config)?;
        let (identity, generated_ca) = bootstrap::tls_identity(&config)?;
        let main_tls = server_config::main_listener(&identity)?;
        let centre_tls = server_config::centre_listener(&identity)?;
        let store = open_store(&config)?;
        // Bind before the first-start tokens are minted: a start that cannot
        // serve must not consume the only printing of those tokens.
        let main = bind("server.listen", config.server.listen).await?;
        let centre = bind("server.centre_listen", config.server.centre_listen).await?;
        let (db, bootstrap_tokens) = open_db(&config, &clock, &created_keys).await?;
        let limits = ListenerLimits::from_config(&config);
        let config = Arc::new(config);
        let uploads = Uploads {
            db: db.clone(),
            store: store.clone(),
            kek: kek.clone(),
            clock: clock.clone(),
            config: config.clone(),
            registry: Arc::new(UploadRegistry::default()),
        };
        let services = Services {
            db,
            keyring: Keyring::new(kek),
            clock,
            config: config.clone(),
            store,
            uploads: uploads.clone(),
            checkpoints: Arc::new(Checkpoints::new(audit_signer, &config)),
            fragments: Default::default(),
        };
        let limiter = FailureLimiter::new(config.limits.auth_failures_per_minute);
        let state = Arc::new(AppContext::new(services, limiter));
        let main_router = http::router(state.clone());
        let centre_router = http::centre_router(state.clone());
        Ok(Application {
            main,
            centre,
            main_tls,
            centre_tls,
            main_router,
            centre_router,
            limits,
            state,
            bootstrap_tokens,
            generated_ca,
            uploads,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.main
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn centre_addr(&self) -> SocketAddr {
        self.centre
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The first-start operator tokens, once.
    pub fn take_bootstrap_tokens(&mut self) -> Option<BootstrapTokens> {
        self.bootstrap_tokens.take()
    }

    /// The upload service (tests drive its sweeper directly).
    pub fn uploads(&self) -> Uploads {
        self.uploads.clone()
    }

    /// The development CA written at this start, if any.
    pub fn generated_ca(&self) -> Option<&std::path::Path> {
        self.generated_ca.as_deref()
    }

    /// Serves both listeners until `shutdown` completes, then drains.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let sweeper = tokio::spawn(sweep_uploads(self.uploads.clone(), stop_rx.clone()));
        let summaries = tokio::spawn(limiter_summaries::run(self.state.clone(), stop_rx.clone()));
        let state = self.state.clone();
        let checkpointer_stop = stop_rx.clone();
        let checkpointer =
            tokio::spawn(async move { checkpoints::run(&state.services, checkpointer_stop).await });
        let proxies: Arc<[crate::config::IpNetwork]> = self
            .state
            .services
            .config
            .server
            .trusted_proxies
            .clone()
            .into();
        let main = listener::serve(
            "main",
            self.main,
            self.main_tls,
            self.main_router,
            self.limits,
            proxies.clone(),
            stop_rx.clone(),
        );
        let centre = listener::serve(
            "centre",
            self.centre,
            self.centre_tls,
            self.centre_router,
            self.limits,
            proxies,
            stop_rx,
        );
        tokio::join!(main, centre);
        settle_uploads(&self.uploads, sweeper).await;
        let _ = summaries.await;
        limiter_summaries::flush(&self.state).await;
        let _ = checkpointer.await;
        // The last entries of this run get signed before it ends — but a
        // stuck database or copy never holds the shutdown.
        let last = checkpoints::current(&self.state.services);
        match tokio::time::timeout(FINAL_CHECKPOINT_TIMEOUT, last).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "final audit checkpoint could not be made"),
            Err(_) => tracing::error!("final audit checkpoint timed out; shutting down without it"),
        }
    }
}

/// After the listeners ended: the upload sweep and the PATCHes cut by
/// the closing connections finish what they are doing, each within
/// [`UPLOADS_SETTLE_TIMEOUT`].
async fn settle_uploads(uploads: &Uploads, sweeper: tokio::task::JoinHandle<()>) {
    // A running sweep stops before its next upload; the one it is on
    // is finished.
    if tokio::time::timeout(UPLOADS_SETTLE_TIMEOUT, sweeper)
        .await
        .is_err()
    {
        tracing::warn!("upload sweep still running at shutdown");
    }
    // Cut PATCHes run on as tasks of their own: their last durable
    // point (and its audit entry) and the release of their lease must
    // come before the last checkpoint and the end of the process, or
    // the bytes they received are lost and other replicas see the
    // upload locked until its lease expires.
    if !uploads.registry.idle_within(UPLOADS_SETTLE_TIMEOUT).await {
        tracing::warn!(
            "uploads still writing at shutdown; they resume from their last durable point"
        );
    }
}

/// The configured object store backend.
fn open_store(config: &Config) -> Result<ObjectStore, StartError> {
    match (config.storage.backend, &config.storage.s3) {
        (StorageBackend::S3, Some(s3)) => {
            S3Store::open(s3)
                .map(ObjectStore::S3)
                .map_err(|e| StartError::Store {
                    path: "storage.s3".into(),
                    source: std::io::Error::other(e.to_string()),
                })
        }
        _ => {
            let root = config.fs_root();
            FsStore::open(&root)
                .map(ObjectStore::Fs)
                .map_err(|source| StartError::Store { path: root, source })
        }
    }
}

/// Expires stale uploads and finishes interrupted completions, once a
/// minute (and once at start, to pick up work a crash left).
async fn sweep_uploads(uploads: Uploads, mut stop: watch::Receiver<bool>) {
    loop {
        let stopping = || *stop.borrow();
        match uploads.sweep_until(&stopping).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(uploads = n, "upload sweep"),
            Err(e) => tracing::warn!(error = %e, "upload sweep failed"),
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}
