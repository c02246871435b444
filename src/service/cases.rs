//! Cases: created by a coordinator with a fresh case key and a patient
//! upload token; listed; read as a manifest (by the coordinator, with the
//! reference, or by the patient); the patient's token reissued; deleted by
//! crypto-shredding (the wrapped case key is destroyed, grants revoked,
//! uploads aborted, objects removed as housekeeping).

use super::audit::{self, AuditError};
use super::disclosures::{self, Disclosure};
use super::{KeyUnavailable, Services};
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::clock::Timestamp;
use crate::db::cases::{CaseRow, CaseSummary, NewCase};
use crate::db::{self, DbError};
use crate::ids::CaseId;
use crate::manifest::{self, CASE_REFERENCE, Manifest, ManifestError, View};
use crate::token::{SecretToken, TokenKind};

const MAX_REFERENCE_CHARS: usize = 256;

/// The case service's one error.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Key(#[from] KeyUnavailable),
    /// The database names an active master key version this gateway's key
    /// file lacks (a rotation activated before the file reached it).
    #[error(
        "master key version {0} is active but not in this gateway's key file; copy the key file from where `keys rotate --stage` ran"
    )]
    KeyVersionMissing(u32),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A patient's upload token and until when it may upload.
pub struct UploadLink {
    pub token: SecretToken,
    pub expires_at: Timestamp,
}

fn validate_reference(r: &str) -> Result<(), CaseError> {
    if r.chars().count() > MAX_REFERENCE_CHARS || r.chars().any(char::is_control) {
        return Err(CaseError::BadRequest(format!(
            "reference must be at most {MAX_REFERENCE_CHARS} characters without control characters"
        )));
    }
    Ok(())
}

/// A fresh upload token and the end of its upload period.
fn new_upload_link(svc: &Services, now: Timestamp) -> UploadLink {
    UploadLink {
        token: SecretToken::generate(TokenKind::Upload),
        expires_at: now.plus_secs(svc.config.uploads.token_ttl_secs),
    }
}

/// Opens a case: a fresh case key (stored wrapped under the master key),
/// the coordinator's reference sealed under it, an upload token.
pub async fn create(
    svc: &Services,
    ctx: &RequestContext,
    reference: Option<String>,
) -> Result<(CaseId, UploadLink), CaseError> {
    if let Some(r) = &reference {
        validate_reference(r)?;
    }
    let case_id = CaseId::generate();
    let active = db::master_keys::active_version(&svc.db).await?;
    let (key, wrapped) = svc
        .keyring
        .new_case_key_under(&case_id, active)
        .ok_or(CaseError::KeyVersionMissing(active.unwrap_or(0)))?;
    let sealed_reference = reference
        .as_ref()
        .map(|r| key.seal_field(&case_id, CASE_REFERENCE, "", r.as_bytes()));
    let now = svc.timestamp();
    let link = new_upload_link(svc, now);
    let mut tx = audit::begin(svc).await?;
    db::cases::insert(
        &mut tx,
        &NewCase {
            case_id: &case_id,
            created_at: now,
            wrapped_key: &wrapped,
            reference_sealed: sealed_reference.as_deref(),
            upload_token_hash: &link.token.hash(),
            upload_expires_at: link.expires_at,
        },
    )
    .await?;
    let entry = NewEntry::new("case.create", Outcome::Allow).case(&case_id);
    audit::commit(svc, tx, ctx, entry).await?;
    Ok((case_id, link))
}

pub async fn list(svc: &Services, ctx: &RequestContext) -> Result<Vec<CaseSummary>, CaseError> {
    let cases = db::cases::list(&svc.db).await?;
    audit::record(svc, ctx, NewEntry::new("case.list", Outcome::Allow)).await?;
    Ok(cases)
}

/// Audits `action` on `case_id` as denied because there is no such case.
async fn no_such_case(
    svc: &Services,
    ctx: &RequestContext,
    action: &'static str,
    case_id: &CaseId,
) -> CaseError {
    let entry = NewEntry::new(action, Outcome::Deny)
        .case(case_id)
        .reason("no such case");
    match audit::record(svc, ctx, entry).await {
        Ok(()) => CaseError::NotFound,
        Err(e) => e.into(),
    }
}

/// The coordinator's manifest of a case, with its reference.
pub async fn manifest(
    svc: &Services,
    ctx: &RequestContext,
    case_id: &CaseId,
) -> Result<Manifest, CaseError> {
    let Some(case) = db::cases::get(&svc.db, case_id).await? else {
        return Err(no_such_case(svc, ctx, "case.read", case_id).await);
    };
    let key = svc.case_key(&case)?;
    let manifest = manifest::build(&svc.db, &key, &case, &View::Coordinator).await?;
    let entry = NewEntry::new("case.read", Outcome::Allow).case(case_id);
    audit::record(svc, ctx, entry).await?;
    Ok(manifest)
}

/// Replaces the patient's upload token (the old one stops working) and
/// starts a new upload period.
pub async fn reissue_upload_token(
    svc: &Services,
    ctx: &RequestContext,
    case_id: &CaseId,
) -> Result<UploadLink, CaseError> {
    let action = "case.upload_token.reissue";
    let link = new_upload_link(svc, svc.timestamp());
    let mut tx = audit::begin(svc).await?;
    let hash = link.token.hash();
    if !db::cases::set_upload_token(&mut tx, case_id, &hash, link.expires_at).await? {
        drop(tx);
        return Err(no_such_case(svc, ctx, action, case_id).await);
    }
    let entry = NewEntry::new(action, Outcome::Allow).case(case_id);
    audit::commit(svc, tx, ctx, entry).await?;
    Ok(link)
}

/// Crypto-shreds a case: its wrapped key is destroyed and its grants
/// revoked in one audited transaction, so the ciphertext is unreadable
/// from then on. Aborting its uploads and removing its objects afterwards
/// is housekeeping: a failure is audited, not fatal.
pub async fn delete(
    svc: &Services,
    ctx: &RequestContext,
    case_id: &CaseId,
) -> Result<(), CaseError> {
    let unfinished = db::uploads::active_for_case(&svc.db, case_id).await?;
    let mut tx = audit::begin(svc).await?;
    let now = svc.timestamp();
    if !db::cases::shred(&mut tx, case_id, now).await? {
        drop(tx);
        return Err(no_such_case(svc, ctx, "case.delete", case_id).await);
    }
    let revoked =
        db::grants::revoke_where(&mut tx, "case_id", case_id.as_str(), now, "case deleted").await?;
    let entry = NewEntry::new("case.delete", Outcome::Allow)
        .case(case_id)
        .reason(format!("case key destroyed; {revoked} grants revoked"));
    audit::commit(svc, tx, ctx, entry).await?;
    svc.uploads.abort_case(&unfinished).await;
    if let Err(e) = svc.store.delete_case(case_id).await {
        tracing::error!(case_id = %case_id, error = %e, "objects of a shredded case not deleted");
        let entry = NewEntry::new("case.delete.objects", Outcome::Error)
            .case(case_id)
            .reason(e.to_string());
        audit::record(svc, ctx, entry).await?;
    }
    Ok(())
}

/// The patient's manifest of their case (without the reference).
pub async fn patient_manifest(
    svc: &Services,
    ctx: &RequestContext,
    case: &CaseRow,
) -> Result<Manifest, CaseError> {
    let key = svc.case_key(case)?;
    let manifest = manifest::build(&svc.db, &key, case, &View::Patient).await?;
    let entry = NewEntry::new("patient.case.read", Outcome::Allow).case(&case.case_id);
    audit::record(svc, ctx, entry).await?;
    Ok(manifest)
}

/// Who (centre name, country) downloaded which of the case's files, when:
/// the same downloads, one per row, as the accounting of disclosures
/// (`disclosures::downloads` says what a row is) — of the files the
/// patient sees: its own uploads and those released to it, never a reply
/// or a coordinator's document before its release.
pub async fn patient_access(
    svc: &Services,
    ctx: &RequestContext,
    case: &CaseRow,
) -> Result<Vec<Disclosure>, CaseError> {
    let visible: std::collections::HashSet<String> =
        db::files::list_for_case(&svc.db, &case.case_id)
            .await?
            .iter()
            .filter(|row| View::Patient.shows(row))
            .map(|row| row.file_id.to_string())
            .collect();
    let mut accesses = disclosures::for_case(svc, &case.case_id).await?;
    accesses.retain(|a| visible.contains(&a.download.file_id));
    let entry = NewEntry::new("patient.access.read", Outcome::Allow).case(&case.case_id);
    audit::record(svc, ctx, entry).await?;
    Ok(accesses)
}
