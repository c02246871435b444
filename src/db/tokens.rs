//! Operator tokens (coordinator, compliance), stored as SHA-256 hashes.

use super::{Db, DbError, Tx};
use crate::clock::Timestamp;
use crate::ids::OperatorTokenId;
use crate::token::TokenHash;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorRole {
    Coordinator,
    Compliance,
}

impl OperatorRole {
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorRole::Coordinator => "coordinator",
            OperatorRole::Compliance => "compliance",
        }
    }

    pub fn parse(s: &str) -> Option<OperatorRole> {
        match s {
            "coordinator" => Some(OperatorRole::Coordinator),
            "compliance" => Some(OperatorRole::Compliance),
            _ => None,
        }
    }
}

pub async fn insert(
    tx: &mut Tx<'_>,
    id: &OperatorTokenId,
    role: OperatorRole,
    hash: &TokenHash,
    created_at: Timestamp,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO operator_tokens (token_id, role, token_hash, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id.as_str())
    .bind(role.as_str())
    .bind(hash.as_bytes())
    .bind(created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The live token with this hash, if any.
pub async fn find(
    db: &Db,
    hash: &TokenHash,
) -> Result<Option<(OperatorTokenId, OperatorRole)>, DbError> {
    let row: Option<(String, String, Vec<u8>)> = sqlx::query_as(
        "SELECT token_id, role, token_hash FROM operator_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash.as_bytes())
    .fetch_optional(db.pool())
    .await?;
    let Some((id, role, stored)) = row else {
        return Ok(None);
    };
    if !hash.ct_eq(&stored) {
        return Ok(None);
    }
    let id = OperatorTokenId::parse(&id).ok_or(DbError::Corrupt("operator_tokens.token_id"))?;
    let role = OperatorRole::parse(&role).ok_or(DbError::Corrupt("operator_tokens.role"))?;
    Ok(Some((id, role)))
}
