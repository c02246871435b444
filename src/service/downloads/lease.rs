//! A running download's lease on its file's budget: its progress recorded
//! and its grant re-checked while it runs, settled at what was sent when it
//! ends.

use super::Budget;
use crate::audit::{NewEntry, RequestContext};
use crate::db;
use crate::ids::GrantId;
use crate::service::Services;
use crate::service::audit;
use crate::service::grants::{self, GrantError, NotLive};

/// A download lease without a heartbeat for this long belongs to a gateway
/// that died; its bytes are settled at its last recorded progress. A live
/// download beats at every re-check while its client reads.
pub const LEASE_TTL_SECS: i64 = 120;

/// A running download's lease on its file's budget.
#[derive(Debug, Clone)]
pub struct Lease {
    pub(super) id: i64,
    pub(super) grant_id: GrantId,
    pub(super) budget: Budget,
}

impl Lease {
    /// Records progress (`sent` bytes handed to the connection) and checks
    /// the grant by the same rule as a first request. `Err` says why the
    /// download must stop.
    pub async fn recheck(&self, svc: &Services, sent: u64) -> Result<(), String> {
        let now = svc.now().unix_timestamp();
        let charge = self.budget.charge(sent);
        match db::grants::heartbeat(&svc.db, self.id, charge, now).await {
            Ok(true) => {}
            Ok(false) => return Err("download lease expired".into()),
            Err(e) => tracing::warn!(error = %e, "download progress not recorded"),
        }
        match grants::still_live(svc, &self.grant_id).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(NotLive::Revoked)) => Err("grant revoked during the download".into()),
            Ok(Err(NotLive::Expired)) => Err("grant expired during the download".into()),
            Ok(Err(NotLive::CaseDeleted)) => Err("case deleted during the download".into()),
            Err(e) => Err(e.to_string()),
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
        let result: Result<(), GrantError> = async {
            let mut tx = audit::begin(svc).await?;
            db::grants::settle(&mut tx, self.id, charge, !complete).await?;
            Ok(audit::commit(svc, tx, ctx, entry).await?)
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "download end not recorded");
        }
    }
}
