//! Proofs over the audit log's tree for compliance staff: inclusion of an
//! entry in a tree size, consistency of two tree sizes (RFC 9162 §2.1.3,
//! §2.1.4). Sizes are checked against the tree as it stands; hashes are
//! lowercase hex.

use serde::Serialize;

use super::{AuditError, record};
use crate::audit::merkle::Hash;
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::db::audit::tree;
use crate::service::Services;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub hashes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub first: u64,
    pub second: u64,
    pub hashes: Vec<String>,
}

fn hex_all(hashes: Vec<Hash>) -> Vec<String> {
    hashes.iter().map(|h| crate::hex::encode(h)).collect()
}

/// `size` as a tree size the log has (1 ≤ size ≤ its size), else a 400.
pub async fn check_size(svc: &Services, name: &str, size: u64) -> Result<u64, AuditError> {
    let current = tree::current_size(&svc.db).await?;
    if size == 0 || size > current {
        return Err(AuditError::BadQuery(format!(
            "{name} must be between 1 and the log's size ({current})"
        )));
    }
    Ok(size)
}

/// The proof that entry `leaf_index` (0-based: sequence number − 1) is in
/// the tree of `tree_size` entries.
pub async fn inclusion(
    svc: &Services,
    ctx: &RequestContext,
    leaf_index: u64,
    tree_size: u64,
) -> Result<InclusionProof, AuditError> {
    let tree_size = check_size(svc, "tree_size", tree_size).await?;
    if leaf_index >= tree_size {
        return Err(AuditError::BadQuery(
            "leaf_index must be less than tree_size".into(),
        ));
    }
    let entry = NewEntry::new("audit.proof.read", Outcome::Allow).reason(format!(
        "inclusion of entry {} in {tree_size}",
        leaf_index + 1
    ));
    record(svc, ctx, entry).await?;
    let hashes = tree::inclusion_proof(&svc.db, leaf_index, tree_size).await?;
    Ok(InclusionProof {
        leaf_index,
        tree_size,
        hashes: hex_all(hashes),
    })
}

/// The proof that the tree of `first` entries is a prefix of the tree of
/// `second` entries.
pub async fn consistency(
    svc: &Services,
    ctx: &RequestContext,
    first: u64,
    second: u64,
) -> Result<ConsistencyProof, AuditError> {
    let second = check_size(svc, "second", second).await?;
    if first == 0 || first > second {
        return Err(AuditError::BadQuery(
            "first must be between 1 and second".into(),
        ));
    }
    let entry = NewEntry::new("audit.proof.read", Outcome::Allow)
        .reason(format!("consistency of {first} with {second}"));
    record(svc, ctx, entry).await?;
    let hashes = tree::consistency_proof(&svc.db, first, second).await?;
    Ok(ConsistencyProof {
        first,
        second,
        hashes: hex_all(hashes),
    })
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves, hex,
/// for an export with proofs (the caller checked the size; not audited
/// on its own: the export is).
pub async fn hashes(svc: &Services, index: u64, size: u64) -> Result<Vec<String>, AuditError> {
    Ok(hex_all(tree::inclusion_proof(&svc.db, index, size).await?))
}

/// Starts reading the stored leaf hashes of the tree of `tree_size`
/// entries (an export's `.leaves` file: once their root matches a signed
/// checkpoint, an offline verifier can name the entry that differs).
pub async fn leaves(
    svc: &Services,
    ctx: &RequestContext,
    tree_size: u64,
) -> Result<u64, AuditError> {
    let tree_size = check_size(svc, "tree_size", tree_size).await?;
    let entry = NewEntry::new("audit.leaves.read", Outcome::Allow)
        .reason(format!("leaf hashes of {tree_size}"));
    record(svc, ctx, entry).await?;
    Ok(tree_size)
}

/// Up to `limit` stored leaf hashes from leaf `from` on.
pub async fn leaf_page(svc: &Services, from: u64, limit: u64) -> Result<Vec<Hash>, AuditError> {
    Ok(tree::leaves(&svc.db, from, limit).await?)
}
