//! Who is calling: an operator (by role), a patient (by their case's upload
//! token) or a reviewing centre (by a grant token over its pinned
//! certificate, see [`super::grants::authorize`]).

use super::Services;
use crate::clock::Timestamp;
use crate::db::{self, DbError};
use crate::ids::{CaseId, OperatorTokenId};
use crate::token::{SecretToken, TokenKind};

pub use crate::db::cases::CaseRow;
pub use crate::db::centres::CentreRow;
pub use crate::db::grants::GrantRow;
pub use crate::db::tokens::OperatorRole;

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A reviewing centre holding a live grant, over its pinned certificate.
    Centre {
        grant: Box<GrantRow>,
        centre: Box<CentreRow>,
    },
    Operator {
        token_id: OperatorTokenId,
        role: OperatorRole,
    },
    Patient {
        case: Box<CaseRow>,
    },
}

impl Principal {
    /// The actor and role recorded in audit entries.
    pub fn actor_and_role(&self) -> (String, &'static str) {
        match self {
            Principal::Operator { token_id, role } => (token_id.to_string(), role.as_str()),
            Principal::Patient { case } => (format!("patient:{}", case.case_id), "patient"),
            Principal::Centre { centre, .. } => (format!("centre:{}", centre.centre_id), "centre"),
        }
    }

    /// The case a patient's token is for.
    pub fn patient_case(&self) -> Option<&CaseRow> {
        match self {
            Principal::Patient { case } => Some(case),
            _ => None,
        }
    }

    /// The grant and centre of a centre caller.
    pub fn centre_grant(&self) -> Option<(&GrantRow, &CentreRow)> {
        match self {
            Principal::Centre { grant, centre } => Some((grant, centre)),
            _ => None,
        }
    }

    /// Whether a patient's upload period is over (uploads are refused then,
    /// reads of the case are not).
    pub fn upload_period_over(&self, now: Timestamp) -> Option<&CaseId> {
        match self {
            Principal::Patient { case } if case.upload_expires_at <= now => Some(&case.case_id),
            _ => None,
        }
    }
}

/// Resolving a caller failed on our side (the token was not judged).
#[derive(Debug, thiserror::Error)]
pub enum PrincipalError {
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The operator or patient a bearer token belongs to; `None` for a token
/// that is malformed, unknown, or a grant token (usable only on the centre
/// listener, through [`super::grants::authorize`]).
pub async fn resolve(svc: &Services, raw: &str) -> Result<Option<Principal>, PrincipalError> {
    let Some((kind, token)) = SecretToken::parse(raw) else {
        return Ok(None);
    };
    let hash = token.hash();
    Ok(match kind {
        TokenKind::Operator => db::tokens::find(&svc.db, &hash)
            .await?
            .map(|(token_id, role)| Principal::Operator { token_id, role }),
        TokenKind::Upload => db::cases::find_by_upload_token(&svc.db, &hash)
            .await?
            .filter(|(_, stored)| hash.ct_eq(stored))
            .map(|(case, _)| Principal::Patient {
                case: Box::new(case),
            }),
        TokenKind::Grant => None,
    })
}
