//! The stored Merkle tree of the audit log: complete-subtree hashes in
//! `audit_tree`, each at its place in append order
//! (`audit::merkle::position`), appended with each entry
//! ([`append_leaf`]) at the end of the table; roots and proofs read
//! O(log n) of them. The tree code itself is `crate::audit::merkle`; this
//! module only stores and fetches what it asks for.
//!
//! An append needs the tree's right edge (the complete subtrees it is made
//! of). The process keeps the edge it last appended ([`EdgeCache`]), so
//! the request path reads no earlier node; it is trusted only while the
//! table still ends with the node it last wrote.

use std::collections::HashMap;
use std::sync::Mutex;

use sqlx::{AnyConnection, Row};

use super::read::entry_from_row;
use crate::audit::merkle::{self, CompactTree, Hash, NodeId};
use crate::db::{Db, DbError, placeholders};

const DAMAGED: &str = "audit_tree (a node the tree needs is missing)";
/// Positions per lookup query.
const LOOKUP_BATCH: usize = 100;

/// How many nodes the table holds.
pub async fn node_count(conn: &mut AnyConnection) -> Result<u64, DbError> {
    let count: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(pos) + 1, 0) FROM audit_tree")
        .fetch_one(conn)
        .await?;
    Ok(count as u64)
}

/// The number of leaves (= entries) in the tree.
pub async fn size(conn: &mut AnyConnection) -> Result<u64, DbError> {
    let count = node_count(conn).await?;
    merkle::size_for_nodes(count).ok_or(DbError::Corrupt(
        "audit_tree (its node count fits no tree size)",
    ))
}

/// The number of leaves, read on a pooled connection.
pub async fn current_size(db: &Db) -> Result<u64, DbError> {
    let mut conn = db.pool().acquire().await?;
    size(&mut conn).await
}

async fn fetch(conn: &mut AnyConnection, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, DbError> {
    let by_position: HashMap<u64, NodeId> =
        ids.iter().map(|id| (merkle::position(*id), *id)).collect();
    let positions: Vec<u64> = by_position.keys().copied().collect();
    let mut found = HashMap::with_capacity(positions.len());
    for batch in positions.chunks(LOOKUP_BATCH) {
        let sql = format!(
            "SELECT pos, hash FROM audit_tree WHERE pos IN ({})",
            placeholders(1, batch.len(), 1)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for pos in batch {
            query = query.bind(*pos as i64);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let pos: i64 = row.try_get("pos")?;
            let hash: Vec<u8> = row.try_get("hash")?;
            if let (Some(id), Ok(hash)) = (by_position.get(&(pos as u64)), Hash::try_from(hash)) {
                found.insert(*id, hash);
            }
        }
    }
    Ok(found)
}

/// Runs a tree function over the stored nodes: once recording the nodes
/// it asks for (which never depend on the hashes returned), then, with
/// those fetched, for real.
async fn with_nodes<T>(
    conn: &mut AnyConnection,
    run: impl Fn(&mut dyn FnMut(NodeId) -> Result<Hash, NodeId>) -> Result<T, NodeId>,
) -> Result<T, DbError> {
    let mut wanted = Vec::new();
    let _ = run(&mut |id| {
        wanted.push(id);
        Ok([0u8; 32])
    });
    if wanted.is_empty() {
        return run(&mut |id| Err(id)).map_err(|_| DbError::Corrupt(DAMAGED));
    }
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

/// The tree's right edge as this process last appended it. An append uses
/// it only if the table still ends where it left it: the same size and the
/// same last node (the one the last leaf completed, which hashes that
/// leaf). An append by another process, or one whose transaction rolled
/// back, leaves a different end, and the edge is read from the table again.
#[derive(Debug, Default)]
pub struct EdgeCache(Mutex<Option<CompactTree>>);

impl EdgeCache {
    /// The cached edge, taken out, if it ends where the table does.
    fn take_matching(&self, size: u64, last_node: Option<Hash>) -> Option<CompactTree> {
        let mut slot = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.take()
            .filter(|edge| edge.size() == size && edge.last_node() == last_node)
    }

    fn put(&self, edge: CompactTree) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(edge);
    }
}

/// The right edge of the stored tree of `size` leaves, read from the table.
async fn read_edge(conn: &mut AnyConnection, size: u64) -> Result<CompactTree, DbError> {
    let ids = CompactTree::edge_ids(size);
    let found = fetch(conn, &ids).await?;
    let hashes: Option<Vec<Hash>> = ids.iter().map(|id| found.get(id).copied()).collect();
    hashes
        .and_then(|hashes| CompactTree::from_edge(size, &hashes))
        .ok_or(DbError::Corrupt(DAMAGED))
}

/// The hash of the last node the table holds (`None` when empty).
pub async fn last_node(conn: &mut AnyConnection) -> Result<Option<Hash>, DbError> {
    let hash: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT hash FROM audit_tree ORDER BY pos DESC LIMIT 1")
            .fetch_optional(conn)
            .await?;
    hash.map(|h| Hash::try_from(h).map_err(|_| DbError::Corrupt(DAMAGED)))
        .transpose()
}

/// Where the stored tree ends, read with the entry's sequence number:
/// how many nodes it holds and the hash of the last one.
pub struct TreeEnd {
    pub nodes_held: u64,
    pub last_node: Option<Hash>,
}

/// Appends the leaf of entry `index` (0-based: sequence number − 1) and
/// the nodes it completes. The tree must hold exactly `index` leaves:
/// anything else means entries and tree have come apart, and the append is
/// refused (and with it the action).
pub async fn append_leaf(
    conn: &mut AnyConnection,
    cache: &EdgeCache,
    index: u64,
    end: TreeEnd,
    line: &[u8],
) -> Result<(), DbError> {
    if end.nodes_held != merkle::stored_nodes(index) {
        tracing::error!(
            nodes_held = end.nodes_held,
            entry = index + 1,
            "audit tree and audit entries disagree; refusing to append"
        );
        return Err(DbError::Corrupt(
            "audit_tree (its size does not match the entries)",
        ));
    }
    let mut edge = match cache.take_matching(index, end.last_node) {
        Some(edge) => edge,
        None => read_edge(conn, index).await?,
    };
    let nodes = edge.push_stored(merkle::leaf_hash(line));
    let sql = format!(
        "INSERT INTO audit_tree (pos, hash) VALUES {}",
        placeholders(1, nodes.len(), 2)
    );
    let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (id, hash) in &nodes {
        insert = insert
            .bind(merkle::position(*id) as i64)
            .bind(hash.to_vec());
    }
    insert.execute(&mut *conn).await?;
    cache.put(edge);
    Ok(())
}

/// The root of the first `size` leaves.
pub async fn root(db: &Db, size: u64) -> Result<Hash, DbError> {
    if size == 0 {
        return Ok(merkle::empty_root());
    }
    let mut conn = db.pool().acquire().await?;
    with_nodes(&mut conn, |mut get| merkle::root(size, &mut get)).await
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves
/// (the caller checks `index < size ≤` the tree's size).
pub async fn inclusion_proof(db: &Db, index: u64, size: u64) -> Result<Vec<Hash>, DbError> {
    if size <= 1 {
        return Ok(Vec::new());
    }
    let mut conn = db.pool().acquire().await?;
    with_nodes(&mut conn, |mut get| {
        merkle::inclusion_proof(index, size, &mut get)
    })
    .await
}

/// The consistency proof between the trees of `first` and `second` leaves
/// (the caller checks `0 < first ≤ second ≤` the tree's size).
pub async fn consistency_proof(db: &Db, first: u64, second: u64) -> Result<Vec<Hash>, DbError> {
    if first == second {
        return Ok(Vec::new());
    }
    let mut conn = db.pool().acquire().await?;
    with_nodes(&mut conn, |mut get| {
        merkle::consistency_proof(first, second, &mut get)
    })
    .await
}

/// Up to `limit` stored leaf hashes from leaf `from` on, in order: the
/// rows between the first and the last leaf's positions, leaves picked out.
pub async fn leaves(db: &Db, from: u64, limit: u64) -> Result<Vec<Hash>, DbError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let leaf_at = |i| merkle::position(NodeId { level: 0, index: i });
    let rows =
        sqlx::query("SELECT pos, hash FROM audit_tree WHERE pos BETWEEN $1 AND $2 ORDER BY pos")
            .bind(leaf_at(from) as i64)
            .bind(leaf_at(from + limit - 1) as i64)
            .fetch_all(db.pool())
            .await?;
    let (mut out, mut next) = (Vec::with_capacity(limit as usize), from);
    for row in rows {
        let pos: i64 = row.try_get("pos")?;
        if pos as u64 == leaf_at(next) {
            let hash: Vec<u8> = row.try_get("hash")?;
            out.push(Hash::try_from(hash).map_err(|_| DbError::Corrupt(DAMAGED))?);
            next += 1;
        }
    }
    Ok(out)
}

/// Entries per transaction when the tree catches up.
const CATCH_UP_BATCH: i64 = 1000;

/// The highest sequence number that existed when the tree was introduced
/// (migration 0007): only entries up to it may join the tree from the rows.
async fn legacy_mark(conn: &mut AnyConnection) -> Result<u64, DbError> {
    let mark: Option<i64> =
        sqlx::query_scalar("SELECT last_seq FROM audit_tree_legacy WHERE id = 1")
            .fetch_optional(conn)
            .await?;
    mark.map(|m| m as u64).ok_or(DbError::Corrupt(
        "audit_tree_legacy (the legacy mark is missing)",
    ))
}

/// Adds to the tree the entries written before the tree existed (up to the
/// legacy mark), each with the next sequence number; returns how many. Run
/// at start. An entry above the mark is never added from its row: it got
/// into the table without an append (someone with the database), so the
/// tree stays as it is, appends are refused, and [`disagreement`] reports it.
pub async fn catch_up(db: &Db) -> Result<u64, DbError> {
    let mut added = 0;
    let cache = db.tree_edge();
    loop {
        let mut tx = db.begin().await?;
        let mut next = size(&mut tx).await?;
        let mark = legacy_mark(&mut tx).await?;
        if next >= mark {
            return Ok(added);
        }
        let rows = sqlx::query(
            "SELECT seq, time, actor, role, action, case_id, file_id, centre_id, grant_id, outcome,
                    reason, client_addr, client_cert_sha256, request_id
             FROM audit_log WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
        )
        .bind(next as i64)
        .bind(mark as i64)
        .bind(CATCH_UP_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let entry = entry_from_row(row)?;
            if entry.seq as u64 != next + 1 {
                tracing::error!(
                    expected = next + 1,
                    found = entry.seq,
                    "an audit entry written before the tree existed is missing; the tree stops there"
                );
                tx.commit().await?;
                return Ok(added);
            }
            let end = TreeEnd {
                nodes_held: merkle::stored_nodes(next),
                last_node: last_node(&mut tx).await?,
            };
            append_leaf(&mut tx, cache, next, end, entry.to_json_line().as_bytes()).await?;
            next += 1;
            added += 1;
        }
        tx.commit().await?;
        if rows.is_empty() {
            return Ok(added);
        }
    }
}

/// Whether the entries and the tree disagree: `Some((entries, leaves))`
/// (the highest sequence number and the tree's size, read in one
/// statement) when they do. Every append is refused until they agree.
pub async fn disagreement(db: &Db) -> Result<Option<(u64, u64)>, DbError> {
    let (head, nodes): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COALESCE(MAX(seq), 0) FROM audit_log),
                (SELECT COALESCE(MAX(pos) + 1, 0) FROM audit_tree)",
    )
    .fetch_one(db.pool())
    .await?;
    let leaves = merkle::size_for_nodes(nodes as u64);
    Ok(match leaves {
        Some(leaves) if leaves == head as u64 => None,
        _ => Some((head as u64, leaves.unwrap_or(u64::MAX))),
    })
}
