//! kill -9 of the real binary at many random moments of one 64 MiB upload,
//! on the fs store and on S3 (s3s-fs in process; Garage when CI started
//! one). A client uploads with PATCHes of varied sizes (now and then the
//! whole rest in one long PATCH); the gateway is killed when the stream
//! reaches a random byte (plus a little jitter), or right after an answer,
//! or at a random instant; it is restarted on the same data directory and
//! the client continues from HEAD's offset, as tus clients do.
//!
//! Every tenth kill comes while one long PATCH stalls after more than a
//! durable-point interval (`CASEGATE_UPLOADS__SYNC_EVERY_BYTES` is small),
//! once the gateway surely took its durable points: a run fails if no
//! restart found bytes of a cut PATCH beyond what was acknowledged.
//!
//! Each restart proves: HEAD's offset is at least every offset any answer
//! (PATCH or HEAD) acknowledged before the kill — no acknowledged byte is
//! lost — and at most what the client had sent. At the end the upload
//! completes and the manifest's SHA-256 (re-hashed from the stored object
//! after a restart) is the original's.
//!
//! The kill points come from a seeded xorshift; the seed is printed and
//! `CASEGATE_FAULT_SEED=<seed>` replays a run (`CASEGATE_FAULT_KILLS=<n>`
//! changes the number of kills, default 100).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use crate::fault_gateway::{Client, Gateway, Ledger, Stopped};
use crate::tus::{meta, pattern, sha256_hex};

const SIZE: usize = 64 << 20;

/// How a backend is driven: how often the gateway takes a durable point
/// inside a PATCH, how fast the client sends, how small a PATCH gets.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub sync_every: u64,
    /// Bytes per second a PATCH body is handed out at, at most.
    pub pace: u64,
    pub min_patch: u64,
    /// How long a stalled PATCH surely takes to reach its durable points.
    pub catch_up_ms: u64,
}

/// fs: a durable point is an fsync and a commit, cheap.
const FS: Profile = Profile {
    sync_every: 256 << 10,
    pace: 24 << 20,
    min_patch: 1,
    catch_up_ms: 400,
};

/// S3: every durable point and every PATCH's end rewrites the staging
/// object (up to a part, 8 MiB) and each PATCH reads it back, so PATCHes
/// are fewer and the client slower (an unoptimised build PUTs ~8 MB/s).
const S3: Profile = Profile {
    sync_every: 1 << 20,
    pace: 8 << 20,
    min_patch: 768 << 10,
    catch_up_ms: 2500,
};

/// How long one round (restart, HEAD, upload until the kill) may take.
const ROUND_LIMIT: Duration = Duration::from_secs(120);

/// xorshift64*: small, seeded, replayable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Roughly log-uniform in `lo..=hi`.
    pub fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let (a, b) = ((lo.max(1) as f64).ln(), (hi as f64).ln());
        let unit = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((a + (b - a) * unit).exp() as u64).clamp(lo, hi)
    }
}

/// The run's seed: `CASEGATE_FAULT_SEED`, or fresh.
pub fn seed() -> u64 {
    std::env::var("CASEGATE_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            now.as_nanos() as u64 ^ u64::from(std::process::id()) << 32
        })
}

fn kills() -> usize {
    std::env::var("CASEGATE_FAULT_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
}

/// When the gateway dies this round.
#[derive(Debug, Clone, Copy)]
pub enum KillAt {
    /// Once this round has handed `gap` bytes to connections, after
    /// `jitter_us`: mid-body, mid-sync, or just after an answer.
    Stream { gap: u64, jitter_us: u64 },
    /// Right after the first answer acknowledging at least `gap` bytes
    /// more than HEAD said.
    Answer { gap: u64 },
    /// `after_ms` after the restart, whatever is happening then.
    Instant { after_ms: u64 },
    /// One long PATCH hands out `gap` bytes (more than a durable-point
    /// interval) and then stalls; the kill comes `stall_ms` later, once
    /// the gateway caught up and took its durable points, or while it
    /// takes one.
    Stall { gap: u64, stall_ms: u64 },
}

/// Fires `kill` for the gateway of this round.
async fn killer(gw: Arc<Gateway>, ledger: Arc<Ledger>, kill: KillAt) {
    match kill {
        KillAt::Stream { gap, .. } | KillAt::Stall { gap, .. } => {
            // Or once the last byte is out: then the kill lands in the
            // last PATCH's completion.
            let target = ledger.streamed.load(Ordering::SeqCst) + gap;
            while ledger.streamed.load(Ordering::SeqCst) < target
                && ledger.sent.load(Ordering::SeqCst) < SIZE as u64
                && !gw.killed()
            {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            tokio::time::sleep(match kill {
                KillAt::Stall { stall_ms, .. } => Duration::from_millis(stall_ms),
                KillAt::Stream { jitter_us, .. } => Duration::from_micros(jitter_us),
                _ => Duration::ZERO,
            })
            .await;
            gw.kill();
        }
        KillAt::Answer { .. } => {} // the client fires it
        KillAt::Instant { after_ms } => {
            tokio::time::sleep(Duration::from_millis(after_ms)).await;
            gw.kill();
        }
    }
}

async fn kill_9_at_random_points(backend: &str, mut env: Vec<(String, String)>, profile: Profile) {
    let seed = seed();
    let kills = kills();
    eprintln!(
        "{backend}: {kills} kills, seed {seed} (replay: CASEGATE_FAULT_SEED={seed} CASEGATE_FAULT_KILLS={kills})"
    );
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    env.push((
        "CASEGATE_UPLOADS__SYNC_EVERY_BYTES".into(),
        profile.sync_every.to_string(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let (gw, coordinator) = Gateway::boot(dir.path(), &env, true);
    let ca = std::fs::read(dir.path().join("certs/dev-ca.pem")).unwrap();
    let http = crate::common::client_trusting(&ca);
    let created: Value = http
        .post(format!("{}/api/v1/cases", gw.base))
        .bearer_auth(coordinator.expect("first start prints tokens"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = created["upload_token"].as_str().unwrap().to_owned();
    let data = Bytes::from(pattern(SIZE, seed));
    let resp = http
        .post(format!("{}/tus/", gw.base))
        .bearer_auth(&token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", SIZE.to_string())
        .header("Upload-Metadata", meta("CT-series.zip", None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let client = Client {
        http,
        token,
        path: resp.headers()["location"].to_str().unwrap().to_owned(),
        data: data.clone(),
        ledger: Arc::new(Ledger::default()),
        profile,
    };

    // Each round streams a random share of what is left before its kill
    // (plus what an un-synced tail costs), so the kills cover the whole
    // upload; the mode of each kill is drawn too.
    let mut gw = gw;
    let mut modes = [0usize; 4];
    for i in 0..kills {
        let ctx = format!(
            "{backend}, seed {seed}, kill {}/{kills} ({:.1} s in)",
            i + 1,
            started.elapsed().as_secs_f64()
        );
        let left = SIZE as u64 - client.ledger.acked.load(Ordering::SeqCst);
        let share = left / (kills - i) as u64 + profile.sync_every / 2;
        let gap = 1 + rng.below(2 * share);
        let deep = profile.sync_every + rng.below(2 * profile.sync_every);
        // Every tenth kill waits until a stalled PATCH surely took durable
        // points, so each run proves they survive.
        let kill = match if i % 10 == 5 { 99 } else { rng.below(12) } {
            99 => KillAt::Stall {
                gap: deep,
                stall_ms: profile.catch_up_ms,
            },
            0 => KillAt::Instant {
                after_ms: rng.below(40),
            },
            1..=4 => KillAt::Answer { gap },
            5 => KillAt::Stall {
                gap: deep,
                stall_ms: rng.below(profile.catch_up_ms),
            },
            _ => KillAt::Stream {
                gap,
                jitter_us: rng.below(3000),
            },
        };
        modes[match kill {
            KillAt::Stream { .. } => 0,
            KillAt::Answer { .. } => 1,
            KillAt::Instant { .. } => 2,
            KillAt::Stall { .. } => 3,
        }] += 1;
        let round_rng = Rng::new(rng.next());
        let round = async {
            let fire = tokio::spawn(killer(gw.clone(), client.ledger.clone(), kill));
            if let Stopped::Complete = client.round(&gw, round_rng, Some(kill), &ctx).await {
                // Everything is sent; the kill may land in the completion.
                client.finished(&gw, &ctx).await;
            }
            fire.await.unwrap();
        };
        tokio::time::timeout(ROUND_LIMIT, round)
            .await
            .unwrap_or_else(|_| panic!("{ctx}: round did not end ({kill:?})"));
        assert!(gw.killed(), "{ctx}: no kill ({kill:?})");
        gw.wait();
        gw = Gateway::boot(dir.path(), &env, false).0;
    }

    // No more kills: the client finishes and the file is the original.
    let ctx = format!("{backend}, seed {seed}, after {kills} kills");
    let finish = async {
        let stopped = client.round(&gw, Rng::new(rng.next()), None, &ctx).await;
        assert!(matches!(stopped, Stopped::Complete), "{ctx}");
        client.finished(&gw, &ctx).await.unwrap()
    };
    let file = tokio::time::timeout(ROUND_LIMIT, finish)
        .await
        .unwrap_or_else(|_| panic!("{ctx}: the upload did not finish"));
    assert_eq!(file["state"], "complete", "{ctx}: {file}");
    assert_eq!(file["size"], SIZE as u64, "{ctx}");
    assert_eq!(file["sha256"], sha256_hex(&data), "{ctx}");
    assert!(
        client.ledger.beyond_acked.load(Ordering::SeqCst) > 0,
        "{ctx}: no restart found durable points of a cut PATCH; the run proved less than it claims"
    );
    gw.kill();
    gw.wait();
    eprintln!(
        "{backend}: {kills} kills ({} mid-stream, {} after an answer, {} at an instant, {} in a stalled PATCH; {} restarts found durable bytes of a cut PATCH), {} PATCHes, {:.1} MiB streamed for {} MiB, {:.1} s",
        modes[0],
        modes[1],
        modes[2],
        modes[3],
        client.ledger.beyond_acked.load(Ordering::SeqCst),
        client.ledger.patches.load(Ordering::SeqCst),
        client.ledger.streamed.load(Ordering::SeqCst) as f64 / (1 << 20) as f64,
        SIZE >> 20,
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_fs() {
    kill_9_at_random_points("fs", Vec::new(), FS).await;
}

/// Not in the default run: s3s-fs runs inside the test process as a debug
/// build, and with the rest of the suite in parallel the completion after
/// the last kill (which re-hashes the whole 64 MiB object read back from
/// S3) has taken over 120 s in CI. The same test runs against Garage (a
/// release binary) in CI. Run it alone: `cargo test --test api
/// kill_9_at_random_points_s3s_fs -- --ignored` (~100 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow under a parallel CI run (in-process debug S3 re-hash); Garage variant runs in CI"]
async fn kill_9_at_random_points_s3s_fs() {
    let s3 = crate::support::s3s_fs().await;
    kill_9_at_random_points("s3s-fs", crate::crash::s3_env(&s3.config), S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_garage() {
    let Some(s3) = crate::support::garage() else {
        return;
    };
    kill_9_at_random_points("garage", crate::crash::s3_env(&s3.config), S3).await;
}
