//! What decides whether several gateway replicas on one PostgreSQL
//! database scale: the shared serialisation points, measured on the
//! database layer itself in one run. Audit appends per second (each a
//! write transaction with its tree nodes, as every request writes) on
//! SQLite, on PostgreSQL with one replica writing, and with two replicas
//! (two pools, as two gateways) writing at once; lease acquire + renew per
//! second; and reads of one upload row (what `HEAD /tus/{id}` asks of the
//! database) per second on each engine.
//!
//! Run: `CASEGATE_BENCH_POSTGRES=postgres://USER:PW@HOST/postgres cargo bench
//! --bench db_engines [-- SECS]` (the user must be allowed to create
//! databases; scripts/postgres-dev.sh starts a throwaway one). Without the
//! variable only SQLite is measured.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use casegate::audit::{NewEntry, Outcome, RequestContext};
use casegate::clock::Timestamp;
use casegate::db::Db;
use sqlx::Connection;

fn ctx(i: u64) -> RequestContext {
    RequestContext {
        actor: format!("upl_{:032x}", i % 97),
        role: "patient".into(),
        client_addr: Some(format!("198.51.100.{}", i % 250)),
        request_id: Some(format!("{i:032x}")),
        ..Default::default()
    }
}

fn entry(i: u64) -> NewEntry {
    NewEntry::new("patient.case.read", Outcome::Allow).case(format!("case_{:032x}", i % 5000))
}

/// Appends for `secs` from `writers` pools at once (each one writer, as a
/// gateway's requests are); entries per second over all of them.
async fn appends(dbs: &[Db], tasks_per_db: usize, secs: u64) -> f64 {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut handles = Vec::new();
    for (w, db) in dbs.iter().enumerate() {
        for t in 0..tasks_per_db {
            let db = db.clone();
            handles.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    let i = (w * 1000 + t) as u64 * 1_000_000 + n;
                    casegate::db::audit::record(&db, &ctx(i), Timestamp::now_utc(), &entry(i))
                        .await
                        .unwrap();
                    n += 1;
                }
                n
            }));
        }
    }
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    total as f64 / secs as f64
}

/// Lease acquire + renew pairs per second, one holder after another.
async fn leases(db: &Db, secs: u64) -> f64 {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut n = 0i64;
    while Instant::now() < until {
        let name = format!("upload:bench{}", n % 64);
        assert!(
            casegate::db::leases::acquire(db, &name, "bench", 30_000)
                .await
                .unwrap()
        );
        assert!(
            casegate::db::leases::renew(db, &name, "bench", 30_000)
                .await
                .unwrap()
        );
        casegate::db::leases::release(db, &name, "bench")
            .await
            .unwrap();
        n += 1;
    }
    n as f64 / secs as f64
}

/// Reads of one upload's row per second from 16 tasks (as concurrent
/// `HEAD` requests do), after an upload row exists.
async fn upload_reads(db: &Db, secs: u64) -> f64 {
    sqlx::raw_sql(
        "INSERT INTO cases (case_id, created_at, state, upload_expires_at)
           VALUES ('case_bench', '2026-01-01T00:00:00Z', 'open', '2099-01-01T00:00:00Z');
         INSERT INTO uploads (upload_id, case_id, file_id, upload_length, store_progress,
             created_at, expires_at, state)
           VALUES ('up_bench', 'case_bench', 'file_bench', 1000, '{}',
             '2026-01-01T00:00:00Z', '2099-01-01T00:00:00Z', 'active');",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let until = Instant::now() + Duration::from_secs(secs);
    let mut handles = Vec::new();
    for _ in 0..16 {
        let db = db.clone();
        handles.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                let _: (i64, i64) = sqlx::query_as(
                    "SELECT upload_offset, upload_length FROM uploads WHERE upload_id = $1",
                )
                .bind("up_bench")
                .fetch_one(db.pool())
                .await
                .unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    total as f64 / secs as f64
}

async fn postgres(admin: &str, name: &str) -> String {
    let mut conn = sqlx::AnyConnection::connect(admin).await.unwrap();
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

#[tokio::main]
async fn main() {
    sqlx::any::install_default_drivers();
    let secs: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let sqlite = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let lite = Db::open(&sqlite("a.db")).await.unwrap();
    println!("{secs} s per figure");
    println!(
        "audit appends/s, SQLite, one gateway (16 tasks): {:.0}",
        appends(std::slice::from_ref(&lite), 16, secs).await
    );
    println!(
        "lease acquire+renew+release/s, SQLite: {:.0}",
        leases(&lite, secs).await
    );
    println!(
        "upload row reads/s, SQLite (16 tasks): {:.0}",
        upload_reads(&lite, secs).await
    );
    let Ok(admin) = std::env::var("CASEGATE_BENCH_POSTGRES") else {
        println!("(CASEGATE_BENCH_POSTGRES unset: PostgreSQL not measured)");
        return;
    };
    let url = postgres(&admin, "cg_bench_engines").await;
    let (a, b) = (Db::open(&url).await.unwrap(), Db::open(&url).await.unwrap());
    let one = appends(std::slice::from_ref(&a), 16, secs).await;
    let two = appends(&[a.clone(), b.clone()], 8, secs).await;
    println!("audit appends/s, PostgreSQL, one replica (16 tasks): {one:.0}");
    println!(
        "audit appends/s, PostgreSQL, two replicas (8 tasks each): {two:.0} ({:.0} % of one)",
        100.0 * two / one
    );
    println!(
        "lease acquire+renew+release/s, PostgreSQL: {:.0}",
        leases(&a, secs).await
    );
    println!(
        "upload row reads/s, PostgreSQL (16 tasks): {:.0}",
        upload_reads(&a, secs).await
    );
}
