//! A bounded load test of the whole gateway (`bench/load`), loopback only.
//!
//! The release binary runs in its own process on a temporary data
//! directory (SQLite, fs store, real TLS on both listeners). Through its
//! API the test creates one case per client, registers a reviewing centre
//! with a client certificate, uploads files for it to download and grants
//! them. Then N clients (default 200) run for S seconds (default 60), each
//! from its own source address 127.0.0.2, 127.0.0.3, … and with its own
//! case, drawing actions at random: tus uploads (random lengths and PATCH
//! sizes), the patient's manifest, the coordinator's manifest of any case,
//! the centre's grant, and plaintext and sealed downloads, whole and Range
//! (over mutual TLS). It prints per request kind count, errors, p50/p99/max
//! latency and throughput; every distinct error with its count; the
//! gateway's RSS over time, its peak, and the CPU both sides used. A 5 s
//! run of one client first gives the same table without contention, and
//! afterwards the gateway's state is checked against what the clients did
//! (files listed per case, grant use counts and bytes served).
//!
//! Nothing is timed as a pass/fail: this is a measurement.
//!
//! `cargo bench --bench load -- [--clients N] [--secs S] [--seed X] [--quick]`
//! (`--quick`: 50 clients for 10 s unless given.)
#![allow(clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;

#[path = "load/client.rs"]
mod client;
#[path = "load/grants.rs"]
mod grants;
#[path = "load/setup.rs"]
mod setup;
#[path = "load/stats.rs"]
mod stats;
#[path = "support/mod.rs"]
mod support;
#[path = "load/verify.rs"]
mod verify;

use stats::{Progress, Recorder};
use support::{Gateway, payload};
use verify::Tally;

struct Args {
    clients: usize,
    secs: u64,
    seed: u64,
}

fn args() -> Args {
    let mut raw = std::env::args().skip(1);
    let (mut clients, mut secs, mut seed, mut quick) = (None, None, 1, false);
    let number = |flag: &str, v: Option<String>| -> u64 {
        v.and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a number"))
    };
    while let Some(a) = raw.next() {
        match a.as_str() {
            "--clients" => clients = Some(number("--clients", raw.next()) as usize),
            "--secs" => secs = Some(number("--secs", raw.next())),
            "--seed" => seed = number("--seed", raw.next()),
            "--quick" => quick = true,
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => {}
            other => {
                panic!("unknown argument {other}; use --clients N, --secs S, --seed X, --quick")
            }
        }
    }
    Args {
        clients: clients.unwrap_or(if quick { 50 } else { 200 }).max(1),
        secs: secs.unwrap_or(if quick { 10 } else { 60 }).max(1),
        seed,
    }
}

/// A number from a `/proc/<pid>/status` line such as `VmRSS:  1234 kB`, in MiB.
fn status_mib(pid: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// User + system CPU seconds of a process (`USER_HZ` is 100 on Linux).
fn cpu_secs(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime
            // are the 14th and 15th of the whole line.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .unwrap_or(0.0)
        / 100.0
}

/// The source address of client `i`: 127.0.0.2 onwards.
fn source(i: usize) -> IpAddr {
    let base = u32::from(Ipv4Addr::new(127, 0, 0, 2));
    IpAddr::V4(Ipv4Addr::from(base + i as u32))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// What the clients share in a phase.
struct Shared {
    fx: Arc<setup::Fixture>,
    pattern: Bytes,
    upload: Bytes,
    seed: u64,
}

/// `clients` clients for `secs` seconds; progress lines every `every`
/// (with the gateway's largest RSS, sampled 4× a second) unless `None`.
/// Returns their merged record, their tallies (client i ↔ case i) and the
/// phase's wall time.
async fn phase(
    shared: &Shared,
    clients: usize,
    secs: u64,
    pid: &str,
    every: Option<Duration>,
) -> (Recorder, Vec<Tally>, f64) {
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let workers: Vec<_> = (0..clients)
        .map(|i| {
            let worker = client::Client {
                fx: shared.fx.clone(),
                http: shared.fx.client(source(i)),
                case: i,
                rng: client::Rng::new(shared.seed ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D)),
                progress: progress.clone(),
                pattern: shared.pattern.clone(),
                upload: shared.upload.clone(),
                rec: Recorder::new(),
                tally: Tally::new(shared.fx.grants.files.len()),
            };
            tokio::spawn(worker.run(deadline))
        })
        .collect();
    let monitor = every.map(|every| {
        let (progress, pid) = (progress.clone(), pid.to_owned());
        tokio::spawn(async move {
            let (mut last, mut next, mut max_rss) = (0, started + every, 0f64);
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                max_rss = max_rss.max(status_mib(&pid, "VmRSS:"));
                if Instant::now() < next {
                    continue;
                }
                next += every;
                let done = progress.requests.load(Ordering::Relaxed);
                println!(
                    "  t={:>4.0} s  requests {done:>7} (+{:>5.0}/s)  errors {:>5}  gateway RSS max {max_rss:6.1} MiB",
                    started.elapsed().as_secs_f64(),
                    (done - last) as f64 / every.as_secs_f64(),
                    progress.errors.load(Ordering::Relaxed),
                );
                (last, max_rss) = (done, 0.0);
            }
        })
    });
    let mut all = Recorder::new();
    let mut tallies = Vec::with_capacity(clients);
    for w in workers {
        let (rec, tally) = w.await.expect("client task");
        all.merge(&rec);
        tallies.push(tally);
    }
    if let Some(m) = monitor {
        m.abort();
    }
    (all, tallies, started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() {
    let args = args();
    println!(
        "load test: {} clients for {} s, HTTP/1.1 over TLS 1.3, loopback; gateway (release binary, \
         SQLite + fs store) and load generator share this machine's {} cores (load average {})",
        args.clients,
        args.secs,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg(),
    );
    if args.clients > 1000 {
        println!("note: more clients than limits.max_connections (1024) allows per listener");
    }

    let gw = Gateway::start();
    let pid = gw.child.id().to_string();
    let started = Instant::now();
    let fx = Arc::new(setup::Fixture::prepare(&gw, args.clients).await);
    println!(
        "setup: {} cases, a centre, {} files to download ({:?} bytes), {} grants of max_downloads {}, in {:.1} s",
        fx.cases.len(),
        fx.grants.files.len(),
        setup::DOWNLOAD_SIZES,
        grants::LIVE,
        grants::MAX_DOWNLOADS,
        started.elapsed().as_secs_f64(),
    );
    println!(
        "gateway settings: defaults (limits.max_connections 1024, max_connections_per_address 64, \
         auth_failures_per_minute 30, uploads.max_case_files 20000, max_case_bytes 256 GiB) except \
         uploads.max_concurrent_uploads 64 and sync_every_bytes 64 MiB (benches/support); clients \
         spread over {}..={} with one case each, so no per-address or per-case limit is near",
        source(0),
        source(args.clients - 1),
    );

    // Names only: values may be secrets.
    let inherited: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("CASEGATE_"))
        .collect();
    if !inherited.is_empty() {
        println!("also set in this environment, so passed to the gateway: {inherited:?}");
    }

    let pattern = payload();
    let mut upload = Vec::with_capacity(client::PATCH_LEN.1 as usize);
    while upload.len() < client::PATCH_LEN.1 as usize {
        upload.extend_from_slice(&pattern);
    }
    let shared = Shared {
        fx: fx.clone(),
        pattern,
        upload: Bytes::from(upload),
        seed: args.seed,
    };
    let mut per_case = vec![Tally::new(fx.grants.files.len()); fx.cases.len()];
    if let Some(download_case) = per_case.last_mut() {
        // Set up before the clients ran (the last case).
        download_case.created = setup::DOWNLOAD_SIZES.len() as u64;
        download_case.completed = download_case.created;
    }

    // The same mix from one client: latencies without contention.
    let (one, tallies, secs) = phase(&shared, 1, 5, &pid, None).await;
    per_case[0] = tallies[0].clone();
    println!("\nbaseline: 1 client, {secs:.1} s:");
    one.print(secs);

    let rss_before = status_mib(&pid, "VmRSS:");
    let cpu_before = (cpu_secs(&pid), cpu_secs("self"));
    println!("\nload: {} clients for {} s", args.clients, args.secs);
    let every = Duration::from_secs((args.secs / 6).clamp(2, 10));
    let (all, tallies, secs) = phase(&shared, args.clients, args.secs, &pid, Some(every)).await;
    let cpu_gateway = cpu_secs(&pid) - cpu_before.0;
    let cpu_generator = cpu_secs("self") - cpu_before.1;
    let rss_after = status_mib(&pid, "VmRSS:");
    let load_ended = Instant::now();
    for (case, t) in per_case.iter_mut().zip(&tallies) {
        case.add(t);
    }

    println!(
        "\n{} clients, {secs:.1} s (the last requests finish after the deadline; load average {}):",
        args.clients,
        loadavg(),
    );
    all.print(secs);
    println!(
        "gateway: RSS {rss_before:.1} MiB before the load, {rss_after:.1} MiB after, peak {:.1} MiB \
         (VmHWM, setup included); CPU {cpu_gateway:.1} s = {:.0}% of one core",
        gw.peak_rss_mib(),
        100.0 * cpu_gateway / secs,
    );
    println!(
        "load generator: CPU {cpu_generator:.1} s = {:.0}% of one core, peak RSS {:.1} MiB",
        100.0 * cpu_generator / secs,
        status_mib("self", "VmHWM:"),
    );

    // Downloads settle their byte count just after the body ends.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c = fx.client(IpAddr::from([127, 0, 0, 1]));
    let ready = c
        .get(format!("{}/readyz", fx.base))
        .send()
        .await
        .map(|r| r.status().as_u16());
    println!("after: /readyz {ready:?}");
    let mismatches = verify::check(&fx, &c, &per_case).await;
    drop(c);
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "gateway RSS idle, {:.0} s after the load: {:.1} MiB",
        Instant::now().duration_since(load_ended).as_secs_f64(),
        status_mib(&pid, "VmRSS:"),
    );
    if all.total_errors() + one.total_errors() > 0 || mismatches > 0 {
        println!(
            "NOTE: {} failed requests and {mismatches} mismatches (target 0), listed above",
            all.total_errors() + one.total_errors()
        );
    }
}
