//! `casegate fetch` against a gateway that sends more than it promised: a
//! fake server with the gateway's certificate serves the real manifest and
//! real sealed objects, padded or over-announced, or under another
//! object's `ETag`. Every read is bounded by the manifest's promise (and
//! the manifest by a fixed limit), so a broken or hostile server cannot
//! fill the centre's disk or memory; an object that is not the one the
//! grant lists is discarded; the honest files still land.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use casegate::tls::server_config::{ServerIdentity, main_listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::common::{TestApp, spawn_app};
use crate::fetch_harness::{Centre, entry_for, files_under};
use crate::tus::pattern;

/// One canned answer of the fake gateway.
#[derive(Clone)]
pub struct Reply {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Junk sent after `body`, in 64 KiB pieces, until the client hangs up.
    pub junk: u64,
    /// `Content-Length` to announce; none: the body ends when the
    /// connection closes.
    pub content_length: Option<u64>,
}

pub struct FakeGateway {
    pub addr: SocketAddr,
    /// Body bytes each path managed to write before the client hung up.
    pub written: Arc<Mutex<HashMap<String, u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn fake_gateway(app: &TestApp, replies: HashMap<String, Reply>) -> FakeGateway {
    let certs = app.dir.path().join("certs");
    let identity =
        ServerIdentity::load(&certs.join("server.pem"), &certs.join("server-key.pem")).unwrap();
    let mut config = (*main_listener(&identity).unwrap()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let replies = Arc::new(replies);
    let written = Arc::new(Mutex::new(HashMap::new()));
    let counts = written.clone();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, replies, counts) = (acceptor.clone(), replies.clone(), counts.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if tls.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                let Some(reply) = replies.get(&path) else {
                    let _ = tls
                        .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    return;
                };
                let mut answer = "HTTP/1.1 200 OK\r\nConnection: close\r\n".to_owned();
                for (k, v) in &reply.headers {
                    answer.push_str(&format!("{k}: {v}\r\n"));
                }
                if let Some(n) = reply.content_length {
                    answer.push_str(&format!("Content-Length: {n}\r\n"));
                }
                answer.push_str("\r\n");
                if tls.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let mut sent = 0u64;
                let junk = vec![b' '; 64 * 1024];
                let mut pieces = reply.body.chunks(64 * 1024).collect::<Vec<_>>();
                let mut junk_left = reply.junk;
                while junk_left > 0 {
                    let n = junk_left.min(junk.len() as u64) as usize;
                    pieces.push(&junk[..n]);
                    junk_left -= n as u64;
                }
                for piece in pieces {
                    if tls.write_all(piece).await.is_err() || tls.flush().await.is_err() {
                        break;
                    }
                    sent += piece.len() as u64;
                }
                counts.lock().unwrap().insert(path, sent);
                let _ = tls.shutdown().await;
            });
        }
    });
    FakeGateway {
        addr,
        written,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_downloads_are_bounded_by_the_manifest() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let (honest, announced, streamed, swapped) = (
        pattern(50_000, 41),
        pattern(60_000, 42),
        pattern(70_000, 43),
        pattern(80_000, 44),
    );
    app.upload(&patient, "honest.pdf", None, &honest, 50_000)
        .await;
    app.upload(&patient, "announced.pdf", None, &announced, 60_000)
        .await;
    app.upload(&patient, "streamed.pdf", None, &streamed, 70_000)
        .await;
    app.upload(&patient, "swapped.pdf", None, &swapped, 80_000)
        .await;
    let centre = Centre::with_grant(&app, &case, 5).await;
    let manifest = centre.manifest(&app).await;
    let sealed_path = |data: &[u8]| {
        format!(
            "/api/v1/grant/files/{}/sealed",
            entry_for(&manifest, data)["file_id"].as_str().unwrap()
        )
    };
    let mut replies = HashMap::new();
    replies.insert(
        "/api/v1/grant".to_owned(),
        Reply {
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::to_vec(&manifest).unwrap(),
            junk: 0,
            content_length: Some(serde_json::to_vec(&manifest).unwrap().len() as u64),
        },
    );
    let etag = |data: &[u8]| {
        let listed = entry_for(&manifest, data)["sealed_etag"].as_str().unwrap();
        format!("\"{listed}\"")
    };
    for (data, junk, announce_all, etag) in [
        (&honest, 0, true, etag(&honest)),
        // Announces 8 MiB more than the manifest promised.
        (&announced, 8 << 20, true, etag(&announced)),
        // Announces nothing and streams 8 MiB past the promise.
        (&streamed, 8 << 20, false, etag(&streamed)),
        // The right length under another object's validator.
        (&swapped, 0, true, etag(&honest)),
    ] {
        let (body, key) = centre
            .sealed(
                &app,
                entry_for(&manifest, data)["file_id"].as_str().unwrap(),
            )
            .await;
        let length = body.len() as u64 + junk;
        replies.insert(
            sealed_path(data),
            Reply {
                headers: vec![("Casegate-Sealed-Key".into(), key), ("ETag".into(), etag)],
                body,
                junk,
                content_length: announce_all.then_some(length),
            },
        );
    }
    let fake = fake_gateway(&app, replies).await;
    let out = app.dir.path().join("received");

    let run = centre.fetch(&app, fake.addr.port(), &out);
    let promised = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["sealed_size"].as_u64().unwrap())
        .max()
        .unwrap();
    for (path, size) in files_under(&out) {
        assert!(
            size <= promised,
            "{path:?} holds {size} bytes, over any promise"
        );
    }
    assert!(!run.ok, "{}", run.stderr);
    assert_eq!(std::fs::read(out.join("other/honest.pdf")).unwrap(), honest);
    assert!(!out.join("other/announced.pdf").exists());
    assert!(!out.join("other/streamed.pdf").exists());
    assert!(run.stderr.contains("announced.pdf"), "{}", run.stderr);
    assert!(run.stderr.contains("streamed.pdf"), "{}", run.stderr);
    assert!(!out.join("other/swapped.pdf").exists());
    assert!(
        run.stderr.contains("another object than the grant lists"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("1 of 4 files are in"), "{}", run.stderr);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifest_read_is_bounded() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    app.upload(&patient, "x.pdf", None, &pattern(1_000, 51), 1_000)
        .await;
    let centre = Centre::with_grant(&app, &case, 3).await;
    // 96 MiB of JSON that never ends, without a Content-Length.
    let mut replies = HashMap::new();
    let junk = 96 << 20;
    replies.insert(
        "/api/v1/grant".to_owned(),
        Reply {
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: br#"{"grant_id":"grant_x","case_id":"case_x","files":["#.to_vec(),
            junk,
            content_length: None,
        },
    );
    let fake = fake_gateway(&app, replies).await;
    let out = app.dir.path().join("received");

    let run = centre.fetch(&app, fake.addr.port(), &out);
    assert!(!run.ok);
    assert!(run.stderr.contains("manifest"), "{}", run.stderr);
    // The fake server records the count once its writes fail.
    let mut written = None;
    for _ in 0..100 {
        written = fake.written.lock().unwrap().get("/api/v1/grant").copied();
        if written.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let written = written.unwrap();
    assert!(
        written < 80 << 20,
        "the client read {written} bytes of a manifest before giving up"
    );
    app.stop().await;
}
