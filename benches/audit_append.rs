//! What the Merkle tree costs on the write path: audit entries appended one
//! transaction each (as every request does, `synchronous=FULL`), with the
//! tree (`db::audit::record`: the entry, its leaf and the nodes it
//! completes) and without it (the entry's row alone, the statement the log
//! used before the tree), in the same run on the same disk; and the
//! database bytes per entry of each. Run: `bench/audit-append [entries]`
//! (default 20,000; best of three passes each, alternating).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Instant;

use casegate::audit::{NewEntry, Outcome, RequestContext};
use casegate::clock::Timestamp;
use casegate::db::Db;

const PASSES: usize = 3;

fn ctx(i: u64) -> RequestContext {
    RequestContext {
        actor: format!("upl_{:032x}", i % 97),
        role: "patient".into(),
        client_addr: Some(format!("198.51.100.{}", i % 250)),
        client_cert_sha256: None,
        request_id: Some(format!("{:032x}", i)),
        ..Default::default()
    }
}

fn entry(i: u64) -> NewEntry {
    NewEntry::new("patient.case.read", Outcome::Allow).case(format!("case_{:032x}", i % 5000))
}

async fn open(dir: &Path, name: &str) -> Db {
    Db::open(&format!("sqlite://{}", dir.join(name).display()))
        .await
        .unwrap()
}

/// Entries per second through the gateway's one writer (entry + tree).
async fn with_tree(db: &Db, n: u64) -> f64 {
    let started = Instant::now();
    for i in 0..n {
        casegate::db::audit::record(db, &ctx(i), Timestamp::now_utc(), &entry(i))
            .await
            .unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Entries per second of the row alone, one transaction each.
async fn without_tree(db: &Db, n: u64) -> f64 {
    let started = Instant::now();
    for i in 0..n {
        let (c, e) = (ctx(i), entry(i));
        let mut tx = db.begin().await.unwrap();
        sqlx::query(
            "INSERT INTO audit_log (seq, time, actor, role, action, case_id, file_id, centre_id, grant_id,
                 outcome, reason, client_addr, client_cert_sha256, request_id)
             SELECT COALESCE(MAX(seq), 0) + 1, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 FROM audit_log",
        )
        .bind(Timestamp::now_utc())
        .bind(&c.actor)
        .bind(&c.role)
        .bind(e.action)
        .bind(&e.case_id)
        .bind(&e.file_id)
        .bind(&e.centre_id)
        .bind(&e.grant_id)
        .bind(e.outcome.as_str())
        .bind(&e.reason)
        .bind(&c.client_addr)
        .bind(&c.client_cert_sha256)
        .bind(&c.request_id)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Bytes the database holds, WAL checkpointed into the main file.
async fn bytes(db: &Db) -> u64 {
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(db.pool())
        .await
        .unwrap();
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(db.pool())
        .await
        .unwrap();
    (pages * size) as u64
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let (mut best_with, mut best_without) = (0f64, 0f64);
    let (mut bytes_with, mut bytes_without) = (0u64, 0u64);
    for pass in 0..PASSES {
        let a = open(dir.path(), &format!("with-{pass}.db")).await;
        let b = open(dir.path(), &format!("without-{pass}.db")).await;
        let empty = bytes(&a).await;
        best_without = best_without.max(without_tree(&b, n).await);
        best_with = best_with.max(with_tree(&a, n).await);
        bytes_with = (bytes(&a).await - empty) / n;
        bytes_without = (bytes(&b).await - empty) / n;
    }
    println!("{n} audit entries, one transaction each (synchronous=FULL), best of {PASSES}:");
    println!(
        "  without the tree: {best_without:>8.0} entries/s, {bytes_without} database bytes per entry"
    );
    println!(
        "  with the tree:    {best_with:>8.0} entries/s, {bytes_with} database bytes per entry"
    );
    println!(
        "  with / without:   {:.0} %",
        100.0 * best_with / best_without
    );
}
