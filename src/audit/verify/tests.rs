//! The verifier over logs built here, each tampering named.

use ring::signature::Ed25519KeyPair;

use super::*;
use crate::audit::AuditEntry;
use crate::audit::merkle::CompactTree;
use crate::audit::note::NoteSigner;

fn line(seq: u64) -> String {
    AuditEntry {
        action: "case.read".into(),
        actor: "op_1".into(),
        outcome: "allow".into(),
        role: "coordinator".into(),
        seq: seq as i64,
        time: "2026-11-29T10:00:00Z".into(),
        ..Default::default()
    }
    .to_json_line()
}

struct Fixture {
    signer: NoteSigner,
    verifier: NoteVerifier,
}

fn fixture() -> Fixture {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let signer = NoteSigner::new("test.example/casegate-audit", key).unwrap();
    let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();
    Fixture { signer, verifier }
}

impl Fixture {
    fn checkpoint(&self, lines: &[String]) -> String {
        let mut tree = CompactTree::new();
        for l in lines {
            tree.push(leaf_hash(l.as_bytes()));
        }
        let cp = Checkpoint {
            origin: "test.example/casegate-audit".into(),
            size: lines.len() as u64,
            root: tree.root(),
        };
        self.signer.sign(&cp.text())
    }

    fn verify(
        &self,
        log: &[String],
        checkpoint: &str,
        previous: Option<&str>,
        leaves: Option<&[String]>,
    ) -> Result<Verified, VerifyError> {
        let log_text: String = log.iter().map(|l| format!("{l}\n")).collect();
        let leaves_text: Option<String> = leaves.map(|ls| {
            ls.iter()
                .map(|l| format!("{}\n", crate::hex::encode(&leaf_hash(l.as_bytes()))))
                .collect()
        });
        verify(Inputs {
            log: log_text.as_bytes(),
            checkpoint,
            verifier: &self.verifier,
            previous,
            leaves: leaves_text.as_deref().map(str::as_bytes),
        })
    }
}

fn log(n: u64) -> Vec<String> {
    (1..=n).map(line).collect()
}

#[test]
fn an_intact_log_verifies_with_entries_after_the_checkpoint() {
    let f = fixture();
    let lines = log(20);
    let cp = f.checkpoint(&lines[..17]);
    let ok = f.verify(&lines, &cp, None, Some(&lines[..17])).unwrap();
    assert_eq!((ok.entries, ok.unsigned), (17, 3));
    assert!(ok.summary().starts_with("log verified: 17 entries, root "));
    assert!(
        ok.summary()
            .ends_with(", signed by test.example/casegate-audit")
    );
}

#[test]
fn a_modified_entry_is_named_with_the_leaves_and_caught_without() {
    let f = fixture();
    let lines = log(20);
    let cp = f.checkpoint(&lines);
    let mut changed = lines.clone();
    changed[6] = changed[6].replace("case.read", "case.list");
    let err = f.verify(&changed, &cp, None, Some(&lines)).unwrap_err();
    assert!(matches!(err, VerifyError::Modified { seq: 7 }), "{err}");
    let err = f
        .verify(&changed, &cp, None, None::<&[String]>)
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::RootMismatch { size: 20 }),
        "{err}"
    );
    // Leaves that were changed along with the entry do not hash to the
    // signed root, so they are not believed.
    let err = f.verify(&changed, &cp, None, Some(&changed)).unwrap_err();
    assert!(matches!(err, VerifyError::RootMismatch { .. }), "{err}");
}

#[test]
fn deleted_inserted_and_swapped_entries_are_named() {
    let f = fixture();
    let lines = log(20);
    let cp = f.checkpoint(&lines);
    let mut deleted = lines.clone();
    deleted.remove(4);
    let err = f.verify(&deleted, &cp, None, Some(&lines)).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Missing {
                expected: 5,
                found: 6,
                ..
            }
        ),
        "{err}"
    );
    let mut inserted = lines.clone();
    inserted.insert(9, lines[8].clone());
    let err = f.verify(&inserted, &cp, None, Some(&lines)).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::OutOfSequence {
                expected: 10,
                found: 9,
                ..
            }
        ),
        "{err}"
    );
    let mut swapped = lines.clone();
    swapped.swap(11, 12);
    let err = f.verify(&swapped, &cp, None, Some(&lines)).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Missing {
                expected: 12,
                found: 13,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("entry 12"), "{err}");
}

#[test]
fn truncation_and_rewritten_history_need_the_previous_checkpoint() {
    let f = fixture();
    let lines = log(30);
    let previous = f.checkpoint(&lines[..25]);
    // Cut back to 20 entries and re-signed: alone it verifies.
    let cut = f.checkpoint(&lines[..20]);
    f.verify(&lines[..20], &cut, None, None::<&[String]>)
        .unwrap();
    let err = f
        .verify(&lines[..20], &cut, Some(&previous), None::<&[String]>)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::RolledBack {
                previous: 25,
                current: 20
            }
        ),
        "{err}"
    );
    // History rewritten, then grown past the previous checkpoint.
    let mut rewritten = lines.clone();
    rewritten[3] = rewritten[3].replace("op_1", "op_2");
    let resigned = f.checkpoint(&rewritten);
    f.verify(&rewritten, &resigned, None, None::<&[String]>)
        .unwrap();
    let err = f
        .verify(&rewritten, &resigned, Some(&previous), None::<&[String]>)
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::PreviousMismatch { size: 25 }),
        "{err}"
    );
    f.verify(
        &lines,
        &f.checkpoint(&lines),
        Some(&previous),
        None::<&[String]>,
    )
    .unwrap();
}

#[test]
fn a_short_log_a_foreign_key_and_garbage_are_refused() {
    let f = fixture();
    let lines = log(10);
    let cp = f.checkpoint(&lines);
    let err = f
        .verify(&lines[..8], &cp, None, None::<&[String]>)
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::Short { found: 8, size: 10 }),
        "{err}"
    );
    let other = fixture();
    let err = other
        .verify(&lines, &cp, None, None::<&[String]>)
        .unwrap_err();
    assert!(matches!(err, VerifyError::Note { .. }), "{err}");
    let mut garbage = lines.clone();
    garbage[2] = "not json".into();
    let err = f
        .verify(&garbage, &cp, None, None::<&[String]>)
        .unwrap_err();
    assert!(matches!(err, VerifyError::NotAnEntry { line: 3 }), "{err}");
}

/// A filtered export: lines with their own proofs, from the tree's nodes.
#[test]
fn a_filtered_export_is_proven_entry_by_entry() {
    use crate::audit::merkle::{NodeId, appended_nodes, inclusion_proof};
    use std::collections::HashMap;

    let f = fixture();
    let lines = log(40);
    let cp = f.checkpoint(&lines);
    let mut nodes: HashMap<NodeId, Hash> = HashMap::new();
    for (i, l) in lines.iter().enumerate() {
        let added = appended_nodes(i as u64, leaf_hash(l.as_bytes()), &mut |id| {
            nodes.get(&id).copied().ok_or(id)
        })
        .unwrap();
        nodes.extend(added);
    }
    let picked = [2usize, 9, 10, 31, 39];
    let proof_line = |i: usize| {
        let hashes: Vec<String> =
            inclusion_proof(i as u64, 40, &mut |id| nodes.get(&id).copied().ok_or(id))
                .unwrap()
                .iter()
                .map(|h| crate::hex::encode(h))
                .collect();
        serde_json::json!({"hashes": hashes, "leaf_index": i, "tree_size": 40}).to_string()
    };
    let log_text: String = picked.iter().map(|&i| format!("{}\n", lines[i])).collect();
    let proofs: String = picked
        .iter()
        .map(|&i| format!("{}\n", proof_line(i)))
        .collect();
    let ok = verify_proven(log_text.as_bytes(), proofs.as_bytes(), &cp, &f.verifier).unwrap();
    assert_eq!((ok.entries, ok.proven_in), (5, Some(40)));
    assert!(
        ok.summary()
            .starts_with("subset verified: 5 entries each proven in the signed log of 40, root ")
    );
    // A changed entry, a proof for another entry, a missing proof line.
    let changed: String = picked
        .iter()
        .map(|&i| {
            let line = if i == 9 {
                lines[i].replace("op_1", "op_9")
            } else {
                lines[i].clone()
            };
            format!("{line}\n")
        })
        .collect();
    let err = verify_proven(changed.as_bytes(), proofs.as_bytes(), &cp, &f.verifier).unwrap_err();
    assert!(
        matches!(err, VerifyError::NotIncluded { seq: 10, line: 2 }),
        "{err}"
    );
    let shifted: String = picked
        .iter()
        .map(|&i| format!("{}\n", proof_line(i + 1)))
        .collect();
    let err = verify_proven(log_text.as_bytes(), shifted.as_bytes(), &cp, &f.verifier).unwrap_err();
    assert!(matches!(err, VerifyError::BadProof { line: 1 }), "{err}");
    let short: String = proofs.lines().take(4).map(|l| format!("{l}\n")).collect();
    let err = verify_proven(log_text.as_bytes(), short.as_bytes(), &cp, &f.verifier).unwrap_err();
    assert!(matches!(err, VerifyError::BadProof { line: 5 }), "{err}");
}

#[test]
fn a_proof_at_the_end_of_the_index_range_is_refused_not_an_overflow() {
    let f = fixture();
    let lines = log(40);
    let cp = f.checkpoint(&lines);
    let huge = format!(
        "{}\n",
        serde_json::json!({"hashes": [], "leaf_index": u64::MAX, "tree_size": 40})
    );
    let one = format!("{}\n", lines[2]);
    let err = verify_proven(one.as_bytes(), huge.as_bytes(), &cp, &f.verifier).unwrap_err();
    assert!(matches!(err, VerifyError::BadProof { line: 1 }), "{err}");
}

#[test]
fn a_malformed_leaves_file_is_ignored_not_fatal() {
    let f = fixture();
    let lines = log(12);
    let cp = f.checkpoint(&lines);
    let log_text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let leaves = "not a hash\n";
    let run = |log: &str| {
        verify(Inputs {
            log: log.as_bytes(),
            checkpoint: &cp,
            verifier: &f.verifier,
            previous: None,
            leaves: Some(leaves.as_bytes()),
        })
    };
    let ok = run(&log_text).unwrap();
    assert_eq!((ok.entries, ok.leaves_ignored), (12, Some(1)));
    // A change is still caught by the root, just not named.
    let changed = log_text.replace("op_1", "op_2");
    let err = run(&changed).unwrap_err();
    assert!(
        matches!(err, VerifyError::RootMismatch { size: 12 }),
        "{err}"
    );
}

#[test]
fn a_checkpoint_of_another_log_and_a_fork_are_named() {
    let f = fixture();
    let lines = log(9);
    // Signed with the right key, but naming another log.
    let mut tree = CompactTree::new();
    for l in &lines {
        tree.push(leaf_hash(l.as_bytes()));
    }
    let foreign = Checkpoint {
        origin: "other.example/log".into(),
        size: 9,
        root: tree.root(),
    };
    let foreign = f.signer.sign(&foreign.text());
    let err = f.verify(&lines, &foreign, None, None).unwrap_err();
    assert!(matches!(err, VerifyError::WrongOrigin { .. }), "{err}");
    // Two checkpoints of the same size with different roots.
    let cp = f.checkpoint(&lines);
    let mut other = lines.clone();
    other[4] = other[4].replace("op_1", "op_5");
    let forked = f.checkpoint(&other);
    let err = f.verify(&lines, &cp, Some(&forked), None).unwrap_err();
    assert!(matches!(err, VerifyError::Fork { size: 9 }), "{err}");
    assert!(err.to_string().contains("forked"), "{err}");
}

/// A filtered export against an earlier checkpoint: the gateway's
/// consistency proof between the two signed trees. A history rewritten
/// before the earlier checkpoint and re-signed with the same key has no
/// proof that passes.
#[test]
fn a_subset_is_checked_against_a_previous_checkpoint_by_its_consistency_proof() {
    use crate::audit::merkle::{NodeId, appended_nodes, consistency_proof};
    use std::collections::HashMap;

    let f = fixture();
    let proof_between = |lines: &[String], first: u64| {
        let mut nodes: HashMap<NodeId, Hash> = HashMap::new();
        for (i, l) in lines.iter().enumerate() {
            let added = appended_nodes(i as u64, leaf_hash(l.as_bytes()), &mut |id| {
                nodes.get(&id).copied().ok_or(id)
            })
            .unwrap();
            nodes.extend(added);
        }
        let second = lines.len() as u64;
        let hashes: Vec<String> =
            consistency_proof(first, second, &mut |id| nodes.get(&id).copied().ok_or(id))
                .unwrap()
                .iter()
                .map(|h| crate::hex::encode(h))
                .collect();
        serde_json::json!({"first": first, "second": second, "hashes": hashes}).to_string()
    };
    let lines = log(40);
    let earlier = f.checkpoint(&lines[..13]);
    let now = f.checkpoint(&lines);
    let proof = proof_between(&lines, 13);
    assert_eq!(
        verify_extends(&now, &earlier, &proof, &f.verifier).unwrap(),
        13
    );

    // Entry 5 rewritten, the tree rebuilt and signed again with the key.
    let mut rewritten = lines.clone();
    rewritten[4] = rewritten[4].replace("op_1", "op_x");
    let resigned = f.checkpoint(&rewritten);
    let proof = proof_between(&rewritten, 13);
    let err = verify_extends(&resigned, &earlier, &proof, &f.verifier).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::NotConsistent {
                previous: 13,
                current: 40
            }
        ),
        "{err}"
    );
    // A proof for other sizes, or no proof at all.
    let other = proof_between(&lines, 12);
    let err = verify_extends(&now, &earlier, &other, &f.verifier).unwrap_err();
    assert!(matches!(err, VerifyError::BadConsistencyProof), "{err}");
    let err = verify_extends(&now, &earlier, "{}", &f.verifier).unwrap_err();
    assert!(matches!(err, VerifyError::BadConsistencyProof), "{err}");
}
