//! `casegate audit verify` over a large exported log, as a compliance
//! officer runs it: the release binary, a real file on disk, its leaf
//! hashes and a signed checkpoint. Run: `bench/audit-verify [entries]`
//! (default 1,000,000). The log is built here with the gateway's own entry
//! model and checkpoint signer (the same bytes an export holds); each
//! figure is one run of the binary, three runs, best and median reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use casegate::audit::AuditEntry;
use casegate::audit::merkle::{CompactTree, leaf_hash};
use casegate::audit::note::{Checkpoint, NoteSigner};

const RUNS: usize = 3;

/// An entry shaped like a centre's sealed download: every id field set,
/// as long as real ones.
fn entry(seq: u64) -> String {
    let id =
        |prefix: &str, n: u64| format!("{prefix}_{:032x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    AuditEntry {
        action: "download.sealed".into(),
        actor: id("centre", seq % 40),
        case_id: Some(id("case", seq % 5000)),
        centre_id: Some(id("centre", seq % 40)),
        client_addr: Some(format!("203.0.113.{}", seq % 250)),
        client_cert_sha256: Some(format!("{:064x}", seq % 40)),
        file_id: Some(id("file", seq)),
        grant_id: Some(id("grant", seq % 9000)),
        outcome: "allow".into(),
        reason: Some("bytes 0-1048575 of 1048576".into()),
        request_id: Some(format!("{:032x}", seq)),
        role: "centre".into(),
        seq: seq as i64,
        time: "2026-11-29T10:00:00Z".into(),
    }
    .to_json_line()
}

fn main() {
    let entries: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let leaves = dir.path().join("audit.jsonl.leaves");
    let started = Instant::now();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
    let mut hashes = std::io::BufWriter::new(std::fs::File::create(&leaves).unwrap());
    let mut tree = CompactTree::new();
    for seq in 1..=entries {
        let line = entry(seq);
        let hash = leaf_hash(line.as_bytes());
        tree.push(hash);
        writeln!(out, "{line}").unwrap();
        writeln!(hashes, "{}", casegate::hex::encode(&hash)).unwrap();
    }
    out.flush().unwrap();
    hashes.flush().unwrap();
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let key = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let signer = NoteSigner::new("bench.example/casegate-audit", key).unwrap();
    let checkpoint = Checkpoint {
        origin: signer.name().into(),
        size: entries,
        root: tree.root(),
    };
    let cp = dir.path().join("audit.jsonl.checkpoint");
    std::fs::write(&cp, signer.sign(&checkpoint.text())).unwrap();
    let vkey = dir.path().join("audit.vkey");
    std::fs::write(&vkey, signer.verifier_key()).unwrap();
    let size = std::fs::metadata(&log).unwrap().len();
    println!(
        "built {entries} entries ({:.0} MiB, {} bytes per line) in {:.1} s",
        size as f64 / 1048576.0,
        size / entries.max(1),
        started.elapsed().as_secs_f64()
    );
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let run = Command::new(env!("CARGO_BIN_EXE_casegate"))
            .args(["audit", "verify", "--log"])
            .arg(&log)
            .arg("--checkpoint")
            .arg(&cp)
            .arg("--public-key")
            .arg(&vkey)
            .output()
            .unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(
            String::from_utf8_lossy(&run.stdout)
                .starts_with(&format!("log verified: {entries} entries"))
        );
        times.push(elapsed);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "casegate audit verify, {entries} entries (with leaf hashes): best {:.2} s, median {:.2} s ({:.0} MiB/s)",
        times[0],
        times[RUNS / 2],
        size as f64 / 1048576.0 / times[RUNS / 2]
    );
}
