//! WADO-RS over the grant's instances: which files a retrieval sends (each
//! then a counted download, started from what the retrieval already
//! holds), and metadata (headers, not counted, while the file can still be
//! downloaded).

use super::{Granted, Instance, METADATA, RETRIEVE, Scope, attributes, header, in_scope, record};
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::crypto::CaseKey;
use crate::db::centres::CentreRow;
use crate::db::grants::GrantRow;
use crate::service::Services;
use crate::service::audit;
use crate::service::downloads::{self, Ask, Download, Kind, PlainReader};
use crate::service::grants::GrantError;

/// The instances a WADO-RS retrieval of `scope` sends, each once, in
/// viewer order. Files whose downloads are used up are left out (the rest
/// of a series stays viewable; one entry names them); if that leaves
/// none, the retrieval is refused as exhausted. Each is then started with
/// [`start_part`] as its part begins.
pub async fn retrieval(
    svc: &Services,
    ctx: &RequestContext,
    grant: (&GrantRow, &CentreRow),
    scope: &Scope,
) -> Result<Granted, GrantError> {
    let mut granted = held(svc, ctx, grant, scope, RETRIEVE).await?;
    let max = grant.0.max_downloads;
    let used_up: Vec<&Instance> = granted
        .instances
        .iter()
        .filter(|i| i.file.downloads >= max)
        .collect();
    if !used_up.is_empty() {
        let ids: Vec<&str> = used_up.iter().map(|i| i.file.file_id.as_str()).collect();
        let reason = format!(
            "{}: downloads used up, left out: {}",
            scope.describe(),
            ids.join(", ")
        );
        let mut entry = NewEntry::new(RETRIEVE, Outcome::Deny).reason(reason);
        if let [only] = used_up.as_slice() {
            entry = entry.file(&only.file.file_id);
        }
        record(svc, ctx, grant, entry).await?;
        granted.instances.retain(|i| i.file.downloads < max);
        if granted.instances.is_empty() {
            return Err(GrantError::Exhausted);
        }
    }
    Ok(granted)
}

/// Starts the download of one instance of a retrieval: a plaintext
/// download of its whole file, counted and audited as `dicomweb.retrieve`,
/// from the file and case key the retrieval already holds.
pub async fn start_part(
    svc: &Services,
    ctx: &RequestContext,
    grant: (&GrantRow, &CentreRow),
    granted: &Granted,
    instance: &Instance,
) -> Result<Download, GrantError> {
    let what = (&granted.case_key, &instance.file);
    let kind = (Kind::Plaintext, RETRIEVE);
    downloads::start_file(svc, ctx, grant, what, kind, Ask::Range(Ok(None))).await
}

/// The instances in `scope`, refused as not found (audited under
/// `action`) when there are none.
async fn held(
    svc: &Services,
    ctx: &RequestContext,
    grant: (&GrantRow, &CentreRow),
    scope: &Scope,
    action: &'static str,
) -> Result<Granted, GrantError> {
    let granted = in_scope(svc, ctx, grant, scope, action).await?;
    if granted.instances.is_empty() {
        let reason = format!("{} is not in the grant", scope.describe());
        let entry = NewEntry::new(action, Outcome::Deny).reason(reason);
        record(svc, ctx, grant, entry).await?;
        return Err(GrantError::NotFound);
    }
    Ok(granted)
}

/// The instances whose metadata a request asks for: those in `scope`
/// whose downloads are not used up (metadata is patient data like the
/// file; it is not counted as a download, but it is not served once the
/// file can no longer be). Audited once for the request.
pub async fn metadata(
    svc: &Services,
    ctx: &RequestContext,
    grant: (&GrantRow, &CentreRow),
    scope: &Scope,
) -> Result<Granted, GrantError> {
    let mut granted = held(svc, ctx, grant, scope, METADATA).await?;
    let max = grant.0.max_downloads;
    granted.instances.retain(|i| i.file.downloads < max);
    if granted.instances.is_empty() {
        let reason = format!("{}: downloads used up", scope.describe());
        let entry = NewEntry::new(METADATA, Outcome::Deny).reason(reason);
        record(svc, ctx, grant, entry).await?;
        return Err(GrantError::Exhausted);
    }
    // One entry per file whose header (patient data) is disclosed, in one
    // transaction: the accounting names every file.
    let (grant_row, centre) = grant;
    let mut tx = audit::begin(svc).await?;
    for instance in &granted.instances {
        let reason = format!(
            "{}: header of instance {}",
            scope.describe(),
            instance.index.sop_instance_uid
        );
        let entry = NewEntry::new(METADATA, Outcome::Allow)
            .reason(reason)
            .case(&grant_row.case_id)
            .centre(&centre.centre_id)
            .grant(&grant_row.grant_id)
            .file(&instance.file.file_id);
        audit::append(svc, &mut tx, ctx, &entry).await?;
    }
    audit::commit_appended(tx).await?;
    Ok(granted)
}

/// An instance's header as DICOM JSON: every attribute before PixelData,
/// read from its object (bounded: at most `dicom::HEAD_BYTES`), and the
/// transfer syntax it is stored in.
pub async fn header_json(
    svc: &Services,
    case_key: &CaseKey,
    grant: (&GrantRow, &CentreRow),
    instance: &Instance,
) -> Result<serde_json::Value, GrantError> {
    let mut reader = PlainReader::open(svc, case_key, grant, &instance.file).await?;
    let (_, object) = header::read_head(&mut reader).await?.ok_or_else(|| {
        GrantError::Internal(format!("{}: header does not parse", instance.file.file_id))
    })?;
    let mut json = super::json::data_set(&object.into_inner());
    if let Some(map) = json.as_object_mut() {
        attributes::add_retrieval_hints(map, instance);
    }
    Ok(json)
}
