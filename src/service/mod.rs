//! The service layer: the business rules between HTTP and storage. Each
//! service owns its transactions and the audit entries that go with them,
//! and has one error enum; `http` parses requests, calls one function here
//! and maps its error (`http::error`). Services never see HTTP types.
//!
//! - [`principal`]: who is calling, resolved from a bearer token.
//! - [`cases`]: create, list, manifest, reissue the patient's token,
//!   crypto-shred; the patient's views of their case.
//! - [`centres`]: register, list, update, disable.
//! - [`grants`]: issue, list, revoke, and the one liveness rule
//!   ([`grants::authorize`], [`grants::check_live`]).
//! - [`downloads`]: open a granted file, lease its download budget, re-check
//!   and settle a running download.
//! - [`disclosures`]: the accounting of disclosures for a case (also the
//!   patient's access view).
//! - [`audit`]: writing an entry with its action (fail closed), the export,
//!   signed checkpoints and proofs.
//! - [`health`]: what readiness checks.
//! - [`release`]: releasing a centre's reply or a translation to the
//!   patient, and the patient's download of it.
//!
//! Uploads (tus) are their own service, `crate::upload`.

pub mod audit;
pub mod cases;
pub mod centres;
pub mod dicomweb;
pub mod disclosures;
pub mod downloads;
pub mod grants;
pub mod health;
pub mod principal;
pub mod release;

use std::sync::Arc;

use crate::clock::{SharedClock, Timestamp};
use crate::config::Config;
use crate::crypto::{CaseKey, Keyring};
use crate::db::Db;
use crate::db::cases::CaseRow;
use crate::store::ObjectStore;
use crate::upload::Uploads;

/// The rows the services hand to their callers, under the names the
/// callers use (handlers do not reach into `db`).
pub use crate::db::cases::CaseRow as Case;
pub use crate::db::files::Source;
pub use crate::db::uploads::{UploadRow as Upload, UploadState};

/// What every service needs: database, keyring (master key and what it
/// unwraps), clock, configuration, object store, and the upload service
/// (case deletion aborts uploads).
pub struct Services {
    pub db: Db,
    pub keyring: Keyring,
    pub clock: SharedClock,
    pub config: Arc<Config>,
    pub store: ObjectStore,
    pub uploads: Uploads,
    /// Signs the audit log's checkpoints.
    pub checkpoints: Arc<audit::checkpoints::Checkpoints>,
    /// Fragment lists of encapsulated pixel data walked recently
    /// (DICOMweb frames), bounded.
    pub fragments: dicomweb::FragmentCache,
}

/// A case key that does not unwrap: a wrong master key or a tampered row.
/// Ours, not the caller's; each service maps it to its internal error.
#[derive(Debug, thiserror::Error)]
#[error("case {0}: key does not unwrap (wrong master key or tampered row)")]
pub struct KeyUnavailable(pub crate::ids::CaseId);

impl Services {
    /// Now, as stored and compared.
    pub fn timestamp(&self) -> Timestamp {
        self.clock.timestamp()
    }

    /// The case's key, unwrapped under the master key.
    pub fn case_key(&self, case: &CaseRow) -> Result<CaseKey, KeyUnavailable> {
        self.keyring
            .case_key(&case.case_id, &case.wrapped_key)
            .map_err(|_| KeyUnavailable(case.case_id.clone()))
    }
}
