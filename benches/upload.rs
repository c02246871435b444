//! Upload throughput, server CPU and server memory, in one run
//! (`bench/upload`), every figure against a ceiling measured in the same
//! round:
//!
//! (a) the TLS ceiling: the same client pushing the same bytes to nginx's
//!     HTTPS `PUT` sink, which writes the body to a file beside the
//!     gateway's data (Debian's `nginx-light`; without nginx, a minimal
//!     rustls + hyper sink in this process writing to a file, whose CPU is
//!     then not separable from the client's);
//! (b) casegate (release binary, fs backend, its own process) receiving a
//!     1 GiB upload over TLS in one PATCH, and in 8 MiB PATCHes as a tus
//!     client sends them (this client on one connection; and tuspy, if
//!     installed — `pip install tuspy` —, which opens a new connection for
//!     every PATCH); with `--baseline-bin`, another gateway binary (a
//!     previous release) the same way in the same rounds, interleaved;
//! (c) the gateway's peak RSS during a 4 GiB upload and during 16
//!     concurrent 256 MiB uploads (fresh gateway each, VmHWM).
//!
//! Every row gives MiB/s and the server's CPU seconds per GiB (user +
//! system of all its threads, from /proc/PID/stat before and after), the
//! steadier measure on a shared machine. Rows are repeated `--rounds`
//! times (default 3) and the medians reported; ratios are taken within a
//! round, then their median. All over HTTP/1.1 with `Content-Length`,
//! client and server on the same machine.
//!
//! `cargo bench --bench upload -- [MiB, default 1024] [--quick]
//!  [--rounds N] [--baseline-bin PATH] [--dir DIR] [--rust-sink]
//!  [--no-memory] [--concurrent-only]`
//!
//! `--dir` is where the data directories (and the sink's files) go: a disk
//! by default (the system's temporary directory), `/dev/shm` for tmpfs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[path = "support/mod.rs"]
mod support;
use support::*;

struct Options {
    total: u64,
    quick: bool,
    rounds: usize,
    baseline: Option<PathBuf>,
    dir: PathBuf,
    rust_sink: bool,
    memory: bool,
    concurrent_only: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let flag = |name: &str| args.iter().any(|a| a == name);
    let quick = flag("--quick");
    let mib: u64 = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || !args[i - 1].starts_with("--"))
        .find_map(|(_, a)| a.parse().ok())
        .unwrap_or(if quick { 128 } else { 1024 });
    Options {
        total: mib * MIB,
        quick,
        rounds: value("--rounds").map_or(3, |r| r.parse().unwrap()),
        baseline: value("--baseline-bin").map(PathBuf::from),
        dir: value("--dir").map_or_else(std::env::temp_dir, PathBuf::from),
        rust_sink: flag("--rust-sink"),
        memory: !flag("--no-memory"),
        concurrent_only: flag("--concurrent-only"),
    }
}

#[tokio::main]
async fn main() {
    let o = options();
    println!(
        "upload benchmark: {} MiB per transfer, HTTP/1.1 over TLS 1.3, loopback, data in {}",
        o.total / MIB,
        o.dir.display()
    );
    println!(
        "machine: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let mut bins = vec![("current", current_bin().to_owned())];
    if let Some(b) = &o.baseline {
        assert!(b.exists(), "--baseline-bin {} does not exist", b.display());
        bins.push(("baseline", b.clone()));
    }
    if !o.concurrent_only {
        throughput(&o, &bins).await;
    }
    if o.memory {
        for (name, bin) in &bins {
            if !o.concurrent_only {
                big_upload(&o, name, bin).await;
            }
            concurrent_uploads(&o, name, bin).await;
        }
    }
}

/// One measured transfer: MiB/s and the server's CPU seconds per GiB.
#[derive(Clone, Copy)]
struct Row {
    mib_s: f64,
    cpu_per_gib: Option<f64>,
}

impl Row {
    fn new(bytes: u64, secs: f64, cpu: Option<f64>) -> Row {
        Row {
            mib_s: mib_s(bytes, secs),
            cpu_per_gib: cpu.map(|c| c / (bytes as f64 / (1024.0 * MIB as f64))),
        }
    }

    fn print(&self, what: &str, ceiling: Option<f64>) {
        let cpu = self
            .cpu_per_gib
            .map_or("      —".into(), |c| format!("{c:7.2}"));
        let pct = ceiling.map_or(String::new(), |c| {
            format!("  = {:3.0}% of ceiling", 100.0 * self.mib_s / c)
        });
        println!("  {what:<40} {:7.0} MiB/s {cpu} CPU-s/GiB{pct}", self.mib_s);
    }
}

/// The ceiling's server: nginx if installed (unless `--rust-sink`), else
/// the in-process sink.
enum Ceiling {
    Nginx(nginx::Nginx),
    Rust {
        port: u16,
        ca: Vec<u8>,
        _dir: tempfile::TempDir,
    },
}

impl Ceiling {
    async fn start(o: &Options) -> Ceiling {
        match nginx::find().filter(|_| !o.rust_sink) {
            Some(bin) => Ceiling::Nginx(nginx::Nginx::start(&bin, &o.dir)),
            None => {
                let dir = tempfile::tempdir_in(&o.dir).unwrap();
                let (port, ca) = sink_into(Some(dir.path().to_owned())).await;
                Ceiling::Rust {
                    port,
                    ca,
                    _dir: dir,
                }
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Ceiling::Nginx(_) => "ceiling: nginx HTTPS PUT → file",
            Ceiling::Rust { .. } => "ceiling: rustls sink → file (in-process)",
        }
    }

    async fn measure(&self, total: u64) -> Row {
        let (port, ca) = match self {
            Ceiling::Nginx(n) => (n.port, &n.ca),
            Ceiling::Rust { port, ca, .. } => (*port, ca),
        };
        let c = client(ca);
        let cpu = self.cpu();
        let started = Instant::now();
        let resp = sized(c.put(format!("https://127.0.0.1:{port}/upload.bin")), total)
            .send()
            .await
            .unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert!(
            resp.status().is_success(),
            "sink answered {}",
            resp.status()
        );
        let used = self.cpu().zip(cpu).map(|(after, before)| after - before);
        if let Ceiling::Nginx(n) = self {
            n.clear();
        }
        Row::new(total, secs, used)
    }

    fn cpu(&self) -> Option<f64> {
        match self {
            Ceiling::Nginx(n) => Some(n.cpu_seconds()),
            Ceiling::Rust { .. } => None,
        }
    }
}

/// Uploads `total` bytes into a new case in PATCHes of `patch` bytes, then
/// deletes the case (so the data directory does not fill up).
async fn measure_upload(gw: &Gateway, c: &reqwest::Client, total: u64, patch: u64) -> Row {
    let (case_id, token) = gw.patient_case(c).await;
    let cpu = gw.cpu_seconds();
    let started = Instant::now();
    gw.upload(c, &token, total, patch).await;
    let secs = started.elapsed().as_secs_f64();
    let used = gw.cpu_seconds() - cpu;
    gw.delete_case(c, &case_id).await;
    Row::new(total, secs, Some(used))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Rows per gateway: one PATCH (0), 8 MiB PATCHes from this client, and
/// 8 MiB PATCHes from tuspy (a new connection each).
/// One round: the ceiling's row, and each gateway's rows by kind.
type Round = (Row, Vec<Vec<Row>>);

const KINDS: [(&str, u64); 3] = [
    ("one PATCH", 0),
    ("8 MiB PATCHes", 8 * MIB),
    ("tuspy, 8 MiB PATCHes", TUSPY),
];
const TUSPY: u64 = u64::MAX;

fn tuspy_installed() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import tusclient"])
        .status()
        .is_ok_and(|s| s.success())
}

/// Uploads `file` with tuspy in 8 MiB PATCHes into a new case, then
/// deletes the case.
async fn measure_tuspy(gw: &Gateway, c: &reqwest::Client, file: &Path, total: u64) -> Row {
    let (case_id, token) = gw.patient_case(c).await;
    let script = "import sys\nfrom tusclient import client\n\
        c = client.TusClient(sys.argv[1], headers={'Authorization': 'Bearer ' + sys.argv[2]})\n\
        c.uploader(file_path=sys.argv[3], chunk_size=8 * 1024 * 1024, \
        metadata={'filename': 'bench.bin'}).upload()\n";
    let cpu = gw.cpu_seconds();
    let started = Instant::now();
    let status = tokio::process::Command::new("python3")
        .args(["-c", script, &format!("{}/tus/", gw.base), &token])
        .arg(file)
        .env("REQUESTS_CA_BUNDLE", gw.dir().join("certs/dev-ca.pem"))
        .status()
        .await
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert!(status.success(), "tuspy failed");
    let used = gw.cpu_seconds() - cpu;
    gw.delete_case(c, &case_id).await;
    Row::new(total, secs, Some(used))
}

/// The bytes the other rows send, in a file for tuspy.
fn tuspy_file(o: &Options) -> PathBuf {
    let path = o
        .dir
        .join(format!("bench-upload-{}.bin", std::process::id()));
    let piece = payload();
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for _ in 0..o.total.div_ceil(PIECE as u64) {
        std::io::Write::write_all(&mut f, &piece).unwrap();
    }
    f.into_inner().unwrap().set_len(o.total).unwrap();
    path
}

/// Rounds of: the ceiling, then each gateway with one PATCH, with 8 MiB
/// PATCHes, and with tuspy (the gateways' order alternates from round to
/// round).
async fn throughput(o: &Options, bins: &[(&str, PathBuf)]) {
    let ceiling = Ceiling::start(o).await;
    let gateways: Vec<(&str, Gateway)> = bins
        .iter()
        .map(|(name, bin)| (*name, Gateway::start_bin(bin, &o.dir)))
        .collect();
    let clients: Vec<reqwest::Client> = gateways.iter().map(|(_, g)| client(&g.ca)).collect();
    let tuspy = tuspy_installed().then(|| tuspy_file(o));
    // (ceiling row, per gateway per kind row) for every round.
    let mut rounds: Vec<Round> = Vec::new();
    for round in 0..o.rounds {
        println!("round {} (load average {})", round + 1, loadavg());
        let top = ceiling.measure(o.total).await;
        top.print(ceiling.name(), None);
        let mut rows = vec![vec![top; KINDS.len()]; gateways.len()];
        for (kind, (kind_name, patch)) in KINDS.iter().enumerate() {
            let mut order: Vec<usize> = (0..gateways.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for g in order {
                let (name, gw) = &gateways[g];
                let row = match (*patch, &tuspy) {
                    (TUSPY, Some(file)) => measure_tuspy(gw, &clients[g], file, o.total).await,
                    (TUSPY, None) => continue,
                    (0, _) => measure_upload(gw, &clients[g], o.total, o.total).await,
                    (patch, _) => measure_upload(gw, &clients[g], o.total, patch).await,
                };
                row.print(&format!("{name}, {kind_name}"), Some(top.mib_s));
                rows[g][kind] = row;
            }
        }
        rounds.push((top, rows));
    }
    let kinds = if tuspy.is_some() { KINDS.len() } else { 2 };
    if let Some(file) = tuspy {
        let _ = std::fs::remove_file(file);
    }
    summary(&rounds, &gateways, kinds);
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Medians over the rounds, and the ratios the targets are about.
fn summary(rounds: &[Round], gateways: &[(&str, Gateway)], kinds: usize) {
    let cpu = |rows: Vec<Option<f64>>| {
        let known: Vec<f64> = rows.into_iter().flatten().collect();
        if known.is_empty() {
            "—".to_string()
        } else {
            format!("{:.2}", median(known))
        }
    };
    println!("\nmedians of {} rounds:", rounds.len());
    println!("| what | MiB/s | % of the ceiling (same round) | server CPU-s per GiB |");
    println!("|---|---|---|---|");
    println!(
        "| ceiling | {:.0} | 100 | {} |",
        median(rounds.iter().map(|r| r.0.mib_s).collect()),
        cpu(rounds.iter().map(|r| r.0.cpu_per_gib).collect())
    );
    for (g, (name, _)) in gateways.iter().enumerate() {
        for (k, (kind, _)) in KINDS.iter().enumerate().take(kinds) {
            let of = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
            println!(
                "| {name}, {kind} | {:.0} | {:.0} | {} |",
                of(&|r| r.1[g][k].mib_s),
                of(&|r| 100.0 * r.1[g][k].mib_s / r.0.mib_s),
                cpu(rounds.iter().map(|r| r.1[g][k].cpu_per_gib).collect())
            );
        }
        for (k, (kind, _)) in KINDS.iter().enumerate().take(kinds).skip(1) {
            let chunked = median(
                rounds
                    .iter()
                    .map(|r| 100.0 * r.1[g][k].mib_s / r.1[g][0].mib_s)
                    .collect(),
            );
            println!("{name}: {kind} at {chunked:.0}% of one PATCH (median of the rounds' ratios)");
        }
    }
    if gateways.len() == 2 {
        for (k, (kind, _)) in KINDS.iter().enumerate().take(kinds) {
            let speed = median(
                rounds
                    .iter()
                    .map(|r| 100.0 * r.1[0][k].mib_s / r.1[1][k].mib_s)
                    .collect(),
            );
            let cpu = median(
                rounds
                    .iter()
                    .filter_map(|r| Some(100.0 * r.1[0][k].cpu_per_gib? / r.1[1][k].cpu_per_gib?))
                    .collect(),
            );
            println!(
                "current vs baseline, {kind}: {speed:.0}% of its MiB/s, {cpu:.0}% of its CPU per GiB"
            );
        }
    }
}

/// One big upload on a fresh gateway: its speed, CPU and peak RSS.
async fn big_upload(o: &Options, name: &str, bin: &Path) {
    let big = if o.quick { 512 * MIB } else { 4096 * MIB };
    let gw = Gateway::start_bin(bin, &o.dir);
    let c = client(&gw.ca);
    let row = measure_upload(&gw, &c, big, 8 * MIB).await;
    row.print(&format!("{name}, {} MiB in 8 MiB PATCHes", big / MIB), None);
    println!("    gateway peak RSS {:.1} MiB", gw.peak_rss_mib());
}

async fn concurrent_uploads(o: &Options, name: &str, bin: &Path) {
    let each = if o.quick { 32 * MIB } else { 256 * MIB };
    let gw = Arc::new(Gateway::start_bin(bin, &o.dir));
    let c = client(&gw.ca);
    let mut cases = Vec::new();
    for _ in 0..16 {
        cases.push(gw.patient_case(&c).await);
    }
    let cpu = gw.cpu_seconds();
    let started = Instant::now();
    let tasks: Vec<_> = cases
        .iter()
        .map(|(_, t)| {
            let (gw, c, t) = (gw.clone(), c.clone(), t.clone());
            tokio::spawn(async move { gw.upload(&c, &t, each, 8 * MIB).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let row = Row::new(
        16 * each,
        started.elapsed().as_secs_f64(),
        Some(gw.cpu_seconds() - cpu),
    );
    row.print(&format!("{name}, 16 concurrent × {} MiB", each / MIB), None);
    println!("    gateway peak RSS {:.1} MiB", gw.peak_rss_mib());
    for (case_id, _) in &cases {
        gw.delete_case(&c, case_id).await;
    }
}
