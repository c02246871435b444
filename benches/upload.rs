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

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const MIB: u64 = 1024 * 1024;
const PIECE: usize = 1024 * 1024;

fn payload() -> Bytes {
    Bytes::from(
        (0..PIECE)
            .map(|i| (i * 131 % 251) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// A request body of `total` bytes, streamed from one in-memory piece.
fn body(total: u64) -> reqwest::Body {
    let piece = payload();
    let stream = futures_util::stream::unfold(total, move |left| {
        let piece = piece.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = left.min(PIECE as u64) as usize;
            Some((Ok::<_, std::io::Error>(piece.slice(..n)), left - n as u64))
        }
    });
    reqwest::Body::wrap_stream(stream)
}

fn client(ca: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca).unwrap())
        .build()
        .unwrap()
}

/// The minimal TLS sink: same TLS settings as casegate, body drained.
async fn sink() -> (u16, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
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
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let mut body = req.into_body();
                        while let Some(frame) = body.frame().await {
                            if frame.is_err() {
                                break;
                            }
                        }
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(204)
                                .body(String::new())
                                .unwrap(),
                        )
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .http1_only()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, cert.pem().into_bytes())
}

struct Gateway {
    child: Child,
    base: String,
    ca: Vec<u8>,
    coordinator: String,
    _dir: tempfile::TempDir,
}

impl Gateway {
    fn start() -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_casegate"))
            .arg("serve")
            .current_dir(dir.path())
            .env("CASEGATE_SERVER__LISTEN", "127.0.0.1:0")
            .env("CASEGATE_SERVER__CENTRE_LISTEN", "127.0.0.1:0")
            .env("CASEGATE_UPLOADS__MAX_CONCURRENT_UPLOADS", "64")
            .env(
                "CASEGATE_UPLOADS__SYNC_EVERY_BYTES",
                std::env::var("BENCH_SYNC_EVERY").unwrap_or("67108864".into()),
            )
            .env("CASEGATE_LOG", "warn")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (mut base, mut coordinator) = (String::new(), String::new());
        while coordinator.is_empty() {
            let line = lines.next().unwrap().unwrap();
            if let Some(a) = line.strip_prefix("listening on ") {
                base = a.to_owned();
            }
            if let Some(t) = line.strip_prefix("coordinator token: ") {
                coordinator = t.to_owned();
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let ca = std::fs::read(dir.path().join("certs/dev-ca.pem")).unwrap();
        Gateway {
            child,
            base,
            ca,
            coordinator,
            _dir: dir,
        }
    }

    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap();
        kib / 1024.0
    }

    async fn patient(&self, c: &reqwest::Client) -> String {
        let v: serde_json::Value = c
            .post(format!("{}/api/v1/cases", self.base))
            .bearer_auth(&self.coordinator)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["upload_token"].as_str().unwrap().to_owned()
    }

    async fn create(&self, c: &reqwest::Client, token: &str, len: u64) -> String {
        let resp = c
            .post(format!("{}/tus/", self.base))
            .bearer_auth(token)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", len.to_string())
            .header("Upload-Metadata", "filename YmVuY2guYmlu")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        format!(
            "{}{}",
            self.base,
            resp.headers()["location"].to_str().unwrap()
        )
    }

    /// Uploads `len` bytes in PATCHes of `chunk` bytes.
    async fn upload(&self, c: &reqwest::Client, token: &str, len: u64, chunk: u64) {
        let url = self.create(c, token, len).await;
        let mut offset = 0;
        while offset < len {
            let n = chunk.min(len - offset);
            let resp = c
                .patch(&url)
                .bearer_auth(token)
                .header("Tus-Resumable", "1.0.0")
                .header("Upload-Offset", offset.to_string())
                .header("Content-Type", "application/offset+octet-stream")
                .body(body(n))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 204, "{:?}", resp.text().await);
            offset += n;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mib_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / MIB as f64 / secs
}

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
