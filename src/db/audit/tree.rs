//! The stored Merkle tree of the audit log: complete-subtree hashes in
//! `audit_tree`, appended with each entry ([`append_leaf`]); roots and
//! proofs read O(log n) of them. The tree code itself is
//! `crate::audit::merkle`; this module only fetches what it asks for.

use std::collections::HashMap;

use sqlx::SqliteConnection;

use super::read::entry_from_row;
use crate::audit::merkle::{self, Hash, NodeId};
use crate::db::{Db, DbError};

const DAMAGED: &str = "audit_tree (a node the tree needs is missing)";

/// The number of leaves (= entries) in the tree.
pub async fn size(conn: &mut SqliteConnection) -> Result<u64, DbError> {
    let last: Option<i64> = sqlx::query_scalar("SELECT MAX(idx) FROM audit_tree WHERE level = 0")
        .fetch_one(conn)
        .await?;
    Ok(last.map_or(0, |i| i as u64 + 1))
}

/// The number of leaves, read on a pooled connection.
pub async fn current_size(db: &Db) -> Result<u64, DbError> {
    let mut conn = db.pool().acquire().await?;
    size(&mut conn).await
}

async fn fetch(
    conn: &mut SqliteConnection,
    ids: &[NodeId],
) -> Result<HashMap<NodeId, Hash>, DbError> {
    let mut found = HashMap::with_capacity(ids.len());
    for id in ids {
        if found.contains_key(id) {
            continue;
        }
        let hash: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT hash FROM audit_tree WHERE level = ? AND idx = ?")
                .bind(id.level as i64)
                .bind(id.index as i64)
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(hash) = hash.and_then(|h| Hash::try_from(h).ok()) {
            found.insert(*id, hash);
        }
    }
    Ok(found)
}

/// Runs a tree function over the stored nodes: once recording the nodes
/// it asks for (which never depend on the hashes returned), then, with
/// those fetched, for real.
async fn with_nodes<T>(
    conn: &mut SqliteConnection,
    run: impl Fn(&mut dyn FnMut(NodeId) -> Result<Hash, NodeId>) -> Result<T, NodeId>,
) -> Result<T, DbError> {
    let mut wanted = Vec::new();
    let _ = run(&mut |id| {
        wanted.push(id);
        Ok([0u8; 32])
    });
    let found = fetch(conn, &wanted).await?;
    run(&mut |id| found.get(&id).copied().ok_or(id)).map_err(|id| {
        tracing::error!(
            level = id.level,
            index = id.index,
            "audit tree node missing"
        );
        DbError::Corrupt(DAMAGED)
    })
}

/// Appends the leaf of entry `index` (0-based: sequence number − 1) and
/// the nodes it completes. The tree must hold exactly `index` leaves:
/// anything else means entries and tree have come apart, and the append
/// is refused (and with it the action).
pub async fn append_leaf(
    conn: &mut SqliteConnection,
    index: u64,
    line: &[u8],
) -> Result<(), DbError> {
    let leaves = size(conn).await?;
    if leaves != index {
        tracing::error!(
            leaves,
            entry = index + 1,
            "audit tree and audit entries disagree; refusing to append"
        );
        return Err(DbError::Corrupt(
            "audit_tree (its size does not match the entries)",
        ));
    }
    let leaf = merkle::leaf_hash(line);
    let nodes = with_nodes(conn, |mut get| {
        merkle::appended_nodes(index, leaf, &mut get)
    })
    .await?;
    for (id, hash) in nodes {
        sqlx::query("INSERT INTO audit_tree (level, idx, hash) VALUES (?, ?, ?)")
            .bind(id.level as i64)
            .bind(id.index as i64)
            .bind(&hash[..])
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The root of the first `size` leaves.
pub async fn root(db: &Db, size: u64) -> Result<Hash, DbError> {
    let mut conn = db.pool().acquire().await?;
    with_nodes(&mut conn, |mut get| merkle::root(size, &mut get)).await
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves
/// (the caller checks `index < size ≤` the tree's size).
pub async fn inclusion_proof(db: &Db, index: u64, size: u64) -> Result<Vec<Hash>, DbError> {
    let mut conn = db.pool().acquire().await?;
    with_nodes(&mut conn, |mut get| {
        merkle::inclusion_proof(index, size, &mut get)
    })
    .await
}

/// The consistency proof between the trees of `first` and `second` leaves
/// (the caller checks `0 < first ≤ second ≤` the tree's size).
pub async fn consistency_proof(db: &Db, first: u64, second: u64) -> Result<Vec<Hash>, DbError> {
    let mut conn = db.pool().acquire().await?;
    with_nodes(&mut conn, |mut get| {
        merkle::consistency_proof(first, second, &mut get)
    })
    .await
}

/// Up to `limit` stored leaf hashes from leaf `from` on, in order.
pub async fn leaves(db: &Db, from: u64, limit: u64) -> Result<Vec<Hash>, DbError> {
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT hash FROM audit_tree WHERE level = 0 AND idx >= ? ORDER BY idx LIMIT ?",
    )
    .bind(from as i64)
    .bind(limit as i64)
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|h| Hash::try_from(h).map_err(|_| DbError::Corrupt(DAMAGED)))
        .collect()
}

/// Entries per transaction when the tree catches up.
const CATCH_UP_BATCH: i64 = 1000;

/// Adds to the tree the entries it does not hold yet (entries written
/// before the tree existed); returns how many. Run at start.
pub async fn catch_up(db: &Db) -> Result<u64, DbError> {
    let mut added = 0;
    loop {
        let mut tx = db.begin().await?;
        let mut next = size(&mut tx).await?;
        let rows = sqlx::query(
            "SELECT seq, time, actor, role, action, case_id, file_id, centre_id, grant_id, outcome,
                    reason, client_addr, client_cert_sha256, request_id
             FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(next as i64)
        .bind(CATCH_UP_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(added);
        }
        for row in &rows {
            let entry = entry_from_row(row)?;
            append_leaf(&mut tx, next, entry.to_json_line().as_bytes()).await?;
            next += 1;
            added += 1;
        }
        tx.commit().await?;
    }
}
