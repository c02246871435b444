//! A running download's lease on its file's budget: its progress recorded
//! and its grant re-checked while it runs, settled at what was sent when it
//! ends.

use super::Budget;
use crate::audit::{NewEntry, RequestContext};
use crate::db::{self, DbError};
use crate::ids::GrantId;
use crate::service::Services;
use crate::service::audit;
use crate::service::grants::{self, GrantError, NotLive};

/// A download lease without a heartbeat for this long belongs to a gateway
/// that died; its bytes are settled at its last recorded progress. A live
/// download beats at every re-check while its client reads.
pub const LEASE_TTL_SECS: i64 = 120;

/// Why a running download stops before its end (the text is the audit
/// entry's reason).
#[derive(Debug, thiserror::Error)]
pub enum Stop {
    #[error("download lease expired")]
    LeaseExpired,
    #[error("grant revoked during the download")]
    Revoked,
    #[error("grant expired during the download")]
    Expired,
    #[error("case deleted during the download")]
    CaseDeleted,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A running download's lease on its file's budget.
#[derive(Debug, Clone)]
pub struct Lease {
    pub(super) id: db::grants::LeaseKey,
    pub(super) grant_id: GrantId,
    pub(super) budget: Budget,
}

impl Lease {
    /// Records progress (`sent` bytes handed to the connection) and checks
    /// the grant by the same rule as a first request. `Err` says why the
    /// download must stop.
    pub async fn recheck(&self, svc: &Services, sent: u64) -> Result<(), Stop> {
        let now = svc.timestamp().unix_seconds();
        let charge = self.budget.charge(sent);
        let delivered = i64::try_from(sent).unwrap_or(i64::MAX);
        match db::grants::heartbeat(&svc.db, self.id, (charge, delivered), now).await {
            Ok(true) => {}
            Ok(false) => return Err(Stop::LeaseExpired),
            Err(e) => tracing::warn!(error = %e, "download progress not recorded"),
        }
        grants::still_live(svc, &self.grant_id)
            .await?
            .map_err(|why| match why {
                NotLive::Revoked => Stop::Revoked,
                NotLive::Expired => Stop::Expired,
                NotLive::CaseDeleted => Stop::CaseDeleted,
            })
    }

    /// Records that a download started ahead of its turn (the next part of
    /// a WADO-RS retrieval, waiting while the part before it streams) is
    /// still wanted, before any byte of it is sent, so no other request
    /// settles it as a dead gateway's. `false` once the lease is gone.
    pub async fn keep_alive(&self, svc: &Services) -> bool {
        let now = svc.timestamp().unix_seconds();
        match db::grants::touch(&svc.db, self.id, now).await {
            Ok(alive) => alive,
            Err(e) => {
                tracing::warn!(error = %e, "waiting download's heartbeat not recorded");
                true
            }
        }
    }

    /// Ends the download: settles the lease at the bytes sent and writes
    /// the end (or cut) entry, in one transaction. A failure is logged; the
    /// lease is then settled later from its last heartbeat.
    pub async fn close(
        &self,
        svc: &Services,
        ctx: &RequestContext,
        entry: NewEntry,
        sent: u64,
        complete: bool,
    ) {
        let charge = self.budget.charge(sent);
        let delivered = i64::try_from(sent).unwrap_or(i64::MAX);
        let now = svc.timestamp().unix_seconds();
        let result: Result<(), GrantError> = async {
            let mut tx = audit::begin(svc).await?;
            let seq = audit::append(svc, &mut tx, ctx, &entry).await?;
            db::disclosures::set_end_entry(&mut tx, self.id, seq).await?;
            db::grants::settle(&mut tx, self.id, (charge, delivered), !complete, now).await?;
            Ok(audit::commit_appended(tx).await?)
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "download end not recorded");
        }
    }
}
