//! What every handler shares: database, key-encryption key, clock, config,
//! object store root, limiter; and the audit helpers that make an action
//! and its entry one transaction.

use std::sync::Arc;

use time::OffsetDateTime;

use super::error::ApiError;
use super::limiter::FailureLimiter;
use crate::audit::{NewEntry, RequestContext};
use crate::clock::{SharedClock, Timestamp};
use crate::config::Config;
use crate::crypto::KeyEncryptionKey;
use crate::db::{self, Db, Tx};
use crate::store::ObjectStore;
use crate::upload::Uploads;

pub type AppState = Arc<AppContext>;

pub struct AppContext {
    pub db: Db,
    pub kek: Arc<dyn KeyEncryptionKey>,
    pub clock: SharedClock,
    pub config: Arc<Config>,
    pub store: ObjectStore,
    pub limiter: FailureLimiter,
    pub uploads: Uploads,
    pub readiness: super::health::Readiness,
}

impl AppContext {
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Now, as stored and compared.
    pub fn timestamp(&self) -> Timestamp {
        self.clock.timestamp()
    }

    /// Begins the transaction an action and its audit entry share.
    pub async fn begin(&self) -> Result<Tx<'static>, ApiError> {
        self.db.begin().await.map_err(|e| {
            tracing::error!(error = %e, "cannot begin transaction");
            ApiError::AuditUnavailable
        })
    }

    /// Appends the entry to `tx` and commits both. If the entry cannot be
    /// written nothing is committed and the action is refused.
    pub async fn commit_audited(
        &self,
        mut tx: Tx<'_>,
        ctx: &RequestContext,
        entry: NewEntry,
    ) -> Result<(), ApiError> {
        if let Err(e) = db::audit::append(&mut tx, ctx, self.timestamp(), &entry).await {
            tracing::error!(error = %e, action = entry.action, "audit append failed; refusing action");
            return Err(ApiError::AuditUnavailable);
        }
        tx.commit().await.map_err(|e| {
            tracing::error!(error = %e, action = entry.action, "commit failed");
            ApiError::AuditUnavailable
        })
    }

    /// Records an entry on its own (denials, reads).
    pub async fn audit(&self, ctx: &RequestContext, entry: NewEntry) -> Result<(), ApiError> {
        let tx = self.begin().await?;
        self.commit_audited(tx, ctx, entry).await
    }
}
