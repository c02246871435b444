//! The database lease on an upload for gateways sharing one PostgreSQL
//! database: while a request on one replica writes an upload, a request
//! for it on any other replica is answered 423, as a second request on the
//! same gateway is (the in-process lock, `registry`). The holder renews it
//! while it works; a replica that dies stops renewing, and its lease
//! expires after `TTL` so the upload can be resumed elsewhere. A single
//! gateway on SQLite has no other writer, and takes none.

use std::time::Duration;

use crate::db::{self, Backend, Db, DbError};

/// How long a lease lasts unless renewed.
pub const TTL: Duration = Duration::from_secs(30);
/// How often a holder renews it.
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// Held while a request writes an upload; released when dropped.
pub struct UploadLease {
    /// The row and its renewal; none on SQLite.
    _row: Option<LeaseRow>,
}

struct LeaseRow {
    db: Db,
    name: String,
    holder: String,
    renewer: tokio::task::JoinHandle<()>,
}

fn millis(clock: &crate::clock::SharedClock) -> i64 {
    let now = clock.now();
    now.unix_timestamp() * 1000 + i64::from(now.millisecond())
}

impl UploadLease {
    /// Takes the upload's lease: `Ok(None)` when another replica holds
    /// it; on SQLite (one gateway) a lease that is no row at all.
    pub async fn take(
        db: &Db,
        clock: &crate::clock::SharedClock,
        upload_id: &str,
    ) -> Result<Option<UploadLease>, DbError> {
        if db.backend() == Backend::Sqlite {
            return Ok(Some(UploadLease { _row: None }));
        }
        let name = format!("upload:{upload_id}");
        let holder = crate::hex::encode(&crate::random::array::<12>());
        let now = millis(clock);
        let ttl = TTL.as_millis() as i64;
        if !db::leases::acquire(db, &name, &holder, now, now + ttl).await? {
            return Ok(None);
        }
        let renewer = {
            let (db, name, holder, clock) =
                (db.clone(), name.clone(), holder.clone(), clock.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    let until = millis(&clock) + ttl;
                    match db::leases::renew(&db, &name, &holder, until).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::error!(lease = %name, "upload lease lost to another holder");
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
            _row: Some(LeaseRow {
                db: db.clone(),
                name,
                holder,
                renewer,
            }),
        }))
    }
}

impl Drop for LeaseRow {
    fn drop(&mut self) {
        self.renewer.abort();
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
    _lease: UploadLease,
}

impl super::Uploads {
    /// Holds the upload for one request, or `None` when another request
    /// (here or on another replica) holds it.
    pub async fn hold(&self, upload_id: &str) -> Result<Option<Held>, DbError> {
        let Some(lock) = self.registry.try_lock(upload_id) else {
            return Ok(None);
        };
        let Some(lease) = UploadLease::take(&self.db, &self.clock, upload_id).await? else {
            return Ok(None);
        };
        Ok(Some(Held {
            _lock: lock,
            _lease: lease,
        }))
    }
}
