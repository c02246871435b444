//! Download throughput and server memory, in one run (`bench/download`):
//!
//! (a) TLS ceiling: a minimal TLS source (rustls + hyper) sending the same
//!     bytes from memory to the same client over loopback;
//! (b) casegate (release binary, fs backend, its own process): plaintext
//!     download (decrypted on the fly) and sealed download (the object as
//!     stored) of one file, over the centre listener with mutual TLS;
//! (c) the gateway's RSS before and after those downloads (flat memory).
//!
//! `cargo bench --bench download -- [MiB, default 2048]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hyper_util::rt::{TokioExecutor, TokioIo};

#[path = "support/mod.rs"]
mod support;
use support::centre::{Centre, drain};
use support::*;

/// A TLS server answering every request with `total` bytes from memory.
async fn source(total: u64) -> (u16, Vec<u8>) {
    let (acceptor, ca) = tls_acceptor();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |_req: hyper::Request<hyper::body::Incoming>| async move {
                        let piece = payload();
                        let stream = futures_util::stream::unfold(total, move |left| {
                            let piece = piece.clone();
                            async move {
                                if left == 0 {
                                    return None;
                                }
                                let n = left.min(PIECE as u64) as usize;
                                Some((
                                    Ok::<_, std::io::Error>(hyper::body::Frame::data(
                                        piece.slice(..n),
                                    )),
                                    left - n as u64,
                                ))
                            }
                        });
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::StreamBody::new(stream),
                        ))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .http1_only()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, ca)
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap()
        / 1024.0
}

#[tokio::main]
async fn main() {
    let mib: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2048);
    let total = mib * MIB;
    println!("download benchmark: {mib} MiB, HTTP/1.1 over TLS 1.3, loopback, 2 cores shared");

    let (port, ca) = source(total).await;
    let (_, ceiling) = drain(client(&ca).get(format!("https://127.0.0.1:{port}/"))).await;
    println!("(a) TLS ceiling, minimal rustls source        {ceiling:8.0} MiB/s  (baseline)");

    let gw = Gateway::start();
    let c = client(&gw.ca);
    let token = gw.patient(&c).await;
    gw.upload(&c, &token, total, 64 * MIB).await;

    let centre = Centre::with_grant(&gw, &c).await;
    let file_id = centre.file_ids().await.remove(0);

    let rss_before = rss_mib(gw.child.id());
    let (n, plain) = drain(centre.get(&format!("/api/v1/grant/files/{file_id}"))).await;
    assert_eq!(n, total);
    println!(
        "(b) casegate plaintext download               {plain:8.0} MiB/s  = {:.0}% of ceiling",
        100.0 * plain / ceiling
    );
    let (_, sealed) = drain(centre.get(&format!("/api/v1/grant/files/{file_id}/sealed"))).await;
    println!(
        "(b) casegate sealed download                  {sealed:8.0} MiB/s  = {:.0}% of ceiling",
        100.0 * sealed / ceiling
    );
    println!(
        "(c) gateway RSS {rss_before:.1} MiB before, {:.1} MiB after two {mib} MiB downloads (peak {:.1} MiB, including the upload)",
        rss_mib(gw.child.id()),
        gw.peak_rss_mib()
    );
}
