//! What every handler shares: the services, the failure limiter, and the
//! readiness cache.

use std::sync::Arc;

use super::limiter::FailureLimiter;
use crate::audit::{NewEntry, RequestContext};
use crate::service::Services;
use crate::service::audit::{self, AuditError};
use crate::service::health::Readiness;

pub type AppState = Arc<AppContext>;

pub struct AppContext {
    pub services: Services,
    pub limiter: FailureLimiter,
    pub readiness: Readiness,
}

impl AppContext {
    pub fn new(services: Services, limiter: FailureLimiter) -> AppContext {
        AppContext {
            services,
            limiter,
            readiness: Readiness::default(),
        }
    }

    /// Records an entry on its own (denials, limiter summaries).
    pub async fn audit(&self, ctx: &RequestContext, entry: NewEntry) -> Result<(), AuditError> {
        audit::record(&self.services, ctx, entry).await
    }
}
