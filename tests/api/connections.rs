//! Transport behaviour: TLS versions and ALPN, which listener asks for a
//! client certificate, proof of key possession, slowloris and idle
//! connections cut, the connection cap.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::common::{TestApp, spawn_app, spawn_app_with};

fn roots(app: &TestApp) -> RootCertStore {
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&app.ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(
    app: &TestApp,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> ClientConfig {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots(app))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

async fn connect(config: ClientConfig, port: u16) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// Reads until the server closes; returns how long that took, or None if it
/// did not close within `limit`.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Option<Duration> {
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(
            limit.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn tls13_and_tls12_with_alpn() {
    let app = spawn_app().await;
    let port = app.addr.port();
    for (versions, alpn, want_version, want_alpn) in [
        (
            &[&rustls::version::TLS13][..],
            &[&b"h2"[..]][..],
            rustls::ProtocolVersion::TLSv1_3,
            &b"h2"[..],
        ),
        (
            &[&rustls::version::TLS12][..],
            &[&b"http/1.1"[..]][..],
            rustls::ProtocolVersion::TLSv1_2,
            &b"http/1.1"[..],
        ),
    ] {
        let stream = connect(client_config(&app, versions, alpn), port)
            .await
            .unwrap();
        let conn = stream.get_ref().1;
        assert_eq!(conn.protocol_version(), Some(want_version));
        assert_eq!(conn.alpn_protocol(), Some(want_alpn));
    }
    // The API over HTTP/1.1 and HTTP/2.
    for h1 in [true, false] {
        let mut builder = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&app.ca_pem).unwrap());
        builder = if h1 { builder.http1_only() } else { builder };
        let resp = builder
            .build()
            .unwrap()
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let want = if h1 {
            reqwest::Version::HTTP_11
        } else {
            reqwest::Version::HTTP_2
        };
        assert_eq!(resp.version(), want);
    }
    app.stop().await;
}

/// Records whether the server asked for a client certificate, and answers
/// with `identity` if it has one.
#[derive(Debug)]
struct Recorder {
    asked: AtomicBool,
    identity: Mutex<Option<Arc<CertifiedKey>>>,
}

impl ResolvesClientCert for Recorder {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::SeqCst);
        self.identity.lock().unwrap().clone()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn certified(cert_from: &rcgen::KeyPair, sign_with: &rcgen::KeyPair) -> Arc<CertifiedKey> {
    let params = rcgen::CertificateParams::new(vec!["centre.test".to_string()]).unwrap();
    let cert = params.self_signed(cert_from).unwrap();
    let key = PrivateKeyDer::try_from(sign_with.serialize_der()).unwrap();
    let signer = provider().key_provider.load_private_key(key).unwrap();
    Arc::new(CertifiedKey::new(vec![cert.der().clone()], signer))
}

fn recording_config(app: &TestApp, recorder: Arc<Recorder>) -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(app))
        .with_client_cert_resolver(recorder)
}

#[tokio::test]
async fn only_the_centre_listener_asks_for_a_client_certificate() {
    let app = spawn_app().await;
    let recorder = Arc::new(Recorder {
        asked: AtomicBool::new(false),
        identity: Mutex::new(None),
    });
    connect(recording_config(&app, recorder.clone()), app.addr.port())
        .await
        .unwrap();
    assert!(
        !recorder.asked.load(Ordering::SeqCst),
        "main listener must never show a certificate picker"
    );

    // The centre listener asks, and a client without a certificate still
    // completes the handshake (the API answers 401 later, not a TLS alert).
    let mut stream = connect(
        recording_config(&app, recorder.clone()),
        app.centre_addr.port(),
    )
    .await
    .unwrap();
    assert!(recorder.asked.load(Ordering::SeqCst));
    stream
        .write_all(b"GET /api/v1/grant HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    assert!(response.starts_with("HTTP/1.1 "), "{response}");

    // With a matching certificate and key the handshake succeeds...
    let key = rcgen::KeyPair::generate().unwrap();
    *recorder.identity.lock().unwrap() = Some(certified(&key, &key));
    let mut ok = connect(
        recording_config(&app, recorder.clone()),
        app.centre_addr.port(),
    )
    .await
    .unwrap();
    ok.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    let _ = ok.read_to_string(&mut response).await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");

    // ...but a certificate presented without its private key is refused.
    let other = rcgen::KeyPair::generate().unwrap();
    *recorder.identity.lock().unwrap() = Some(certified(&key, &other));
    let refused = match connect(
        recording_config(&app, recorder.clone()),
        app.centre_addr.port(),
    )
    .await
    {
        Err(_) => true,
        // TLS 1.3: the client may finish before the server's alert arrives.
        Ok(mut s) => {
            let _ = s
                .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await;
            let mut buf = Vec::new();
            matches!(s.read_to_end(&mut buf).await, Err(_) | Ok(0))
        }
    };
    assert!(
        refused,
        "a stolen certificate without its key must not complete a connection"
    );
    app.stop().await;
}

#[tokio::test]
async fn slowloris_and_idle_connections_are_cut() {
    let app = spawn_app_with(|c| {
        c.limits.header_read_timeout_secs = 1;
        c.limits.tls_handshake_timeout_secs = 1;
    })
    .await;
    let port = app.addr.port();
    let h1 = || client_config(&app, &[&rustls::version::TLS13], &[b"http/1.1"]);

    // Headers dripped a byte at a time: cut although bytes keep coming.
    let mut slow = connect(h1(), port).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut cut = false;
    while started.elapsed() < Duration::from_secs(10) {
        if slow.write_all(b"X").await.is_err() || slow.flush().await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(200), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(_)) => {
                // A 408 response before closing is fine too.
                cut = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(cut, "a slowloris client must not hold the connection");

    // A TLS connection that never sends a request.
    let mut idle = connect(h1(), port).await.unwrap();
    assert!(
        closed_within(&mut idle, Duration::from_secs(10))
            .await
            .is_some(),
        "idle TLS connection kept open"
    );

    // A TCP connection that never starts the TLS handshake.
    let mut raw = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert!(
        closed_within(&mut raw, Duration::from_secs(10))
            .await
            .is_some(),
        "handshake never started, still open"
    );

    // The server still serves normal clients.
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
}

/// HTTP/2 keeps connections alive with pings, so hyper alone never cuts a
/// client that stops sending requests: the server sends GOAWAY once no
/// request started for the header read timeout. A client that never sends
/// the HTTP/2 preface is cut too.
#[tokio::test]
async fn idle_http2_connections_are_cut() {
    let app = spawn_app_with(|c| c.limits.header_read_timeout_secs = 1).await;
    let port = app.addr.port();
    let h2 = || client_config(&app, &[&rustls::version::TLS13], &[b"h2"]);

    let mut silent = connect(h2(), port).await.unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(10))
            .await
            .is_some(),
        "an h2 connection without a preface kept open"
    );

    let tls = connect(h2(), port).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let driver = tokio::spawn(conn);
    let req = hyper::Request::get(format!("https://localhost:{port}/healthz"))
        .body(BoxBody::new(
            http_body_util::Empty::<bytes::Bytes>::new().map_err(|never| match never {}),
        ))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200, "the connection works before it idles");

    // A request still running when the connection goes idle (no new one
    // for longer than the limit) completes: the close is graceful.
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>>(2);
    let body = http_body_util::StreamBody::new(tokio_stream_from(rx));
    let req = hyper::Request::post(format!("https://localhost:{port}/api/v1/cases"))
        .header("authorization", format!("Bearer {}", app.coordinator))
        .header("content-type", "application/json")
        .body(BoxBody::new(body))
        .unwrap();
    let running = tokio::spawn(sender.send_request(req));
    tx.send(Ok(hyper::body::Frame::data(bytes::Bytes::from_static(
        b"{",
    ))))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    tx.send(Ok(hyper::body::Frame::data(bytes::Bytes::from_static(
        b"}",
    ))))
    .await
    .unwrap();
    drop(tx);
    let resp = running.await.unwrap().unwrap();
    assert_eq!(
        resp.status(),
        201,
        "a running request survives the idle close"
    );
    // Now idle: the server must end the connection (the client's driver
    // future finishes once the server's GOAWAY closes it).
    let ended = tokio::time::timeout(Duration::from_secs(10), driver).await;
    assert!(ended.is_ok(), "idle h2 connection kept open");
    app.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed() {
    let app = spawn_app_with(|c| c.limits.max_connections = 2).await;
    let port = app.addr.port();
    let h1 = || client_config(&app, &[&rustls::version::TLS13], &[b"http/1.1"]);
    let first = connect(h1(), port).await.unwrap();
    let _second = connect(h1(), port).await.unwrap();
    let third = connect(h1(), port).await;
    let refused = match third {
        Err(_) => true,
        Ok(mut s) => closed_within(&mut s, Duration::from_secs(5))
            .await
            .is_some(),
    };
    assert!(refused, "third connection must be refused at cap 2");
    drop(first);
    // The permit comes back once the server notices the close.
    let mut served = false;
    for _ in 0..50 {
        if let Ok(mut s) = connect(h1(), port).await {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut response = String::new();
            let _ = s.read_to_string(&mut response).await;
            if response.starts_with("HTTP/1.1 200") {
                served = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "a slot frees up after a connection closes");
    app.stop().await;
}

/// A stream over an mpsc receiver (a request body fed by the test).
fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}
