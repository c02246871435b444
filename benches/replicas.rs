//! Several replicas on PostgreSQL + S3 (`bench/replicas`): what decides
//! whether a second replica would add throughput on a bigger machine, in
//! one run.
//!
//! (a) 16 concurrent uploads (each `--mib` MiB, default 64, in 8 MiB
//!     PATCHes as tus clients send them) through one replica, then spread
//!     over two replicas (8 each), on one PostgreSQL database and one S3
//!     bucket: aggregate MiB/s, the two-replica/one-replica ratio, and the
//!     CPU seconds each process spent — each replica, PostgreSQL (all its
//!     backends) and the S3 server (if its pid is given) — as shares of
//!     all CPU spent in the phase. Rounds alternate one/two; medians.
//! (b) `HEAD /tus/{id}` (the resume question every tus client asks)
//!     requests per second from 16 clients, on a PostgreSQL replica and on
//!     a gateway with its embedded SQLite, same binary, same run.
//!
//! The clients run in this process on the same machine; with 2 cores the
//! replicas cannot outrun one — the CPU shares say what each part costs.
//! Audit appends and lease operations per second, the serialisation
//! points themselves, are `cargo bench --bench db_engines` (bench/replicas
//! runs both).
//!
//! Needs `CASEGATE_BENCH_POSTGRES` (an admin URL that may create
//! databases), `S3_ENDPOINT`, `S3_REGION`, `S3_BUCKET`, `S3_ACCESS_KEY`,
//! `S3_SECRET_KEY`, and optionally `S3_SERVER_PID` (scripts/garage-dev.sh's
//! env file and pid file; bench/replicas sets them up).
//!
//! `cargo bench --bench replicas -- [--mib N] [--rounds N] [--head-secs N]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;
use support::*;

struct Args {
    mib: u64,
    rounds: usize,
    head_secs: u64,
}

fn args() -> Args {
    let mut a = Args {
        mib: 64,
        rounds: 3,
        head_secs: 10,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let next = || argv.get(i + 1).and_then(|v| v.parse().ok());
        match argv[i].as_str() {
            "--mib" => a.mib = next().unwrap(),
            "--rounds" => a.rounds = next().unwrap() as usize,
            "--head-secs" => a.head_secs = next().unwrap(),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set (see bench/replicas)"))
}

async fn create_database(admin: &str) -> String {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let name = format!(
        "cg_bench_{:016x}",
        u64::from_le_bytes(casegate::random::array::<8>())
    );
    let mut conn = sqlx::AnyConnection::connect(admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

async fn drop_database(admin: &str, url: &str) {
    use sqlx::Connection;
    let (_, name) = url.rsplit_once('/').unwrap();
    let mut conn = sqlx::AnyConnection::connect(admin).await.unwrap();
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await;
}

/// A `casegate serve` replica: its process and the address it listens on.
struct Replica {
    child: Child,
    base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two replicas' shared directory (certificate, keys) and configs, as
/// docs/deploy.md lays them out: same database, same bucket, same keys.
struct Layout {
    dir: tempfile::TempDir,
    db: String,
}

impl Layout {
    fn config(&self, name: &str) -> PathBuf {
        let text = format!(
            r#"[server]
listen = "127.0.0.1:0"
centre_listen = "127.0.0.1:0"
data_dir = "{name}-data"
shutdown_grace_secs = 1
[tls]
cert = "shared/certs/server.pem"
key = "shared/certs/server-key.pem"
[database]
url = "{db}"
[storage]
backend = "s3"
[storage.s3]
endpoint = "{endpoint}"
region = "{region}"
bucket = "{bucket}"
access_key = "{access}"
secret_key = "{secret}"
[keys]
master_key_file = "shared/master.key"
[audit]
signing_key_file = "shared/audit-signing.key"
[uploads]
max_concurrent_uploads = 64
[limits]
auth_failures_per_minute = 100000
"#,
            db = self.db,
            endpoint = env("S3_ENDPOINT"),
            region = env("S3_REGION"),
            bucket = env("S3_BUCKET"),
            access = env("S3_ACCESS_KEY"),
            secret = env("S3_SECRET_KEY"),
        );
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts a replica; on the first start (`first`), the coordinator
    /// token it prints.
    fn start(&self, name: &str, first: bool) -> (Replica, Option<String>) {
        let mut child = Command::new(gateway_bin())
            .current_dir(self.dir.path())
            .env_remove("CASEGATE_CONFIG")
            .env("CASEGATE_LOG", "warn")
            .arg("serve")
            .arg("--config")
            .arg(self.config(name))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (mut base, mut token, mut centre) = (String::new(), None, false);
        // The listening line, the centre listener's, then (first start
        // only) the tokens.
        while !centre || (first && token.is_none()) {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(a) = line.strip_prefix("listening on ") {
                base = a.to_owned();
            }
            centre |= line.starts_with("centre listener on ");
            if let Some(t) = line.strip_prefix("coordinator token: ") {
                token = Some(t.to_owned());
            }
        }
        assert!(!base.is_empty(), "replica {name} did not start");
        std::thread::spawn(move || for _ in lines {});
        (Replica { child, base }, token)
    }
}

/// CPU seconds of every PostgreSQL process on the machine (the
/// benchmark's database server is the only one expected).
fn postgres_cpu() -> f64 {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "postgres" {
            total += std::panic::catch_unwind(|| cpu_seconds(pid)).unwrap_or(0.0);
        }
    }
    total
}

fn s3_cpu() -> Option<f64> {
    let pid: u32 = std::env::var("S3_SERVER_PID").ok()?.trim().parse().ok()?;
    Some(cpu_seconds(pid))
}

#[derive(Default, Clone, Copy)]
struct Cpu {
    replicas: [f64; 2],
    postgres: f64,
    s3: f64,
}

fn cpu_now(replicas: &[&Replica]) -> Cpu {
    let mut c = Cpu {
        postgres: postgres_cpu(),
        s3: s3_cpu().unwrap_or(0.0),
        ..Cpu::default()
    };
    for (i, r) in replicas.iter().enumerate() {
        c.replicas[i] = cpu_seconds(r.child.id());
    }
    c
}

struct Phase {
    mib_s: f64,
    cpu: Cpu,
}

/// 16 uploads at once, upload `i` through `replicas[i % n]`.
async fn uploads(c: &reqwest::Client, replicas: &[&Replica], token: &str, mib: u64) -> Phase {
    let before = cpu_now(replicas);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (c, base, token) = (
            c.clone(),
            replicas[i % replicas.len()].base.clone(),
            token.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            upload_at(&c, &base, &token, mib * MIB, 8 * MIB).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let after = cpu_now(replicas);
    let mut cpu = Cpu {
        postgres: after.postgres - before.postgres,
        s3: after.s3 - before.s3,
        ..Cpu::default()
    };
    for i in 0..replicas.len() {
        cpu.replicas[i] = after.replicas[i] - before.replicas[i];
    }
    Phase {
        mib_s: mib_s(16 * mib * MIB, secs),
        cpu,
    }
}

/// `HEAD /tus/{id}` per second from 16 clients for `secs`.
async fn heads(c: &reqwest::Client, base: &str, token: &str, secs: u64) -> f64 {
    let url = create_at(c, base, token, 1_000_000).await;
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (c, url, token, done) = (c.clone(), url.clone(), token.to_owned(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let resp = c
                    .head(&url)
                    .bearer_auth(&token)
                    .header("Tus-Resumable", "1.0.0")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / secs as f64
}

/// A new case; its id and upload token.
async fn new_case(c: &reqwest::Client, base: &str, coordinator: &str) -> (String, String) {
    let v: serde_json::Value = c
        .post(format!("{base}/api/v1/cases"))
        .bearer_auth(coordinator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        v["case_id"].as_str().unwrap().to_owned(),
        v["upload_token"].as_str().unwrap().to_owned(),
    )
}

/// Deletes a case: its objects leave the bucket.
async fn delete_case(c: &reqwest::Client, base: &str, coordinator: &str, case: &str) {
    let resp = c
        .delete(format!("{base}/api/v1/cases/{case}"))
        .bearer_auth(coordinator)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
}

/// One upload phase on a case of its own, deleted afterwards.
async fn phase(c: &reqwest::Client, replicas: &[&Replica], coordinator: &str, mib: u64) -> Phase {
    let base = &replicas[0].base;
    let (case, token) = new_case(c, base, coordinator).await;
    let p = uploads(c, replicas, &token, mib).await;
    delete_case(c, base, coordinator, &case).await;
    p
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn shares(p: &Phase, n: usize) -> String {
    let total: f64 = p.cpu.replicas[..n].iter().sum::<f64>() + p.cpu.postgres + p.cpu.s3;
    let pct = |x: f64| 100.0 * x / total.max(f64::EPSILON);
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "replica {} {:.0} %, ",
            (b'A' + i as u8) as char,
            pct(p.cpu.replicas[i])
        ));
    }
    s.push_str(&format!(
        "PostgreSQL {:.0} %, S3 server {:.0} % of {total:.1} CPU-s",
        pct(p.cpu.postgres),
        pct(p.cpu.s3)
    ));
    s
}

#[tokio::main]
async fn main() {
    let a = args();
    let admin = env("CASEGATE_BENCH_POSTGRES");
    let db = create_database(&admin).await;
    let layout = Layout {
        dir: tempfile::tempdir().unwrap(),
        db: db.clone(),
    };
    std::fs::create_dir_all(layout.dir.path().join("shared")).unwrap();
    let (ra, coordinator) = layout.start("a", true);
    let coordinator = coordinator.expect("the first replica prints the coordinator token");
    let (rb, _) = layout.start("b", false);
    let ca = std::fs::read(layout.dir.path().join("shared/certs/dev-ca.pem")).unwrap();
    let c = client(&ca);
    println!(
        "16 concurrent uploads of {} MiB (8 MiB PATCHes), PostgreSQL + S3, {} rounds alternating",
        a.mib, a.rounds
    );
    let (mut one, mut two, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..a.rounds {
        let (p1, p2) = if round % 2 == 0 {
            let p1 = phase(&c, &[&ra], &coordinator, a.mib).await;
            (p1, phase(&c, &[&ra, &rb], &coordinator, a.mib).await)
        } else {
            let p2 = phase(&c, &[&ra, &rb], &coordinator, a.mib).await;
            (phase(&c, &[&ra], &coordinator, a.mib).await, p2)
        };
        println!(
            "round {}: one replica {:.0} MiB/s ({}); two {:.0} MiB/s ({}); two/one {:.2}",
            round + 1,
            p1.mib_s,
            shares(&p1, 1),
            p2.mib_s,
            shares(&p2, 2),
            p2.mib_s / p1.mib_s
        );
        ratios.push(p2.mib_s / p1.mib_s);
        one.push(p1.mib_s);
        two.push(p2.mib_s);
    }
    println!(
        "median: one replica {:.0} MiB/s, two {:.0} MiB/s, two/one {:.2}",
        median(one),
        median(two),
        median(ratios)
    );

    println!(
        "HEAD /tus/{{id}} from 16 clients, {} s each, alternating",
        a.head_secs
    );
    let sqlite = Gateway::start();
    let sc = client(&sqlite.ca);
    let sqlite_token = sqlite.patient(&sc).await;
    let (_, token) = new_case(&c, &ra.base, &coordinator).await;
    let (mut pg, mut lite) = (Vec::new(), Vec::new());
    for _ in 0..a.rounds {
        pg.push(heads(&c, &ra.base, &token, a.head_secs).await);
        lite.push(heads(&sc, &sqlite.base, &sqlite_token, a.head_secs).await);
    }
    let (pg, lite) = (median(pg), median(lite));
    println!(
        "median: PostgreSQL replica {pg:.0}/s, SQLite gateway {lite:.0}/s, PostgreSQL/SQLite {:.2}",
        pg / lite
    );
    drop((ra, rb, sqlite));
    drop_database(&admin, &db).await;
}
