//! The audit log's Merkle tree, RFC 6962 / RFC 9162 (§2.1): leaf hash =
//! SHA-256(0x00 ‖ leaf), node hash = SHA-256(0x01 ‖ left ‖ right).
//!
//! The tree is kept as the hashes of its complete subtrees ([`NodeId`]):
//! appending leaf `i` completes its leaf node and one node per level while
//! the index is odd ([`appended_nodes`]). Roots, inclusion and consistency
//! proofs are computed from those stored nodes in O(log n) lookups. The
//! functions are pure over a `get` callback, so they are tested without a
//! database; a caller that must fetch nodes first can run a function once
//! with a getter that records the ids it asks for (the ids never depend on
//! the hashes returned), fetch them, then run it again.
//!
//! [`CompactTree`] builds the root of a stream of leaves in O(log n)
//! memory (the offline verifier); [`verify_inclusion`] and
//! [`verify_consistency`] are RFC 9162 §2.1.3.2 and §2.1.4.2.

use ring::digest::{SHA256, digest};

/// A SHA-256 tree hash.
pub type Hash = [u8; 32];

/// A complete subtree: the `2^level` leaves starting at `index << level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u32,
    pub index: u64,
}

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = ring::digest::Context::new(&SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// How many complete-subtree nodes a tree of `size` leaves has:
/// 2·size − popcount(size).
pub fn stored_nodes(size: u64) -> u64 {
    2 * size - u64::from(size.count_ones())
}

/// A node's place in append order (post-order): the nodes leaf `i`
/// completes come right after those of the leaves before it, the leaf
/// first, then upward. Stored by this position, every append writes at the
/// end of the table.
pub fn position(id: NodeId) -> u64 {
    let last_leaf = ((id.index + 1) << id.level) - 1;
    stored_nodes(last_leaf) + u64::from(id.level)
}

/// The tree size whose stored nodes number `count`, if there is one.
pub fn size_for_nodes(count: u64) -> Option<u64> {
    // stored_nodes(n) = 2n − popcount(n), so n is within 32 of count / 2.
    (count / 2..=count / 2 + 33).find(|&n| stored_nodes(n) == count)
}

/// SHA-256(0x00 ‖ leaf).
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    sha256(&[&[0x00], leaf])
}

/// SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, b"").as_ref());
    out
}

/// The largest power of two smaller than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The nodes that become complete when leaf `index` (hash `leaf`) is
/// appended: the leaf itself, then its parent while the index is odd.
pub fn appended_nodes<E>(
    index: u64,
    leaf: Hash,
    get: &mut impl FnMut(NodeId) -> Result<Hash, E>,
) -> Result<Vec<(NodeId, Hash)>, E> {
    let mut nodes = vec![(NodeId { level: 0, index }, leaf)];
    let (mut level, mut at, mut hash) = (0u32, index, leaf);
    while at & 1 == 1 {
        let left = get(NodeId {
            level,
            index: at - 1,
        })?;
        hash = node_hash(&left, &hash);
        level += 1;
        at >>= 1;
        nodes.push((NodeId { level, index: at }, hash));
    }
    Ok(nodes)
}

/// The hash of the `len` leaves starting at `start`, where `start` is a
/// multiple of the largest power of two ≤ `len` (every range RFC 9162's
/// recursion visits is).
fn range_hash<E>(
    start: u64,
    len: u64,
    get: &mut impl FnMut(NodeId) -> Result<Hash, E>,
) -> Result<Hash, E> {
    if len.is_power_of_two() {
        let level = len.trailing_zeros();
        return get(NodeId {
            level,
            index: start >> level,
        });
    }
    let k = split(len);
    let left = range_hash(start, k, get)?;
    let right = range_hash(start + k, len - k, get)?;
    Ok(node_hash(&left, &right))
}

/// The root of the tree of the first `size` leaves.
pub fn root<E>(size: u64, get: &mut impl FnMut(NodeId) -> Result<Hash, E>) -> Result<Hash, E> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(0, size, get)
}

/// RFC 9162 §2.1.3.1: the inclusion proof of leaf `index` in the tree of
/// `size` leaves, leaf side first. The caller checks `index < size`.
pub fn inclusion_proof<E>(
    index: u64,
    size: u64,
    get: &mut impl FnMut(NodeId) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    let mut path = Vec::new();
    let (mut m, mut start, mut n) = (index, 0u64, size);
    let mut siblings = Vec::new();
    while n > 1 {
        let k = split(n);
        if m < k {
            siblings.push((start + k, n - k));
            n = k;
        } else {
            siblings.push((start, k));
            m -= k;
            start += k;
            n -= k;
        }
    }
    for (s, len) in siblings.into_iter().rev() {
        path.push(range_hash(s, len, get)?);
    }
    Ok(path)
}

/// RFC 9162 §2.1.4.1: the consistency proof between the trees of `first`
/// and `second` leaves. The caller checks `0 < first ≤ second`; equal
/// sizes give an empty proof.
pub fn consistency_proof<E>(
    first: u64,
    second: u64,
    get: &mut impl FnMut(NodeId) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    let mut ranges = Vec::new();
    let (mut m, mut start, mut n, mut whole) = (first, 0u64, second, true);
    while m != n {
        let k = split(n);
        if m <= k {
            ranges.push((start + k, n - k));
            n = k;
        } else {
            ranges.push((start, k));
            m -= k;
            start += k;
            n -= k;
            whole = false;
        }
    }
    if !whole {
        ranges.push((start, m));
    }
    let mut proof = Vec::with_capacity(ranges.len());
    for (s, len) in ranges.into_iter().rev() {
        proof.push(range_hash(s, len, get)?);
    }
    Ok(proof)
}

/// Why a proof does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the index or sizes are out of range")]
    OutOfRange,
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
}

/// RFC 9162 §2.1.3.2: checks that `leaf` is leaf `index` of the tree of
/// `size` leaves whose root is `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange);
    }
    let (mut f, mut s, mut r) = (index, size - 1, *leaf);
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: checks that the tree of `first` leaves (root
/// `first_root`) is a prefix of the tree of `second` leaves (root
/// `second_root`). As in transparency-dev/merkle, a proof from the empty
/// tree is refused (it would prove nothing) and equal sizes need equal
/// roots and an empty proof.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first > second || first == 0 {
        return Err(ProofError::OutOfRange);
    }
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        if first_root != second_root {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((head, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*head, *head);
    for c in rest {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *first_root || sr != *second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The root of a stream of leaves in O(log n) memory: the hashes of the
/// complete subtrees so far, largest first (a "compact range").
#[derive(Debug, Clone, Default)]
pub struct CompactTree {
    stack: Vec<(u32, Hash)>,
    size: u64,
}

impl CompactTree {
    pub fn new() -> CompactTree {
        CompactTree::default()
    }

    /// The ids of the complete subtrees a tree of `size` leaves is made
    /// of (its right edge), largest first: what [`CompactTree::from_edge`]
    /// takes.
    pub fn edge_ids(size: u64) -> Vec<NodeId> {
        (0..u64::BITS)
            .rev()
            .filter(|level| size >> level & 1 == 1)
            .map(|level| NodeId {
                level,
                index: (size >> level) - 1,
            })
            .collect()
    }

    /// The tree of `size` leaves from the hashes of its
    /// [`edge_ids`](CompactTree::edge_ids), in that order; `None` if
    /// their number does not fit the size.
    pub fn from_edge(size: u64, hashes: &[Hash]) -> Option<CompactTree> {
        let ids = CompactTree::edge_ids(size);
        (ids.len() == hashes.len()).then(|| CompactTree {
            stack: ids
                .iter()
                .map(|id| id.level)
                .zip(hashes.iter().copied())
                .collect(),
            size,
        })
    }

    /// Appends the next leaf, by its leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.push_with(leaf, |_, _| {});
    }

    /// Appends the next leaf and returns the nodes it completes, as
    /// [`appended_nodes`] does from stored nodes: the leaf, then upward.
    pub fn push_stored(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let mut nodes = Vec::with_capacity(2);
        self.push_with(leaf, |id, hash| nodes.push((id, hash)));
        nodes
    }

    fn push_with(&mut self, leaf: Hash, mut completed: impl FnMut(NodeId, Hash)) {
        let (mut level, mut hash, mut index) = (0u32, leaf, self.size);
        completed(NodeId { level, index }, hash);
        while let Some(&(top, left)) = self.stack.last() {
            if top != level {
                break;
            }
            self.stack.pop();
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
            completed(NodeId { level, index }, hash);
        }
        self.stack.push((level, hash));
        self.size += 1;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The smallest complete subtree, the one the last leaf completed: the
    /// last node a store of the tree appended.
    pub fn last_node(&self) -> Option<Hash> {
        self.stack.last().map(|&(_, hash)| hash)
    }

    /// The root of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut nodes = self.stack.iter().rev();
        let Some(&(_, mut hash)) = nodes.next() else {
            return empty_root();
        };
        for (_, left) in nodes {
            hash = node_hash(left, &hash);
        }
        hash
    }
}

#[cfg(test)]
mod tests;
