//! Upload throughput and server memory, in one run (`bench/upload`):
//!
//! (a) TLS ceiling: the same client pushing the same bytes from memory to a
//!     minimal TLS sink (rustls + hyper, discards the body) over loopback;
//! (b) casegate (release binary, fs backend, its own process) receiving a
//!     1 GiB upload over TLS in one PATCH, and with a tus client sending
//!     8 MiB PATCHes;
//! (c) the gateway's peak RSS during a 4 GiB upload and during 16
//!     concurrent 256 MiB uploads (fresh gateway each, VmHWM).
//!
//! All over HTTP/1.1, client and server on the same machine.
//! `cargo bench --bench upload -- [MiB for (a)/(b), default 1024] [--quick]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

#[path = "support/mod.rs"]
mod support;
use support::*;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mib: u64 = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(if quick { 128 } else { 1024 });
    let total = mib * MIB;
    println!(
        "upload benchmark: {mib} MiB per transfer, HTTP/1.1 over TLS 1.3, loopback, 2 cores shared"
    );

    // `--concurrent-only`: just the 16-upload phase (e.g. under BENCH_WRAP).
    if !args.iter().any(|a| a == "--concurrent-only") {
        single_uploads(total, quick).await;
    }
    concurrent_uploads(quick).await;
}

async fn single_uploads(total: u64, quick: bool) {
    let (port, sink_ca) = sink().await;
    let c = client(&sink_ca);
    let started = Instant::now();
    let resp = c
        .post(format!("https://127.0.0.1:{port}/"))
        .body(body(total))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let ceiling = mib_s(total, started.elapsed().as_secs_f64());
    println!("(a) TLS ceiling, minimal rustls sink          {ceiling:8.0} MiB/s  (baseline)");

    // The durable-write ceiling of this disk: the same bytes written in
    // 1 MiB writes and fdatasync'ed once, as any store that promises
    // durability must at least do.
    let disk = {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut f = std::fs::File::create(dir.path().join("disk")).unwrap();
        let piece = payload();
        let started = Instant::now();
        for _ in 0..total / PIECE as u64 {
            f.write_all(&piece).unwrap();
        }
        f.sync_data().unwrap();
        mib_s(total, started.elapsed().as_secs_f64())
    };
    println!(
        "    disk write + fdatasync of the same bytes   {disk:8.0} MiB/s  (durability bound of this machine)"
    );

    let gw = Gateway::start();
    let c = client(&gw.ca);
    let token = gw.patient(&c).await;
    let started = Instant::now();
    gw.upload(&c, &token, total, total).await;
    let one = mib_s(total, started.elapsed().as_secs_f64());
    println!(
        "(b) casegate, one PATCH                       {one:8.0} MiB/s  = {:.0}% of ceiling",
        100.0 * one / ceiling
    );
    let started = Instant::now();
    gw.upload(&c, &token, total, 8 * MIB).await;
    let chunked = mib_s(total, started.elapsed().as_secs_f64());
    println!(
        "(b) casegate, tus client with 8 MiB PATCHes   {chunked:8.0} MiB/s  = {:.0}% of ceiling",
        100.0 * chunked / ceiling
    );
    println!(
        "    peak RSS of the gateway so far: {:.1} MiB",
        gw.peak_rss_mib()
    );
    drop(gw);

    let big = if quick { 512 * MIB } else { 4096 * MIB };
    let gw = Gateway::start();
    let c = client(&gw.ca);
    let token = gw.patient(&c).await;
    let started = Instant::now();
    gw.upload(&c, &token, big, 8 * MIB).await;
    println!(
        "(c) {} MiB upload: {:.0} MiB/s, gateway peak RSS {:.1} MiB",
        big / MIB,
        mib_s(big, started.elapsed().as_secs_f64()),
        gw.peak_rss_mib()
    );
    drop(gw);
}

async fn concurrent_uploads(quick: bool) {
    let each = if quick { 32 * MIB } else { 256 * MIB };
    let gw = Arc::new(Gateway::start());
    let c = client(&gw.ca);
    let mut tokens = Vec::new();
    for _ in 0..16 {
        tokens.push(gw.patient(&c).await);
    }
    let started = Instant::now();
    let tasks: Vec<_> = tokens
        .into_iter()
        .map(|t| {
            let (gw, c) = (gw.clone(), c.clone());
            tokio::spawn(async move { gw.upload(&c, &t, each, 8 * MIB).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "(c) 16 concurrent {} MiB uploads: {:.0} MiB/s in total, gateway peak RSS {:.1} MiB",
        each / MIB,
        mib_s(16 * each, started.elapsed().as_secs_f64()),
        gw.peak_rss_mib()
    );
}
