//! Download grants: a coordinator issues one to a centre for some complete
//! files of a case, lists and revokes them; a centre is let in by
//! [`authorize`]. Whether a grant is still live is decided by one rule,
//! [`check_live`], at a centre's first request and again every few seconds
//! while its download runs.

use super::Services;
use super::audit::{self, AuditError};
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::clock::Timestamp;
use crate::db::centres::CentreRow;
use crate::db::files::Source;
use crate::db::grants::{GrantFile, GrantRow};
use crate::db::{self, DbError};
use crate::ids::{CaseId, CentreId, FileId, GrantId};
use crate::token::{SecretToken, TokenKind};

mod authorize;

pub use authorize::{Refusal, authorize};

/// Longest grant a coordinator can issue (30 days).
pub const MAX_EXPIRES_SECS: u64 = 30 * 24 * 3600;
/// Most downloads per file a grant can allow.
pub const MAX_DOWNLOADS: i64 = 100;

/// The grant service's one error.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication required")]
    Unauthenticated,
    #[error("a client certificate is required on this listener")]
    ClientCertificateRequired,
    #[error("the client certificate is not the one registered for this grant's centre")]
    CertificateMismatch,
    #[error("the grant has expired")]
    Expired,
    #[error("the grant was revoked")]
    Revoked,
    #[error("the grant's downloads of this file are used up")]
    Exhausted,
    #[error("range not satisfiable")]
    RangeNotSatisfiable(u64),
    #[error("storage is unavailable")]
    StorageUnavailable,
    /// Ours: a key or stored value that does not open.
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Db(#[from] DbError),
}

fn bad(m: impl Into<String>) -> GrantError {
    GrantError::BadRequest(m.into())
}

/// Why a grant no longer lets its centre in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotLive {
    /// The grant's case was deleted (or the grant is gone with it).
    CaseDeleted,
    /// Revoked, or its centre disabled or removed.
    Revoked,
    Expired,
}

/// The one liveness rule: a grant lets its centre in while its case is
/// open, it is not revoked, its centre exists and is not disabled, and it
/// has not expired — checked in that order.
pub fn check_live(
    grant: &GrantRow,
    centre: Option<&CentreRow>,
    case_open: bool,
    now: Timestamp,
) -> Result<(), NotLive> {
    if !case_open {
        return Err(NotLive::CaseDeleted);
    }
    if grant.revoked_at.is_some() || centre.is_none_or(|c| c.disabled_at.is_some()) {
        return Err(NotLive::Revoked);
    }
    if grant.expires_at <= now {
        return Err(NotLive::Expired);
    }
    Ok(())
}

/// The grant as it stands now, judged by [`check_live`] (for a running
/// download's re-check).
pub async fn still_live(
    svc: &Services,
    grant_id: &GrantId,
) -> Result<Result<(), NotLive>, DbError> {
    let Some(grant) = db::grants::get(&svc.db, grant_id).await? else {
        return Ok(Err(NotLive::CaseDeleted));
    };
    let centre = db::centres::get(&svc.db, &grant.centre_id).await?;
    let case_open = db::cases::get(&svc.db, &grant.case_id).await?.is_some();
    Ok(check_live(
        &grant,
        centre.as_ref(),
        case_open,
        svc.timestamp(),
    ))
}

/// What a coordinator asks for when issuing a grant.
#[derive(Debug)]
pub struct NewGrant {
    pub centre_id: String,
    /// `None`: every file complete at this moment.
    pub file_ids: Option<Vec<String>>,
    pub expires_in_secs: u64,
    pub max_downloads: i64,
    /// Whether the centre may upload its reply into the case.
    pub may_reply: bool,
}

/// An issued grant: its token is shown this once.
pub struct IssuedGrant {
    pub grant_id: GrantId,
    pub token: SecretToken,
    pub expires_at: Timestamp,
}

impl NewGrant {
    fn check_limits(&self) -> Result<(), GrantError> {
        if self.expires_in_secs == 0 || self.expires_in_secs > MAX_EXPIRES_SECS {
            return Err(bad(format!(
                "expires_in_secs must be 1..={MAX_EXPIRES_SECS}"
            )));
        }
        if !(1..=MAX_DOWNLOADS).contains(&self.max_downloads) {
            return Err(bad(format!("max_downloads must be 1..={MAX_DOWNLOADS}")));
        }
        Ok(())
    }

    /// The grant's scope: the listed files (each a complete file of the
    /// case, duplicates dropped), or every complete file but the centres'
    /// replies (a centre's opinion reaches another centre only when a
    /// coordinator names it).
    fn scope(&self, available: Vec<(FileId, Source)>) -> Result<Vec<FileId>, GrantError> {
        let files = match &self.file_ids {
            None => available
                .into_iter()
                .filter(|(_, source)| source.centre_id().is_none())
                .map(|(id, _)| id)
                .collect(),
            Some(ids) => {
                let mut out = Vec::new();
                for raw in ids {
                    let id = FileId::parse(raw)
                        .filter(|id| available.iter().any(|(f, _)| f == id))
                        .ok_or_else(|| {
                            bad(format!("{raw:?} is not a complete file of this case"))
                        })?;
                    if !out.contains(&id) {
                        out.push(id);
                    }
                }
                out
            }
        };
        if files.is_empty() {
            return Err(bad("the grant would hold no files (none complete yet?)"));
        }
        Ok(files)
    }
}

/// The centre a grant is issued to: registered and not disabled. A refusal
/// is audited against the case.
async fn grantee(
    svc: &Services,
    ctx: &RequestContext,
    case_id: &CaseId,
    raw: &str,
) -> Result<CentreId, GrantError> {
    let deny = |reason: String| {
        NewEntry::new("grant.create", Outcome::Deny)
            .case(case_id)
            .reason(reason)
    };
    let centre = CentreId::parse(raw).ok_or_else(|| bad("centre_id is not a centre id"))?;
    let Some(row) = db::centres::get(&svc.db, &centre).await? else {
        audit::record(svc, ctx, deny(format!("unknown centre {centre}"))).await?;
        return Err(bad("unknown centre_id"));
    };
    if row.disabled_at.is_some() {
        audit::record(svc, ctx, deny(format!("centre {centre} is disabled"))).await?;
        return Err(bad("the centre is disabled"));
    }
    Ok(centre)
}

/// Issues a grant to a centre for files of an open case.
pub async fn create(
    svc: &Services,
    ctx: &RequestContext,
    case_id: &CaseId,
    req: NewGrant,
) -> Result<IssuedGrant, GrantError> {
    req.check_limits()?;
    if db::cases::get(&svc.db, case_id).await?.is_none() {
        let entry = NewEntry::new("grant.create", Outcome::Deny)
            .case(case_id)
            .reason("no such case");
        audit::record(svc, ctx, entry).await?;
        return Err(GrantError::NotFound);
    }
    let centre = grantee(svc, ctx, case_id, &req.centre_id).await?;
    let available: Vec<(FileId, Source)> = db::files::list_for_case(&svc.db, case_id)
        .await?
        .into_iter()
        .filter(|f| f.state == "complete" || f.state == "flagged")
        .map(|f| (f.file_id, f.source))
        .collect();
    let files = req.scope(available)?;
    let now = svc.timestamp();
    let grant = GrantRow {
        grant_id: GrantId::generate(),
        case_id: case_id.clone(),
        centre_id: centre,
        created_at: now,
        expires_at: now.plus_secs(req.expires_in_secs),
        max_downloads: req.max_downloads,
        revoked_at: None,
        may_reply: req.may_reply,
    };
    let token = SecretToken::generate(TokenKind::Grant);
    let mut tx = audit::begin(svc).await?;
    db::grants::insert(&mut tx, &grant, &token.hash(), &files).await?;
    let entry = NewEntry::new("grant.create", Outcome::Allow)
        .case(case_id)
        .centre(&grant.centre_id)
        .grant(&grant.grant_id)
        .reason(format!(
            "{} files, expires {}, {} downloads per file{}",
            files.len(),
            grant.expires_at,
            grant.max_downloads,
            if grant.may_reply { "" } else { ", no reply" }
        ));
    audit::commit(svc, tx, ctx, entry).await?;
    Ok(IssuedGrant {
        grant_id: grant.grant_id,
        token,
        expires_at: grant.expires_at,
    })
}

/// Where a grant stands, for the coordinator's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantState {
    Active,
    Expired,
    Exhausted,
    Revoked,
}

impl GrantState {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantState::Active => "active",
            GrantState::Expired => "expired",
            GrantState::Exhausted => "exhausted",
            GrantState::Revoked => "revoked",
        }
    }

    fn of(grant: &GrantRow, files: &[GrantFile], now: Timestamp) -> GrantState {
        if grant.revoked_at.is_some() {
            GrantState::Revoked
        } else if grant.expires_at <= now {
            GrantState::Expired
        } else if !files.is_empty() && files.iter().all(|f| f.downloads >= grant.max_downloads) {
            GrantState::Exhausted
        } else {
            GrantState::Active
        }
    }
}

/// One grant of a case with its files' use counts.
pub struct GrantSummary {
    pub grant: GrantRow,
    pub state: GrantState,
    pub files: Vec<GrantFile>,
}

/// The grants of a case (any state), with use counts.
pub async fn list(
    svc: &Services,
    ctx: &RequestContext,
    case_id: &CaseId,
) -> Result<Vec<GrantSummary>, GrantError> {
    let now = svc.timestamp();
    let mut out = Vec::new();
    for grant in db::grants::list_for_case(&svc.db, case_id).await? {
        let files = db::grants::files(&svc.db, &grant.grant_id).await?;
        let state = GrantState::of(&grant, &files, now);
        out.push(GrantSummary {
            grant,
            state,
            files,
        });
    }
    let entry = NewEntry::new("grant.list", Outcome::Allow).case(case_id);
    audit::record(svc, ctx, entry).await?;
    Ok(out)
}

/// Revokes a grant (idempotent: revoking a revoked grant is allowed).
pub async fn revoke(
    svc: &Services,
    ctx: &RequestContext,
    grant_id: &GrantId,
) -> Result<(), GrantError> {
    let Some(grant) = db::grants::get(&svc.db, grant_id).await? else {
        let entry = NewEntry::new("grant.revoke", Outcome::Deny)
            .grant(grant_id)
            .reason("no such grant");
        audit::record(svc, ctx, entry).await?;
        return Err(GrantError::NotFound);
    };
    let mut tx = audit::begin(svc).await?;
    let was_active = db::grants::revoke(
        &mut tx,
        grant_id,
        svc.timestamp(),
        "revoked by a coordinator",
    )
    .await?;
    let entry = NewEntry::new("grant.revoke", Outcome::Allow)
        .case(&grant.case_id)
        .centre(&grant.centre_id)
        .grant(grant_id)
        .reason(if was_active {
            "revoked"
        } else {
            "already revoked"
        });
    Ok(audit::commit(svc, tx, ctx, entry).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn grant(expires_at: &str, revoked: bool) -> GrantRow {
        GrantRow {
            grant_id: GrantId::generate(),
            case_id: CaseId::generate(),
            centre_id: CentreId::generate(),
            created_at: t("2026-11-01T00:00:00Z"),
            expires_at: t(expires_at),
            max_downloads: 1,
            revoked_at: revoked.then(|| t("2026-11-02T00:00:00Z")),
            may_reply: true,
        }
    }

    fn centre(disabled: bool) -> CentreRow {
        CentreRow {
            centre_id: CentreId::generate(),
            name: "Centre".into(),
            country: "DE".into(),
            cert_sha256: String::new(),
            x25519_public_key: vec![1; 32],
            created_at: t("2026-11-01T00:00:00Z"),
            disabled_at: disabled.then(|| t("2026-11-02T00:00:00Z")),
        }
    }

    #[test]
    fn one_rule_in_one_order() {
        let now = t("2026-11-10T00:00:00Z");
        let live = grant("2026-11-20T00:00:00Z", false);
        let (active, disabled) = (centre(false), centre(true));
        assert_eq!(check_live(&live, Some(&active), true, now), Ok(()));
        let expired = grant("2026-11-10T00:00:00Z", false);
        assert_eq!(
            check_live(&expired, Some(&active), true, now),
            Err(NotLive::Expired),
            "expiry is inclusive"
        );
        let revoked = grant("2026-11-01T00:00:00Z", true);
        assert_eq!(
            check_live(&revoked, Some(&active), true, now),
            Err(NotLive::Revoked),
            "revoked before expired"
        );
        assert_eq!(
            check_live(&live, Some(&disabled), true, now),
            Err(NotLive::Revoked)
        );
        assert_eq!(check_live(&live, None, true, now), Err(NotLive::Revoked));
        assert_eq!(
            check_live(&revoked, None, false, now),
            Err(NotLive::CaseDeleted),
            "a deleted case first"
        );
    }
}
