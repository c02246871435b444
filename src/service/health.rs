//! What readiness checks: the database, the object store and the audit log
//! — each by a write where a read would pass on a full disk or a read-only
//! database. Answers are reused for a moment, since the probe is anonymous
//! and each check commits a write.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::Services;
use crate::db;

/// How long one readiness answer is reused: a flood of probes must not
/// become a flood of fsyncs.
const READINESS_TTL: Duration = Duration::from_secs(1);

/// The result of one readiness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    pub database: bool,
    pub object_store: bool,
    pub audit_log: bool,
}

impl Checks {
    pub fn ready(&self) -> bool {
        self.database && self.object_store && self.audit_log
    }
}

/// The last readiness answer and when it was computed.
#[derive(Default)]
pub struct Readiness {
    last: Mutex<Option<(Instant, Checks)>>,
}

impl Readiness {
    /// The current answer: reused if fresh, else checked now. Concurrent
    /// probes wait for one check.
    pub async fn check(&self, svc: &Services) -> Checks {
        let mut last = self.last.lock().await;
        if let Some((at, checks)) = last.as_ref()
            && at.elapsed() < READINESS_TTL
        {
            return *checks;
        }
        let checks = check(svc).await;
        *last = Some((Instant::now(), checks));
        checks
    }
}

async fn check(svc: &Services) -> Checks {
    let database = svc.db.ping().await.is_ok();
    let object_store = svc.store.check().await.is_ok();
    // The audit log is ready only if an entry could be committed now: its
    // tree holds exactly the entries (else every append is refused) — both
    // read in one statement, so an append committing in between cannot make
    // them look apart — and a write transaction goes through.
    let agree = matches!(db::audit::tree::disagreement(&svc.db).await, Ok(None));
    let audit_log = agree && svc.db.probe_write(svc.timestamp()).await.is_ok();
    Checks {
        database,
        object_store,
        audit_log,
    }
}
