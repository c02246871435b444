//! Verifying a filtered export (`audit export --case-id …`): it holds only
//! some entries, so instead of recomputing the root, each entry is checked
//! with its own inclusion proof (the `.proofs` file, line by line) against
//! the signed checkpoint's root. This proves that every entry it holds is,
//! byte for byte, in the signed log at its sequence number; it cannot prove
//! that the filter returned every matching entry. With an earlier
//! checkpoint and the consistency proof the export saved
//! ([`verify_extends`]), it also proves the signed log extends that
//! checkpoint: nothing it covered was cut away or rewritten since.

use std::io::BufRead;

use serde::Deserialize;

use super::{Verified, VerifyError, checkpoint, checkpoints, seq_of};
use crate::audit::merkle::{Hash, leaf_hash, verify_consistency, verify_inclusion};
use crate::audit::note::NoteVerifier;

/// One line of the `.proofs` file.
#[derive(Deserialize)]
struct ProofLine {
    leaf_index: u64,
    tree_size: u64,
    hashes: Vec<String>,
}

fn read_line(
    reader: &mut impl BufRead,
    buf: &mut String,
    what: &'static str,
) -> Result<bool, VerifyError> {
    buf.clear();
    let read = reader
        .read_line(buf)
        .map_err(|error| VerifyError::Io { what, error })?;
    Ok(read > 0)
}

fn hashes(proof: &ProofLine) -> Option<Vec<Hash>> {
    proof
        .hashes
        .iter()
        .map(|h| crate::hex::decode(h).and_then(|b| Hash::try_from(b).ok()))
        .collect()
}

/// Verifies each line of `log` with the proof on the same line of
/// `proofs`, against the checkpoint `note`.
pub fn verify_proven(
    mut log: impl BufRead,
    mut proofs: impl BufRead,
    note: &str,
    verifier: &NoteVerifier,
) -> Result<Verified, VerifyError> {
    let current = checkpoint(verifier, note, "the checkpoint")?;
    let (mut line, mut proof_text) = (String::new(), String::new());
    let (mut n, mut last_seq) = (0u64, 0u64);
    while read_line(&mut log, &mut line, "the log")? {
        n += 1;
        let text = line.strip_suffix('\n').unwrap_or(&line);
        let seq = seq_of(text).ok_or(VerifyError::NotAnEntry { line: n })?;
        if seq <= last_seq {
            return Err(VerifyError::OutOfSequence {
                expected: last_seq + 1,
                found: seq,
                line: n,
            });
        }
        last_seq = seq;
        if !read_line(&mut proofs, &mut proof_text, "the proofs file")? {
            return Err(VerifyError::BadProof { line: n });
        }
        let proof: ProofLine =
            serde_json::from_str(&proof_text).map_err(|_| VerifyError::BadProof { line: n })?;
        let path = hashes(&proof).ok_or(VerifyError::BadProof { line: n })?;
        if proof.leaf_index.checked_add(1) != Some(seq) || proof.tree_size != current.size {
            return Err(VerifyError::BadProof { line: n });
        }
        if verify_inclusion(
            seq - 1,
            current.size,
            &leaf_hash(text.as_bytes()),
            &path,
            &current.root,
        )
        .is_err()
        {
            return Err(VerifyError::NotIncluded { seq, line: n });
        }
    }
    if read_line(&mut proofs, &mut proof_text, "the proofs file")? {
        return Err(VerifyError::BadProof { line: n + 1 });
    }
    Ok(Verified {
        entries: n,
        root: current.root,
        key_name: verifier.name().to_owned(),
        unsigned: 0,
        proven_in: Some(current.size),
        leaves_ignored: None,
    })
}

/// The consistency proof a filtered export saves (`FILE.consistency`), as
/// the gateway's proof route answers it.
#[derive(Deserialize)]
struct ConsistencyProof {
    first: u64,
    second: u64,
    hashes: Vec<String>,
}

/// Checks that the signed log of checkpoint `note` extends the earlier
/// checkpoint `previous` (both signed by `verifier`), with the RFC 9162
/// consistency proof `proof` (JSON). Returns the earlier checkpoint's size.
pub fn verify_extends(
    note: &str,
    previous: &str,
    proof: &str,
    verifier: &NoteVerifier,
) -> Result<u64, VerifyError> {
    let (current, previous) = checkpoints(verifier, note, Some(previous))?;
    let Some(previous) = previous else {
        return Err(VerifyError::BadConsistencyProof);
    };
    let proof: ConsistencyProof =
        serde_json::from_str(proof).map_err(|_| VerifyError::BadConsistencyProof)?;
    let path: Option<Vec<Hash>> = proof
        .hashes
        .iter()
        .map(|h| crate::hex::decode(h).and_then(|b| Hash::try_from(b).ok()))
        .collect();
    let path = path.ok_or(VerifyError::BadConsistencyProof)?;
    if (proof.first, proof.second) != (previous.size, current.size) {
        return Err(VerifyError::BadConsistencyProof);
    }
    verify_consistency(
        previous.size,
        current.size,
        &previous.root,
        &current.root,
        &path,
    )
    .map_err(|_| VerifyError::NotConsistent {
        previous: previous.size,
        current: current.size,
    })?;
    Ok(previous.size)
}
