//! Typed path ids. An id is parsed once, here, by its own
//! `Deserialize`; a malformed one is answered 404 — the same answer as an
//! unknown one, so a probe learns nothing from the shape — and audited as
//! a denial of the endpoint's action where the route audits its denials.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::endpoint::Endpoint;
use super::error::ApiError;
use super::state::AppState;
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::ids::{CaseId, CentreId, FileId, GrantId, UploadId};
use crate::service::principal::Principal;

/// An id that can stand in a route's path.
pub trait PathId: DeserializeOwned + Send + 'static {
    /// The audit reason for a malformed one; `None`: not audited (tus
    /// answers an unknown upload 404 without an entry, too).
    const MALFORMED: Option<&'static str>;
}

impl PathId for CaseId {
    const MALFORMED: Option<&'static str> = Some("malformed case id");
}

impl PathId for GrantId {
    const MALFORMED: Option<&'static str> = Some("malformed grant id");
}

/// A malformed centre id is recorded like an unknown one.
impl PathId for CentreId {
    const MALFORMED: Option<&'static str> = Some("no such centre");
}

impl PathId for FileId {
    const MALFORMED: Option<&'static str> = Some("malformed file id");
}

impl PathId for UploadId {
    const MALFORMED: Option<&'static str> = None;
}

/// The one id in a route's path.
#[derive(Debug)]
pub struct Id<T>(pub T);

impl<T: PathId> FromRequestParts<AppState> for Id<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(Id(id)),
            Err(_) => {
                if let Some(reason) = T::MALFORMED {
                    audit_malformed(parts, state, reason).await?;
                }
                Err(ApiError::NotFound)
            }
        }
    }
}

/// The denial entry for a malformed id: the endpoint's action, and for a
/// centre the grant it called under.
async fn audit_malformed(
    parts: &Parts,
    state: &AppState,
    reason: &'static str,
) -> Result<(), ApiError> {
    let action = parts
        .extensions
        .get::<Endpoint>()
        .and_then(|e| e.spec().action);
    let (Some(action), Some(ctx)) = (action, parts.extensions.get::<RequestContext>()) else {
        return Ok(());
    };
    let mut entry = NewEntry::new(action, Outcome::Deny).reason(reason);
    if let Some(Principal::Centre { grant, centre }) = parts.extensions.get::<Principal>() {
        entry = entry
            .case(&grant.case_id)
            .centre(&centre.centre_id)
            .grant(&grant.grant_id);
    }
    Ok(state.audit(ctx, entry).await?)
}
