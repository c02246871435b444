//! Offline verification of an exported audit log (`casegate audit verify`).
//!
//! One streaming pass over the JSONL export: each line's sequence number
//! must be the next one (a gap is a deleted entry; a repeat or a step back
//! an inserted, duplicated or reordered one), and the first `size` lines,
//! hashed as leaves, must give the root the signed checkpoint states. A
//! previous checkpoint must be a prefix: its root is recomputed from the
//! log's first lines, so a truncated or rewritten past shows.
//!
//! When the root differs but the entries are in sequence, the export's
//! leaf hashes (the gateway's stored leaves, `<log>.leaves`) name the
//! entry: they are trusted only if they themselves hash to the signed
//! root, and then the first line whose hash differs from its leaf is the
//! changed entry. Memory is O(log n); nothing is loaded whole.

use std::io::BufRead;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::merkle::{CompactTree, Hash, leaf_hash};
use super::note::{Checkpoint, NoteError, NoteVerifier};

/// What a successful verification proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Entries covered by the checkpoint.
    pub entries: u64,
    pub root: Hash,
    pub key_name: String,
    /// Entries after the checkpoint's size (in sequence, not yet signed).
    pub unsigned: u64,
    /// A filtered export: each entry proven included in the signed tree of
    /// this size.
    pub proven_in: Option<u64>,
    /// The leaves file was malformed at this line and ignored (it only
    /// helps name a changed entry; the root decides).
    pub leaves_ignored: Option<u64>,
}

impl Verified {
    /// `log verified: N entries, root <b64>, signed by <key name>`; for a
    /// subset (a filtered export), `subset verified: …` saying that
    /// completeness is not proven: the entries held are in the signed log,
    /// but entries left out (deleted lines) are not noticed.
    pub fn summary(&self) -> String {
        let (root, key) = (STANDARD.encode(self.root), &self.key_name);
        match self.proven_in {
            Some(size) => format!(
                "subset verified: {} entries each proven in the signed log of {size}, root {root}, signed by {key}; completeness NOT proven",
                self.entries
            ),
            None => format!(
                "log verified: {} entries, root {root}, signed by {key}",
                self.entries
            ),
        }
    }
}

/// Why a log does not verify; the first failing entry is named.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{what}: {error}")]
    Note {
        what: &'static str,
        error: NoteError,
    },
    #[error("reading {what}: {error}")]
    Io {
        what: &'static str,
        error: std::io::Error,
    },
    #[error(
        "{what} names the log {origin:?}, but the key is {expected:?}'s: it is not a checkpoint of this log"
    )]
    WrongOrigin {
        what: &'static str,
        origin: String,
        expected: String,
    },
    #[error(
        "the previous checkpoint and this one both sign {size} entries, with different roots: the log was forked (two histories signed with the same key)"
    )]
    Fork { size: u64 },
    #[error("line {line} is not an audit entry (no sequence number)")]
    NotAnEntry { line: u64 },
    #[error(
        "entry {expected} is missing (line {line} holds entry {found} instead): deleted, or moved"
    )]
    Missing {
        expected: u64,
        found: u64,
        line: u64,
    },
    #[error(
        "entry {found} at line {line} is out of sequence (entry {expected} was expected): inserted, duplicated or moved"
    )]
    OutOfSequence {
        expected: u64,
        found: u64,
        line: u64,
    },
    #[error(
        "entry {seq} (line {seq}) was modified: it does not hash to the leaf the checkpoint signs"
    )]
    Modified { seq: u64 },
    #[error(
        "the log ends after {found} entries, but the checkpoint signs {size}: entries were removed"
    )]
    Short { found: u64, size: u64 },
    #[error(
        "the log's first {size} entries do not hash to the checkpoint's root (the entry cannot be named without a matching leaves file)"
    )]
    RootMismatch { size: u64 },
    #[error(
        "the previous checkpoint signs {previous} entries, the current one only {current}: the log was truncated or rolled back"
    )]
    RolledBack { previous: u64, current: u64 },
    #[error(
        "the log's first {size} entries do not hash to the previous checkpoint's root: history before it was rewritten"
    )]
    PreviousMismatch { size: u64 },
    #[error("leaves file line {line} is not a hex SHA-256 hash")]
    BadLeaf { line: u64 },
    #[error(
        "proofs file line {line} is not the inclusion proof of the log's line {line} in the checkpoint's tree"
    )]
    BadProof { line: u64 },
    #[error(
        "entry {seq} (line {line}) is not in the signed log: its inclusion proof does not lead to the checkpoint's root (modified or made up)"
    )]
    NotIncluded { seq: u64, line: u64 },
    #[error(
        "the consistency proof is not one between the previous checkpoint and this one (export again with --previous-checkpoint)"
    )]
    BadConsistencyProof,
    #[error(
        "the signed log of {current} entries does not extend the previous checkpoint of {previous}: history it covered was cut away or rewritten"
    )]
    NotConsistent { previous: u64, current: u64 },
}

/// The inputs: the log, the checkpoint note, the verifier key, and
/// optionally a previous checkpoint and the export's leaf hashes.
pub struct Inputs<'a, L: BufRead, H: BufRead> {
    pub log: L,
    pub checkpoint: &'a str,
    pub verifier: &'a NoteVerifier,
    pub previous: Option<&'a str>,
    pub leaves: Option<H>,
}

fn checkpoint(
    verifier: &NoteVerifier,
    note: &str,
    what: &'static str,
) -> Result<Checkpoint, VerifyError> {
    let note_error = |error| VerifyError::Note { what, error };
    let text = verifier.verify(note).map_err(note_error)?;
    let parsed = Checkpoint::parse(text).map_err(note_error)?;
    // C2SP: the origin line must be the log the verifier expects.
    if parsed.origin != verifier.name() {
        return Err(VerifyError::WrongOrigin {
            what,
            origin: parsed.origin,
            expected: verifier.name().to_owned(),
        });
    }
    Ok(parsed)
}

/// The `"seq":N` of a canonical entry line (its last-but-one field).
fn seq_of(line: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: u64,
    }
    serde_json::from_str::<Seq>(line).ok().map(|s| s.seq)
}

/// The first thing found wrong while streaming, by line.
#[derive(Default)]
struct Findings {
    out_of_sequence: Option<VerifyError>,
    /// First line (1-based) whose hash differs from the leaves file.
    leaf_differs: Option<u64>,
    /// The leaves file's first malformed line: the file is ignored.
    leaves_ignored: Option<u64>,
}

struct Leaves<H: BufRead> {
    reader: H,
    tree: CompactTree,
    buf: String,
}

impl<H: BufRead> Leaves<H> {
    /// The next stored leaf hash, added to the leaves' own tree.
    fn next(&mut self) -> Result<Option<Hash>, VerifyError> {
        self.buf.clear();
        let read = self
            .reader
            .read_line(&mut self.buf)
            .map_err(|error| VerifyError::Io {
                what: "the leaves file",
                error,
            })?;
        if read == 0 {
            return Ok(None);
        }
        let line = self.tree.size() + 1;
        let hash = crate::hex::decode(self.buf.trim_end())
            .and_then(|h| Hash::try_from(h).ok())
            .ok_or(VerifyError::BadLeaf { line })?;
        self.tree.push(hash);
        Ok(Some(hash))
    }
}

impl Findings {
    /// Compares line `n`'s hash with the leaves file's next hash. The file
    /// is only a hint: a malformed one is dropped, never fatal.
    fn compare_leaf<H: BufRead>(&mut self, leaves: &mut Option<Leaves<H>>, n: u64, hash: Hash) {
        let stored = match leaves.as_mut().map(Leaves::next) {
            Some(Ok(stored)) => stored,
            Some(Err(_)) => {
                self.leaves_ignored = Some(n);
                *leaves = None;
                None
            }
            None => None,
        };
        if stored.is_some_and(|stored| stored != hash) && self.leaf_differs.is_none() {
            self.leaf_differs = Some(n);
        }
    }
}

/// Checks one line's sequence number (the first anomaly is kept).
fn check_sequence(findings: &mut Findings, n: u64, seq: u64) {
    if seq == n || findings.out_of_sequence.is_some() {
        return;
    }
    findings.out_of_sequence = Some(if seq > n {
        VerifyError::Missing {
            expected: n,
            found: seq,
            line: n,
        }
    } else {
        VerifyError::OutOfSequence {
            expected: n,
            found: seq,
            line: n,
        }
    });
}

/// The signed checkpoint, and the previous one if given (which must not be
/// larger).
fn checkpoints(
    verifier: &NoteVerifier,
    note: &str,
    previous: Option<&str>,
) -> Result<(Checkpoint, Option<Checkpoint>), VerifyError> {
    let current = checkpoint(verifier, note, "the checkpoint")?;
    let previous = previous
        .map(|p| checkpoint(verifier, p, "the previous checkpoint"))
        .transpose()?;
    if let Some(p) = &previous
        && p.size > current.size
    {
        return Err(VerifyError::RolledBack {
            previous: p.size,
            current: current.size,
        });
    }
    if let Some(p) = &previous
        && p.size == current.size
        && p.root != current.root
    {
        return Err(VerifyError::Fork { size: p.size });
    }
    Ok((current, previous))
}

/// Verifies the log; see the module doc.
pub fn verify<L: BufRead, H: BufRead>(inputs: Inputs<'_, L, H>) -> Result<Verified, VerifyError> {
    let Inputs {
        mut log, verifier, ..
    } = inputs;
    let (current, previous) = checkpoints(verifier, inputs.checkpoint, inputs.previous)?;
    let mut leaves = inputs.leaves.map(|reader| Leaves {
        reader,
        tree: CompactTree::new(),
        buf: String::new(),
    });
    let (mut tree, mut findings) = (CompactTree::new(), Findings::default());
    let (mut signed_root, mut line, mut n) = (None, String::new(), 0u64);
    loop {
        if n == current.size {
            signed_root = Some(tree.root());
        }
        if let Some(p) = previous
            .as_ref()
            .filter(|p| p.size == n && tree.root() != p.root)
        {
            return Err(VerifyError::PreviousMismatch { size: p.size });
        }
        line.clear();
        let read = log.read_line(&mut line).map_err(|error| VerifyError::Io {
            what: "the log",
            error,
        })?;
        if read == 0 {
            break;
        }
        n += 1;
        let text = line.strip_suffix('\n').unwrap_or(&line);
        let seq = seq_of(text).ok_or(VerifyError::NotAnEntry { line: n })?;
        check_sequence(&mut findings, n, seq);
        if n > current.size {
            continue;
        }
        let hash = leaf_hash(text.as_bytes());
        tree.push(hash);
        findings.compare_leaf(&mut leaves, n, hash);
    }
    let Some(root) = signed_root.filter(|r| *r == current.root) else {
        return Err(explain(n, &current, findings, leaves));
    };
    if let Some(error) = findings.out_of_sequence {
        return Err(error);
    }
    Ok(Verified {
        entries: current.size,
        root,
        key_name: verifier.name().to_owned(),
        unsigned: n - current.size,
        proven_in: None,
        leaves_ignored: findings.leaves_ignored,
    })
}

/// The root did not match: the first entry out of sequence or whose hash
/// differs from a trustworthy leaves file (whichever comes first), else a
/// short log or an unnamed mismatch.
fn explain<H: BufRead>(
    lines: u64,
    current: &Checkpoint,
    findings: Findings,
    leaves: Option<Leaves<H>>,
) -> VerifyError {
    let modified = match leaves {
        Some(mut leaves) => {
            // The leaves count only if all of them hash to the signed root.
            while leaves.tree.size() < current.size {
                match leaves.next() {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            let trusted = leaves.tree.size() == current.size && leaves.tree.root() == current.root;
            findings.leaf_differs.filter(|_| trusted)
        }
        None => None,
    };
    let order_line = |e: &VerifyError| match e {
        VerifyError::Missing { line, .. } | VerifyError::OutOfSequence { line, .. } => *line,
        _ => u64::MAX,
    };
    match (findings.out_of_sequence, modified) {
        (Some(order), Some(seq)) if seq < order_line(&order) => VerifyError::Modified { seq },
        (Some(order), _) => order,
        (None, Some(seq)) => VerifyError::Modified { seq },
        (None, None) if lines < current.size => VerifyError::Short {
            found: lines,
            size: current.size,
        },
        (None, None) => VerifyError::RootMismatch { size: current.size },
    }
}

mod filtered;
pub use filtered::{verify_extends, verify_proven};

#[cfg(test)]
mod tests;
