//! The database lease on an upload for gateways sharing one PostgreSQL
//! database: while a request on one replica writes an upload, a request
//! for it on any other replica is answered 423, as a second request on the
//! same gateway is (the in-process lock, `registry`). The holder renews it
//! while it works; a replica that dies stops renewing, and its lease
//! expires after `TTL` so the upload can be resumed elsewhere. A single
//! gateway on SQLite has no other writer, and takes none.
//!
//! The lease fences the store: a holder that lost it (another replica took
//! it over) or could not renew it for `TTL - MARGIN` (database unreachable)
//! stops writing before the next byte, and records a durable point only
//! in a transaction that finds the lease still its own (and locks it until
//! the commit). Expiry is by the database's clock, so replicas' clocks do
//! not matter; the holder's own deadline is by its monotonic clock from
//! before each renewal was sent, which is earlier than the database's. A
//! store write already in flight when the lease lapses (an S3 part, with
//! its retries) may still land later than the margin; it is never
//! recorded, and a part it replaces fails that upload's completion on its
//! ETag rather than corrupting the file.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::db::{self, Backend, Db, DbError};

/// How long a lease lasts unless renewed.
pub const TTL: Duration = Duration::from_secs(30);
/// How often a holder renews it.
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How long before the lease's expiry its holder stops writing.
const MARGIN: Duration = Duration::from_secs(10);

/// Held while a request writes an upload; released by [`Held::release`]
/// at the end of the request, or (a request cut short) when dropped.
pub struct UploadLease {
    /// The row and its renewal; none on SQLite.
    row: Option<LeaseRow>,
    fence: Fence,
}

/// Whether the request holding an upload may still write it.
#[derive(Clone, Default)]
pub struct Fence(Option<Arc<FenceState>>);

struct FenceState {
    origin: Instant,
    lost: AtomicBool,
    /// Milliseconds after `origin` until which writing is safe.
    valid_until: AtomicU64,
    /// The lease row, to confirm it in a commit's transaction.
    name: String,
    holder: String,
    db: Db,
}

impl FenceState {
    fn new(db: Db, name: String, holder: String) -> FenceState {
        FenceState {
            origin: Instant::now(),
            lost: AtomicBool::new(false),
            valid_until: AtomicU64::new(0),
            name,
            holder,
            db,
        }
    }

    /// The lease was taken or renewed by a query sent at `sent`.
    fn extend(&self, sent: Instant) {
        let until = sent.saturating_duration_since(self.origin) + TTL - MARGIN;
        self.valid_until
            .fetch_max(until.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Fence {
    /// `Err` once the lease was lost or went unrenewed too long: nothing
    /// more may be written to the upload's object by this request.
    pub fn check(&self) -> Result<(), super::UploadError> {
        let Some(state) = &self.0 else {
            return Ok(());
        };
        let now = state.origin.elapsed().as_millis() as u64;
        if state.lost.load(Ordering::Relaxed) || now >= state.valid_until.load(Ordering::Relaxed) {
            return Err(super::UploadError::LeaseLost);
        }
        Ok(())
    }

    /// The same check for the object writer, asked before every part,
    /// staging object and retry it starts (an S3 part can outlive many
    /// body frames); none without a lease.
    pub fn write_guard(&self) -> Option<crate::store::WriteGuard> {
        self.0.as_ref()?;
        let fence = self.clone();
        Some(Arc::new(move || fence.check().is_ok()))
    }

    /// Inside the transaction that commits a durable point: the lease is
    /// still this request's by the database, and its row stays locked until
    /// the commit, so no replica takes the upload over between this check
    /// and the recorded offset.
    pub async fn confirm(&self, tx: &mut db::Tx<'_>) -> Result<(), super::UploadError> {
        self.check()?;
        let Some(state) = &self.0 else {
            return Ok(());
        };
        let backend = state.db.backend();
        if !db::leases::held_in(tx, backend, &state.name, &state.holder).await? {
            state.lost.store(true, Ordering::Relaxed);
            return Err(super::UploadError::LeaseLost);
        }
        Ok(())
    }
}

struct LeaseRow {
    db: Db,
    name: String,
    holder: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl UploadLease {
    /// Takes the upload's lease: `Ok(None)` when another replica holds
    /// it; on SQLite (one gateway) a lease that is no row at all.
    pub async fn take(db: &Db, upload_id: &str) -> Result<Option<UploadLease>, DbError> {
        if db.backend() == Backend::Sqlite {
            return Ok(Some(UploadLease {
                row: None,
                fence: Fence::default(),
            }));
        }
        let name = format!("upload:{upload_id}");
        let holder = crate::hex::encode(&crate::random::array::<12>());
        let ttl = TTL.as_millis() as i64;
        let state = Arc::new(FenceState::new(db.clone(), name.clone(), holder.clone()));
        let sent = Instant::now();
        if !db::leases::acquire(db, &name, &holder, ttl).await? {
            return Ok(None);
        }
        state.extend(sent);
        let renewer = {
            let (db, name, holder) = (db.clone(), name.clone(), holder.clone());
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    let sent = Instant::now();
                    match db::leases::renew(&db, &name, &holder, ttl).await {
                        Ok(true) => state.extend(sent),
                        Ok(false) => {
                            tracing::error!(lease = %name, "upload lease lost to another holder");
                            state.lost.store(true, Ordering::Relaxed);
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(lease = %name, error = %e, "upload lease not renewed")
                        }
                    }
                }
            })
        };
        Ok(Some(UploadLease {
            row: Some(LeaseRow {
                db: db.clone(),
                name,
                holder,
                renewer,
            }),
            fence: Fence(Some(state)),
        }))
    }
}

impl LeaseRow {
    /// Gives the lease back before the request's answer goes out, so the
    /// client's next request (on any replica) finds it free.
    async fn release(mut self) {
        self.renewer.abort();
        if let Err(e) = db::leases::release(&self.db, &self.name, &self.holder).await {
            tracing::warn!(lease = %self.name, error = %e, "upload lease not released");
        }
        // Released: nothing left for Drop to do.
        self.holder.clear();
    }
}

impl Drop for LeaseRow {
    fn drop(&mut self) {
        self.renewer.abort();
        if self.holder.is_empty() {
            return;
        }
        let (db, name, holder) = (self.db.clone(), self.name.clone(), self.holder.clone());
        // Released at once so the next request (on any replica) need not
        // wait for the expiry; if this fails the lease simply expires.
        tokio::spawn(async move {
            if let Err(e) = db::leases::release(&db, &name, &holder).await {
                tracing::warn!(lease = %name, error = %e, "upload lease not released");
            }
        });
    }
}

/// Both locks on an upload: this gateway's and, on PostgreSQL, every
/// replica's.
pub struct Held {
    _lock: super::registry::UploadLock,
    lease: UploadLease,
}

impl Held {
    /// What tells the request when it must stop writing.
    pub fn fence(&self) -> Fence {
        self.lease.fence.clone()
    }

    /// Ends the hold at once (the database lease too): call it before
    /// answering, or a client's next PATCH may meet its own last one's
    /// lease still there (423).
    pub async fn release(mut self) {
        if let Some(row) = self.lease.row.take() {
            row.release().await;
        }
    }
}

impl super::Uploads {
    /// Holds the upload for one request, or `None` when another request
    /// (here or on another replica) holds it.
    pub async fn hold(&self, upload_id: &str) -> Result<Option<Held>, DbError> {
        let Some(lock) = self.registry.try_lock(upload_id) else {
            return Ok(None);
        };
        let Some(lease) = UploadLease::take(&self.db, upload_id).await? else {
            return Ok(None);
        };
        Ok(Some(Held { _lock: lock, lease }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_fence_closes_when_lost_or_unrenewed() {
        assert!(Fence::default().check().is_ok(), "no lease, no fence");
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&db::test_url(dir.path()).await).await.unwrap();
        let state = Arc::new(FenceState::new(db, "upload:u".into(), "h".into()));
        let fence = Fence(Some(state.clone()));
        assert!(fence.check().is_err(), "never taken");
        state.extend(state.origin);
        assert!(fence.check().is_ok(), "taken just now");
        // Renewed by a query sent before the one that took it: no shorter.
        state.extend(state.origin - Duration::from_secs(5));
        assert!(fence.check().is_ok());
        state.valid_until.store(0, Ordering::Relaxed);
        assert!(fence.check().is_err(), "TTL - MARGIN without renewal");
        state.extend(state.origin);
        state.lost.store(true, Ordering::Relaxed);
        assert!(fence.check().is_err(), "taken over");
    }
}
