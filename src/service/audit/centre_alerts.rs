//! Alerts about reviewing centres asking for more than they were given:
//! - `alert.outside_grant`: a file id that is not in the centre's grant
//!   (answered 404 like an unknown id). Once per grant per
//!   [`REPEAT_WINDOW_SECS`]; every such request is in the log as its own
//!   denial anyway.
//! - `alert.over_download`: a file of a grant charged more than twice its
//!   size (served, or being sent: a third whole copy asked for), or asked
//!   for again after the grant's downloads of it were used up. Once per
//!   grant and file: one whole copy is what a review needs, a second may be
//!   a re-fetch; beyond that, or beyond what the grant allows, a compliance
//!   officer should know.
//! - `alert.disabled_centre`: a refused request on the centre listener
//!   that presented the certificate of a disabled centre. Once per centre
//!   per [`REPEAT_WINDOW_SECS`].
//!
//! Each is raised after the request's own entry is written, and never
//! changes its answer.

use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::db;
use crate::db::audit::AlertKey;
use crate::db::centres::CentreRow;
use crate::db::grants::GrantRow;
use crate::ids::FileId;
use crate::service::Services;

use super::alerts::raise_once;

/// Repeats of an alert about the same grant or centre within this long
/// after it are not raised again (an hour).
pub const REPEAT_WINDOW_SECS: u64 = 3600;

/// Who raises these alerts (`system:downloads`, `system:centres`).
const DOWNLOADS: &str = "downloads";
const CENTRES: &str = "centres";

fn about(kind: &'static str, grant: &GrantRow, centre: &CentreRow) -> NewEntry {
    NewEntry::new(kind, Outcome::Error)
        .case(&grant.case_id)
        .centre(&centre.centre_id)
        .grant(&grant.grant_id)
}

/// The start of the repeat window that ends now.
fn window_start(svc: &Services) -> crate::clock::Timestamp {
    let now = svc.timestamp();
    now.plus(time::Duration::seconds(-(REPEAT_WINDOW_SECS as i64)))
}

/// A centre asked under `grant` for `file_id`, which is not in it.
pub async fn outside_grant(
    svc: &Services,
    ctx: &RequestContext,
    (grant, centre): (&GrantRow, &CentreRow),
    file_id: &FileId,
) {
    let reason = format!(
        "centre {} asked under grant {} for file {file_id}, which is not in the grant (answered 404); further such requests under this grant within {} s are not alerted again (each is in the log as a denial)",
        centre.centre_id, grant.grant_id, REPEAT_WINDOW_SECS
    );
    let entry = about("alert.outside_grant", grant, centre)
        .file(file_id)
        .reason(reason);
    let key = AlertKey {
        action: "alert.outside_grant",
        grant_id: Some(grant.grant_id.to_string()),
        since: Some(window_start(svc)),
        ..Default::default()
    };
    raise_once(svc, DOWNLOADS, Some(ctx), entry, &key).await;
}

fn over_download_key(grant: &GrantRow, file_id: &FileId) -> AlertKey {
    AlertKey {
        action: "alert.over_download",
        grant_id: Some(grant.grant_id.to_string()),
        file_id: Some(file_id.to_string()),
        ..Default::default()
    }
}

/// A download of `file_id` was refused: the grant's downloads of it are
/// used up.
pub async fn download_exhausted(
    svc: &Services,
    ctx: &RequestContext,
    (grant, centre): (&GrantRow, &CentreRow),
    file_id: &FileId,
) {
    let reason = format!(
        "centre {} asked for file {file_id} under grant {} after the grant's downloads of it were used up (max_downloads {}); refused with 403",
        centre.centre_id, grant.grant_id, grant.max_downloads
    );
    let entry = about("alert.over_download", grant, centre)
        .file(file_id)
        .reason(reason);
    let key = over_download_key(grant, file_id);
    raise_once(svc, DOWNLOADS, Some(ctx), entry, &key).await;
}

/// A download of `file_id` (`size` plaintext bytes) is about to be let
/// through, charging `upcoming` more bytes: alerts once if the bytes
/// charged for it under the grant would then exceed twice its size.
pub async fn download_starting(
    svc: &Services,
    ctx: &RequestContext,
    (grant, centre): (&GrantRow, &CentreRow),
    file_id: &FileId,
    size: u64,
    upcoming: i64,
) {
    let charged = match db::grants::charged(&svc.db, &grant.grant_id, file_id).await {
        Ok(c) => (c.max(0) + upcoming.max(0)) as u64,
        Err(e) => {
            tracing::error!(error = %e, "cannot read a file's charged bytes for the over-download alert");
            return;
        }
    };
    if size == 0 || charged <= 2 * size {
        return;
    }
    let reason = format!(
        "centre {} has been served, or is about to be sent, {charged} bytes in all of file {file_id} under grant {}: more than twice its size of {size} bytes (max_downloads {})",
        centre.centre_id, grant.grant_id, grant.max_downloads
    );
    let entry = about("alert.over_download", grant, centre)
        .file(file_id)
        .reason(reason);
    let key = over_download_key(grant, file_id);
    raise_once(svc, DOWNLOADS, Some(ctx), entry, &key).await;
}

/// A request on the centre listener was refused: if its client
/// certificate is a disabled centre's, that is an alert.
pub async fn certificate_refused(svc: &Services, ctx: &RequestContext) {
    let Some(fingerprint) = &ctx.client_cert_sha256 else {
        return;
    };
    let centre = match db::centres::find_by_cert(&svc.db, fingerprint).await {
        Ok(Some(c)) if c.disabled_at.is_some() => c,
        Ok(_) => return,
        Err(e) => {
            tracing::error!(error = %e, "cannot look up a refused client certificate");
            return;
        }
    };
    let disabled_at = centre
        .disabled_at
        .map(|t| t.to_string())
        .unwrap_or_default();
    let reason = format!(
        "a request presented the client certificate {fingerprint} of centre {}, disabled at {disabled_at}; refused; further ones within {} s are not alerted again",
        centre.centre_id, REPEAT_WINDOW_SECS
    );
    let entry = NewEntry::new("alert.disabled_centre", Outcome::Error)
        .centre(&centre.centre_id)
        .reason(reason);
    let key = AlertKey {
        action: "alert.disabled_centre",
        centre_id: Some(centre.centre_id.to_string()),
        since: Some(window_start(svc)),
        ..Default::default()
    };
    raise_once(svc, CENTRES, Some(ctx), entry, &key).await;
}
