//! Shared pieces of the benchmarks: the request body from memory, a
//! client, the minimal TLS sink, a casegate gateway in its own process
//! (the current build's, or any other binary given by path), with the CPU
//! time and peak memory it used, and a centre with a grant on it
//! ([`centre`]).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod centre;
pub mod nginx;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub const MIB: u64 = 1024 * 1024;
pub const PIECE: usize = 1024 * 1024;

pub fn payload() -> Bytes {
    Bytes::from(
        (0..PIECE)
            .map(|i| (i * 131 % 251) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// A request body of `total` bytes, streamed from one in-memory piece.
/// Send it with `Content-Length` ([`sized`]), as tus clients do: without
/// it the client falls back to chunked encoding.
pub fn body(total: u64) -> reqwest::Body {
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

/// `req` with a streamed body of `total` bytes and its `Content-Length`.
pub fn sized(req: reqwest::RequestBuilder, total: u64) -> reqwest::RequestBuilder {
    req.header(reqwest::header::CONTENT_LENGTH, total.to_string())
        .body(body(total))
}

pub fn client(ca: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca).unwrap())
        .build()
        .unwrap()
}

/// A rustls acceptor (ring, TLS 1.3/1.2, ALPN http/1.1) with a fresh
/// self-signed certificate for 127.0.0.1, and that certificate's PEM.
pub fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, Vec<u8>) {
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
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        cert.pem().into_bytes(),
    )
}

/// The minimal TLS sink: same TLS settings as casegate, body drained — or,
/// with `into`, written to a new file in that directory (and the file
/// removed once the body ended), as a store would.
pub async fn sink() -> (u16, Vec<u8>) {
    sink_into(None).await
}

pub async fn sink_into(into: Option<std::path::PathBuf>) -> (u16, Vec<u8>) {
    let (acceptor, ca) = tls_acceptor();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let into = into.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let into = into.clone();
                        async move {
                            use tokio::io::AsyncWriteExt;
                            let mut file = match &into {
                                Some(dir) => {
                                    let path = dir.join({
                                        static N: std::sync::atomic::AtomicU64 =
                                            std::sync::atomic::AtomicU64::new(0);
                                        let n =
                                            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                        format!("sink-{n}")
                                    });
                                    Some((tokio::fs::File::create(&path).await.unwrap(), path))
                                }
                                None => None,
                            };
                            let mut body = req.into_body();
                            while let Some(frame) = body.frame().await {
                                let Ok(frame) = frame else { break };
                                if let (Some((f, _)), Ok(data)) = (file.as_mut(), frame.into_data())
                                {
                                    f.write_all(&data).await.unwrap();
                                }
                            }
                            if let Some((f, path)) = file {
                                drop(f);
                                let _ = std::fs::remove_file(path);
                            }
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(204)
                                    .body(String::new())
                                    .unwrap(),
                            )
                        }
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

pub struct Gateway {
    pub child: Child,
    pub base: String,
    pub ca: Vec<u8>,
    pub coordinator: String,
    pub centre_port: u16,
    _dir: tempfile::TempDir,
}

/// The gateway binary of this build.
pub fn current_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_casegate"))
}

/// The gateway binary benchmarks start: `BENCH_GATEWAY_BIN` (a previous
/// release, to compare run after run), else this build's.
pub fn gateway_bin() -> std::path::PathBuf {
    std::env::var_os("BENCH_GATEWAY_BIN").map_or_else(|| current_bin().to_owned(), Into::into)
}

impl Gateway {
    /// This build's gateway (or `BENCH_GATEWAY_BIN`) on a data directory in
    /// the system's temporary directory.
    pub fn start() -> Gateway {
        Gateway::start_bin(&gateway_bin(), &std::env::temp_dir())
    }

    /// The gateway `bin` on a fresh data directory inside `parent` (a disk
    /// or a tmpfs: where its objects and database go).
    pub fn start_bin(bin: &Path, parent: &Path) -> Gateway {
        let dir = tempfile::tempdir_in(parent).unwrap();
        let mut child = Command::new(bin)
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
        let (mut base, mut coordinator, mut centre_port) = (String::new(), String::new(), 0u16);
        while coordinator.is_empty() {
            let line = lines.next().unwrap().unwrap();
            if let Some(a) = line.strip_prefix("listening on ") {
                base = a.to_owned();
            }
            if let Some(a) = line.strip_prefix("centre listener on ") {
                centre_port = a.rsplit(':').next().unwrap().parse().unwrap();
            }
            if let Some(t) = line.strip_prefix("coordinator token: ") {
                coordinator = t.to_owned();
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let ca = std::fs::read(dir.path().join("certs/dev-ca.pem")).unwrap();
        // Sequential reads of the listening line come before the centre
        // line; both are printed before the tokens.
        assert!(centre_port != 0, "centre listener line not seen");
        Gateway {
            child,
            base,
            ca,
            coordinator,
            centre_port,
            _dir: dir,
        }
    }

    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap();
        kib / 1024.0
    }

    /// The gateway's data directory (its `certs/dev-ca.pem` is the CA).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// CPU seconds (user + system, all threads) the gateway used so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id())
    }

    pub async fn patient(&self, c: &reqwest::Client) -> String {
        self.patient_case(c).await.1
    }

    /// Deletes a case (crypto-shred): its objects leave the data directory.
    pub async fn delete_case(&self, c: &reqwest::Client, case_id: &str) {
        let resp = c
            .delete(format!("{}/api/v1/cases/{case_id}", self.base))
            .bearer_auth(&self.coordinator)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
    }

    /// A new case: its id and its patient's upload token.
    pub async fn patient_case(&self, c: &reqwest::Client) -> (String, String) {
        let v: serde_json::Value = c
            .post(format!("{}/api/v1/cases", self.base))
            .bearer_auth(&self.coordinator)
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

    pub async fn create(&self, c: &reqwest::Client, token: &str, len: u64) -> String {
        create_at(c, &self.base, token, len).await
    }

    /// Uploads `len` bytes in PATCHes of `chunk` bytes.
    pub async fn upload(&self, c: &reqwest::Client, token: &str, len: u64, chunk: u64) {
        upload_at(c, &self.base, token, len, chunk).await
    }
}

/// Creates a `len`-byte upload at the gateway `base`; its URL.
pub async fn create_at(c: &reqwest::Client, base: &str, token: &str, len: u64) -> String {
    let resp = c
        .post(format!("{base}/tus/"))
        .bearer_auth(token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", len.to_string())
        .header("Upload-Metadata", "filename YmVuY2guYmlu")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    format!("{base}{}", resp.headers()["location"].to_str().unwrap())
}

/// Uploads `len` bytes to the gateway `base` in PATCHes of `chunk` bytes.
pub async fn upload_at(c: &reqwest::Client, base: &str, token: &str, len: u64, chunk: u64) {
    let url = create_at(c, base, token, len).await;
    let mut offset = 0;
    while offset < len {
        let n = chunk.min(len - offset);
        let req = c
            .patch(&url)
            .bearer_auth(token)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream");
        let resp = sized(req, n).send().await.unwrap();
        assert_eq!(resp.status(), 204, "{:?}", resp.text().await);
        offset += n;
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system, all threads) process `pid` used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold
    // spaces; utime and stime are fields 14 and 15 (clock ticks, 100/s
    // on Linux).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

pub fn mib_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / MIB as f64 / secs
}
