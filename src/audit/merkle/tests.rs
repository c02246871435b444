//! The tree against published vectors (tests/vectors/merkle, from
//! transparency-dev/merkle) and against a direct transcription of RFC
//! 9162's recursive definitions over many sizes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::*;

fn vectors() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/merkle"))
}

fn hash32(bytes: Vec<u8>) -> Option<Hash> {
    bytes.try_into().ok()
}

fn b64(v: &Value) -> Option<Hash> {
    hash32(STANDARD.decode(v.as_str()?).ok()?)
}

/// A probe's root or leaf: some probes use values that are not 32 bytes
/// ("don't care") where only their equality matters; those stand in as
/// the SHA-256 of their bytes, which keeps equal values equal.
fn b64_any(v: &Value) -> Hash {
    let bytes = v
        .as_str()
        .map(|s| STANDARD.decode(s).unwrap())
        .unwrap_or_default();
    hash32(bytes.clone()).unwrap_or_else(|| {
        let mut out = [0u8; 32];
        out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref());
        out
    })
}

fn hex32(v: &Value) -> Hash {
    hash32(crate::hex::decode(v.as_str().unwrap()).unwrap()).unwrap()
}

fn probes(kind: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut dirs = vec![vectors().join(kind)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((
                    path.display().to_string(),
                    serde_json::from_str(&text).unwrap(),
                ));
            }
        }
    }
    assert!(out.len() > 50, "{kind}: vectors missing");
    out
}

/// A probe's proof; `None` when a hash is not 32 bytes (such a proof
/// cannot verify).
fn proof_of(v: &Value) -> Option<Vec<Hash>> {
    match v.as_array() {
        None => Some(Vec::new()),
        Some(items) => items.iter().map(b64).collect(),
    }
}

#[test]
fn inclusion_probes_of_transparency_dev() {
    for (name, p) in probes("inclusion") {
        let want_err = p["wantErr"].as_bool().unwrap();
        // A leaf hash must be a hash (32 bytes), as in transparency-dev.
        let ok = match (
            b64(&p["leafHash"]),
            b64_any(&p["root"]),
            proof_of(&p["proof"]),
        ) {
            (Some(leaf), root, Some(proof)) => verify_inclusion(
                p["leafIdx"].as_u64().unwrap(),
                p["treeSize"].as_u64().unwrap(),
                &leaf,
                &proof,
                &root,
            )
            .is_ok(),
            _ => false,
        };
        assert_eq!(ok, !want_err, "{name}");
    }
}

#[test]
fn consistency_probes_of_transparency_dev() {
    for (name, p) in probes("consistency") {
        let want_err = p["wantErr"].as_bool().unwrap();
        let ok = match (
            b64_any(&p["root1"]),
            b64_any(&p["root2"]),
            proof_of(&p["proof"]),
        ) {
            (r1, r2, Some(proof)) => verify_consistency(
                p["size1"].as_u64().unwrap(),
                p["size2"].as_u64().unwrap(),
                &r1,
                &r2,
                &proof,
            )
            .is_ok(),
            _ => false,
        };
        assert_eq!(ok, !want_err, "{name}");
    }
}

/// The stored nodes of a tree built leaf by leaf with [`appended_nodes`].
fn build(leaves: &[Hash]) -> HashMap<NodeId, Hash> {
    let mut nodes = HashMap::new();
    for (i, leaf) in leaves.iter().enumerate() {
        let added =
            appended_nodes(i as u64, *leaf, &mut |id| nodes.get(&id).copied().ok_or(id)).unwrap();
        nodes.extend(added);
    }
    nodes
}

fn getter(nodes: &HashMap<NodeId, Hash>) -> impl FnMut(NodeId) -> Result<Hash, NodeId> + '_ {
    |id| nodes.get(&id).copied().ok_or(id)
}

#[test]
fn rfc6962_reference_tree_roots_and_proofs() {
    let text = std::fs::read_to_string(vectors().join("rfc6962.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let leaves: Vec<Hash> = v["leaves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| leaf_hash(&crate::hex::decode(l.as_str().unwrap()).unwrap()))
        .collect();
    let nodes = build(&leaves);
    let mut compact = CompactTree::new();
    for (size, want) in v["roots"].as_array().unwrap().iter().enumerate() {
        let want = hex32(want);
        assert_eq!(
            root(size as u64, &mut getter(&nodes)).unwrap(),
            want,
            "root {size}"
        );
        assert_eq!(compact.root(), want, "compact root {size}");
        if let Some(leaf) = leaves.get(size) {
            compact.push(*leaf);
        }
    }
    for case in v["inclusion"].as_array().unwrap() {
        let (index, size) = (
            case["index"].as_u64().unwrap(),
            case["size"].as_u64().unwrap(),
        );
        let want: Vec<Hash> = case["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(hex32)
            .collect();
        let proof = inclusion_proof(index, size, &mut getter(&nodes)).unwrap();
        assert_eq!(proof, want, "inclusion {index} in {size}");
        let root = hex32(&v["roots"][size as usize]);
        verify_inclusion(index, size, &leaves[index as usize], &proof, &root).unwrap();
    }
    for case in v["consistency"].as_array().unwrap() {
        let (first, second) = (
            case["first"].as_u64().unwrap(),
            case["second"].as_u64().unwrap(),
        );
        let want: Vec<Hash> = case["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(hex32)
            .collect();
        let proof = consistency_proof(first, second, &mut getter(&nodes)).unwrap();
        assert_eq!(proof, want, "consistency {first} {second}");
    }
}

/// RFC 9162 §2.1.1 MTH, straight from its definition.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

#[test]
fn every_size_up_to_70_agrees_with_the_definition_and_verifies() {
    let leaves: Vec<Hash> = (0..70u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let nodes = build(&leaves);
    for size in 1..=leaves.len() as u64 {
        let want = mth(&leaves[..size as usize]);
        let got = root(size, &mut getter(&nodes)).unwrap();
        assert_eq!(got, want, "root {size}");
        for index in 0..size {
            let proof = inclusion_proof(index, size, &mut getter(&nodes)).unwrap();
            verify_inclusion(index, size, &leaves[index as usize], &proof, &got).unwrap();
            let other = leaf_hash(b"not in the log");
            assert!(verify_inclusion(index, size, &other, &proof, &got).is_err());
        }
        for first in 1..=size {
            let proof = consistency_proof(first, size, &mut getter(&nodes)).unwrap();
            let first_root = mth(&leaves[..first as usize]);
            verify_consistency(first, size, &first_root, &got, &proof).unwrap();
            if first < size {
                let wrong = leaf_hash(b"rewritten");
                assert!(verify_consistency(first, size, &wrong, &got, &proof).is_err());
            }
        }
    }
}

#[test]
fn proofs_read_logarithmically_many_nodes() {
    let size = 1_000_003u64;
    let mut reads = 0usize;
    let mut count = |_: NodeId| {
        reads += 1;
        Ok::<_, Infallible>([0u8; 32])
    };
    inclusion_proof(12_345, size, &mut count).unwrap();
    consistency_proof(777_777, size, &mut count).unwrap();
    root(size, &mut count).unwrap();
    assert!(reads < 3 * 3 * 64, "{reads} reads");
}

#[test]
fn nodes_are_stored_in_append_order() {
    let mut next = 0u64;
    let leaf = leaf_hash(b"x");
    let mut nodes = HashMap::new();
    for i in 0..300u64 {
        assert_eq!(stored_nodes(i), next, "before leaf {i}");
        assert_eq!(size_for_nodes(next), Some(i));
        let added = appended_nodes(i, leaf, &mut |id| nodes.get(&id).copied().ok_or(id)).unwrap();
        for (id, hash) in added {
            assert_eq!(position(id), next, "{id:?}");
            next += 1;
            nodes.insert(id, hash);
        }
    }
    assert_eq!(size_for_nodes(2), None, "no tree has exactly two nodes");
}

/// A compact tree appends exactly the nodes the stored tree does, its
/// right edge is made of stored nodes, and one rebuilt from those nodes
/// continues the same tree.
#[test]
fn compact_tree_appends_the_stored_nodes_and_resumes_from_its_edge() {
    let leaves: Vec<Hash> = (0..130u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut nodes = HashMap::new();
    let mut compact = CompactTree::new();
    for (i, leaf) in leaves.iter().enumerate() {
        let i = i as u64;
        let edge: Vec<Hash> = CompactTree::edge_ids(i)
            .iter()
            .map(|id| nodes[id])
            .collect();
        let mut resumed = CompactTree::from_edge(i, &edge).unwrap();
        assert_eq!(resumed.root(), compact.root(), "size {i}");
        let stored = appended_nodes(i, *leaf, &mut getter(&nodes)).unwrap();
        assert_eq!(compact.push_stored(*leaf), stored, "leaf {i}");
        assert_eq!(resumed.push_stored(*leaf), stored, "leaf {i}, resumed");
        assert_eq!(compact.last_node(), stored.last().map(|n| n.1));
        nodes.extend(stored);
    }
    assert_eq!(compact.root(), mth(&leaves));
    assert!(CompactTree::from_edge(5, &[[0u8; 32]]).is_none());
    assert_eq!(CompactTree::new().last_node(), None);
}
