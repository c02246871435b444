//! Two replicas behind HAProxy on PostgreSQL and S3 (Garage in CI): any
//! replica continues any upload, a killed replica loses no acknowledged
//! byte, a revocation on one cuts a download on the other, use counting
//! holds across both, the merged audit log verifies, and entries name the
//! real client address. Needs CASEGATE_TEST_POSTGRES, the CASEGATE_TEST_S3_*
//! variables and haproxy; skips without them (CASEGATE_REQUIRE_REPLICAS=1
//! makes that a failure).

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::replicas_harness::{Layout, Services};
use crate::tus::{meta, pattern, sha256_hex};

async fn create_upload(
    l: &Layout,
    c: &reqwest::Client,
    port: u16,
    token: &str,
    len: usize,
) -> String {
    let resp = c
        .post(l.url(port, "/tus/"))
        .bearer_auth(token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", len.to_string())
        .header("Upload-Metadata", meta("ct.bin", None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    resp.headers()["location"].to_str().unwrap().to_owned()
}

async fn patch(
    l: &Layout,
    c: &reqwest::Client,
    port: u16,
    token: &str,
    path: &str,
    at: usize,
    body: Vec<u8>,
) -> StatusCode {
    c.patch(l.url(port, path))
        .bearer_auth(token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", at.to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .body(body)
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or(StatusCode::BAD_GATEWAY)
}

async fn offset(l: &Layout, c: &reqwest::Client, port: u16, token: &str, path: &str) -> usize {
    let resp = c
        .head(l.url(port, path))
        .bearer_auth(token)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_behind_haproxy_act_as_one_gateway() {
    let Some(services) = Services::from_env() else {
        return;
    };
    let mut l = Layout::start(&services).await;
    let c = l.client(None);
    let case: Value = c
        .post(l.url(l.fe.main, "/api/v1/cases"))
        .bearer_auth(&l.coordinator)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (case_id, patient) = (
        case["case_id"].as_str().unwrap().to_owned(),
        case["upload_token"].as_str().unwrap().to_owned(),
    );

    // Begun on A, resumed on B.
    let mib = 1024 * 1024;
    let data = pattern(12 * mib, 77);
    let [on_a, on_b] = l.fe.main_of;
    let path = create_upload(&l, &c, on_a, &patient, data.len()).await;
    assert_eq!(
        patch(&l, &c, on_a, &patient, &path, 0, data[..2 * mib].to_vec()).await,
        204
    );
    assert_eq!(
        patch(
            &l,
            &c,
            on_b,
            &patient,
            &path,
            2 * mib,
            data[2 * mib..4 * mib].to_vec()
        )
        .await,
        204
    );
    let acknowledged = 4 * mib;

    // A killed mid-PATCH: the client goes on through the balancer.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let slow = {
        let (c, url, token) = (c.clone(), l.url(on_a, &path), patient.clone());
        tokio::spawn(async move {
            c.patch(url)
                .bearer_auth(token)
                .header("Tus-Resumable", "1.0.0")
                .header("Upload-Offset", (4 * 1024 * 1024).to_string())
                .header("Content-Type", "application/offset+octet-stream")
                .body(reqwest::Body::wrap_stream(futures_util::stream::unfold(
                    rx,
                    |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
                )))
                .send()
                .await
        })
    };
    tx.send(Ok(Bytes::copy_from_slice(&data[4 * mib..5 * mib])))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    l.kill(0);
    drop(tx);
    let _ = slow.await;
    // The dead replica's lease on the upload holds it (423) until it
    // expires (30 s); a tus client retries, as this one does.
    let since = Instant::now();
    loop {
        let at = offset(&l, &c, l.fe.main, &patient, &path).await;
        assert!(
            at >= acknowledged && at <= 5 * mib,
            "offset {at} after the kill"
        );
        let status = patch(&l, &c, l.fe.main, &patient, &path, at, data[at..].to_vec()).await;
        if status == 204 {
            break;
        }
        // 423 while the lease holds; a failed connection while the
        // balancer still tries the dead replica (its health check takes
        // a second to notice).
        assert!(
            status == 423 || status == StatusCode::BAD_GATEWAY,
            "{status}"
        );
        assert!(
            since.elapsed() < Duration::from_secs(45),
            "the dead replica's lease never expired"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let manifest: Value = c
        .get(l.url(l.fe.main, "/api/v1/patient/case"))
        .bearer_auth(&patient)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(manifest["files"][0]["sha256"], sha256_hex(&data).as_str());
    l.restart(0).await;

    // A centre; its grant issued through A, downloaded through B, revoked
    // through A while B streams.
    let centre = crate::grants::register_centre_at(
        &c,
        &l.url(on_a, ""),
        &l.coordinator,
        &l.ca_pem,
        &l.url(l.fe.centre_of[1], ""),
        "Centre Léman",
    )
    .await;
    let centre_client = l.client(Some(&centre.identity));
    let grant = |max: u32| {
        let (c, url, coordinator) = (
            c.clone(),
            l.url(on_a, &format!("/api/v1/cases/{case_id}/grants")),
            l.coordinator.clone(),
        );
        let centre_id = centre.id.clone();
        async move {
            let v: Value = c
                .post(url)
                .bearer_auth(coordinator)
                .json(&json!({ "centre_id": centre_id, "expires_in_secs": 600, "max_downloads": max }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (
                v["grant_id"].as_str().unwrap().to_owned(),
                v["grant_token"].as_str().unwrap().to_owned(),
            )
        }
    };
    let file_id = manifest["files"][0]["file_id"].as_str().unwrap().to_owned();
    // A file larger than the balancer's and the sockets' buffers hold, so
    // its download is still running when the grant is revoked.
    let big = pattern(64 * mib, 78);
    let big_path = create_upload(&l, &c, l.fe.main, &patient, big.len()).await;
    for (i, piece) in big.chunks(16 * mib).enumerate() {
        let at = i * 16 * mib;
        let status = patch(&l, &c, l.fe.main, &patient, &big_path, at, piece.to_vec()).await;
        assert_eq!(status, 204);
    }
    let big_id = {
        let m: Value = c
            .get(l.url(l.fe.main, "/api/v1/patient/case"))
            .bearer_auth(&patient)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let files = m["files"].as_array().unwrap();
        let f = files.iter().find(|f| f["size"] == big.len()).unwrap();
        f["file_id"].as_str().unwrap().to_owned()
    };
    let (grant_id, token) = grant(5).await;
    let mut resp = centre_client
        .get(l.url(l.fe.centre_of[1], &format!("/api/v1/grant/files/{big_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A slow reader keeps the download running while it is revoked.
    let reader = tokio::spawn(async move {
        let mut got = 0usize;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            match resp.chunk().await {
                Ok(Some(chunk)) => got += chunk.len(),
                Ok(None) => return (got, false),
                Err(_) => return (got, true),
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let revoked = c
        .delete(l.url(on_a, &format!("/api/v1/grants/{grant_id}")))
        .bearer_auth(&l.coordinator)
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success(), "{:?}", revoked.text().await);
    // B cuts its running download within 10 s and records the cut (bytes
    // already in the balancer's and the sockets' buffers still arrive).
    let since = Instant::now();
    let audit_url = l.url(l.fe.main, "/api/v1/audit?action=download.plaintext");
    loop {
        let text = c
            .get(&audit_url)
            .bearer_auth(&l.compliance)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let cut = text.lines().any(|line| {
            let e: Value = serde_json::from_str(line).unwrap_or(Value::Null);
            e["grant_id"] == grant_id.as_str()
                && e["reason"].as_str().unwrap_or("").contains("cut after")
        });
        if cut {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "not cut within 10 s of revocation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // (The reader still gets what the balancer and the sockets held.)
    let (got, broke) = tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .unwrap()
        .unwrap();
    assert!(got < big.len(), "{got} of {} bytes", big.len());
    // Through the balancer too, the client is told the body was cut short
    // (a transport error), never handed a clean end.
    assert!(broke, "a cut download ended cleanly after {got} bytes");

    // Ten downloads at once over both replicas, three allowed.
    let (_, token) = grant(3).await;
    let mut runs = Vec::new();
    for i in 0..10 {
        let url = l.url(
            l.fe.centre_of[i % 2],
            &format!("/api/v1/grant/files/{file_id}"),
        );
        let (client, token) = (centre_client.clone(), token.clone());
        runs.push(tokio::spawn(async move {
            let resp = client.get(url).bearer_auth(token).send().await.unwrap();
            let status = resp.status();
            let body = resp.bytes().await.map(|b| b.len()).unwrap_or(0);
            (status, body)
        }));
    }
    let mut served = 0;
    for run in runs {
        let (status, len) = run.await.unwrap();
        if status == 200 {
            assert_eq!(len, data.len());
            served += 1;
        } else {
            assert_eq!(status, 403);
        }
    }
    assert_eq!(served, 3, "max_downloads = 3 across both replicas");

    // The merged log verifies offline; entries name the real client.
    let log = l.dir.path().join("audit.jsonl");
    let out = std::process::Command::new(Layout::bin())
        .args([
            "audit",
            "export",
            "--server",
            &l.url(l.fe.main, ""),
            "--token",
            &l.compliance,
            "--out",
        ])
        .arg(&log)
        .arg("--ca")
        .arg(l.dir.path().join("shared/certs/dev-ca.pem"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = l.public_key_file();
    let out = std::process::Command::new(Layout::bin())
        .args(["audit", "verify", "--log"])
        .arg(&log)
        .arg("--checkpoint")
        .arg(l.dir.path().join("audit.jsonl.checkpoint"))
        .arg("--public-key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let creates: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["action"] == "case.create")
        .collect();
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0]["client_addr"], "127.0.0.7", "{}", creates[0]);
}
