//! tus 1.0 uploads through the real server: protocol, status codes,
//! encryption at rest, completion (SHA-256, DICOM index), termination,
//! expiry, quotas, locks, restarts.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, Response};
use serde_json::Value;

use crate::common::{TestApp, spawn_app, spawn_app_with};

pub fn meta(filename: &str, category: Option<&str>) -> String {
    let mut m = format!("filename {}", STANDARD.encode(filename));
    if let Some(c) = category {
        m.push_str(&format!(",category {}", STANDARD.encode(c)));
    }
    m
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    casegate::hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// The sealed download's `ETag` value by its definition in docs/format.md,
/// written out here apart from the gateway's code: SHA-256 over the
/// object's 32-byte header, then each chunk's nonce (its first 12 bytes)
/// and tag (its last 16).
pub fn object_digest_hex(object: &[u8]) -> String {
    let chunk_size = u32::from_be_bytes(object[12..16].try_into().unwrap());
    let sealed_chunk = chunk_size as usize + 28;
    let mut input = object[..32].to_vec();
    for chunk in object[32..].chunks(sealed_chunk) {
        input.extend_from_slice(&chunk[..12]);
        input.extend_from_slice(&chunk[chunk.len() - 16..]);
    }
    sha256_hex(&input)
}

pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

impl TestApp {
    pub fn tus(&self, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
            .header("Tus-Resumable", "1.0.0")
    }

    /// POST /tus/ → the upload's path.
    pub async fn tus_create(&self, token: &str, length: u64, metadata: &str) -> String {
        let resp = self
            .tus(Method::POST, "/tus/", token)
            .header("Upload-Length", length.to_string())
            .header("Upload-Metadata", metadata)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
        resp.headers()["location"].to_str().unwrap().to_owned()
    }

    pub async fn tus_patch(
        &self,
        token: &str,
        path: &str,
        offset: u64,
        bytes: Vec<u8>,
    ) -> Response {
        self.tus(Method::PATCH, path, token)
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(bytes)
            .send()
            .await
            .unwrap()
    }

    pub async fn tus_offset(&self, token: &str, path: &str) -> u64 {
        let resp = self.tus(Method::HEAD, path, token).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.headers()["upload-offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Uploads a whole file in PATCHes of `piece` bytes; returns its path.
    pub async fn upload(
        &self,
        token: &str,
        name: &str,
        category: Option<&str>,
        data: &[u8],
        piece: usize,
    ) -> String {
        let path = self
            .tus_create(token, data.len() as u64, &meta(name, category))
            .await;
        let mut offset = 0;
        for chunk in data.chunks(piece.max(1)) {
            let resp = self.tus_patch(token, &path, offset, chunk.to_vec()).await;
            assert_eq!(resp.status(), 204, "{:?}", resp.text().await);
            offset += chunk.len() as u64;
            assert_eq!(resp.headers()["upload-offset"], offset.to_string().as_str());
        }
        path
    }

    pub async fn patient_manifest(&self, token: &str) -> Value {
        let resp = self
            .request(Method::GET, "/api/v1/patient/case", Some(token), None)
            .await;
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }
}

#[tokio::test]
async fn discovery_create_resume_complete() {
    let app = spawn_app().await;
    let (_, patient) = app.create_case(None).await;
    let resp = app
        .client
        .request(Method::OPTIONS, app.url("/tus/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let h = resp.headers();
    assert_eq!(h["tus-version"], "1.0.0");
    assert_eq!(h["tus-resumable"], "1.0.0");
    assert_eq!(
        h["tus-extension"],
        "creation,creation-with-upload,expiration,checksum,termination"
    );
    assert_eq!(h["tus-checksum-algorithm"], "sha1,sha256");
    assert_eq!(
        h["tus-max-size"],
        app.config.limits.max_upload_bytes.to_string().as_str()
    );

    let data = pattern(300_001, 7);
    let path = app
        .tus_create(
            &patient,
            data.len() as u64,
            &meta("report.pdf", Some("pathology_report")),
        )
        .await;
    assert!(path.starts_with("/tus/up_"));
    let head = app.tus(Method::HEAD, &path, &patient).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["upload-offset"], "0");
    assert_eq!(head.headers()["upload-length"], "300001");
    assert_eq!(head.headers()["cache-control"], "no-store");
    assert!(
        head.headers()["upload-expires"]
            .to_str()
            .unwrap()
            .ends_with("GMT")
    );
    assert_eq!(
        head.headers()["upload-metadata"].to_str().unwrap(),
        meta("report.pdf", Some("pathology_report"))
    );

    // Uneven pieces, across chunk boundaries, with a manifest check midway.
    let mut offset = 0u64;
    for piece in [100_000usize, 70_000, 1, 65_535] {
        let resp = app
            .tus_patch(
                &patient,
                &path,
                offset,
                data[offset as usize..offset as usize + piece].to_vec(),
            )
            .await;
        assert_eq!(resp.status(), 204);
        offset += piece as u64;
        assert_eq!(app.tus_offset(&patient, &path).await, offset);
    }
    let m = app.patient_manifest(&patient).await;
    assert_eq!(m["files"][0]["state"], "uploading");
    let resp = app
        .tus_patch(&patient, &path, offset, data[offset as usize..].to_vec())
        .await;
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["upload-offset"], "300001");

    let m = app.patient_manifest(&patient).await;
    let f = &m["files"][0];
    assert_eq!(f["state"], "complete");
    assert_eq!(f["filename"], "report.pdf");
    assert_eq!(f["category"], "pathology_report");
    assert_eq!(f["size"], 300_001);
    assert_eq!(f["sha256"], sha256_hex(&data));
    assert_eq!(f["dicom"], Value::Null);
    // A finished upload answers HEAD with its full offset.
    assert_eq!(app.tus_offset(&patient, &path).await, 300_001);
    app.stop().await;
}

#[tokio::test]
async fn creation_with_upload_and_empty_files() {
    let app = spawn_app().await;
    let (_, patient) = app.create_case(None).await;
    let data = pattern(70_000, 3);
    let resp = app
        .tus(Method::POST, "/tus/", &patient)
        .header("Upload-Length", "100000")
        .header(
            "Upload-Metadata",
            meta("questions.txt", Some("patient_questions")),
        )
        .header("Content-Type", "application/offset+octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["upload-offset"], "70000");
    let path = resp.headers()["location"].to_str().unwrap().to_owned();
    let rest = pattern(30_000, 4);
    assert_eq!(
        app.tus_patch(&patient, &path, 70_000, rest.clone())
            .await
            .status(),
        204
    );

    let empty = app.tus_create(&patient, 0, &meta("empty.txt", None)).await;
    assert_eq!(app.tus_offset(&patient, &empty).await, 0);
    let m = app.patient_manifest(&patient).await;
    let files = m["files"].as_array().unwrap();
    let whole: Vec<u8> = [data, rest].concat();
    let by_name = |n: &str| files.iter().find(|f| f["filename"] == n).unwrap().clone();
    assert_eq!(by_name("questions.txt")["sha256"], sha256_hex(&whole));
    assert_eq!(by_name("empty.txt")["state"], "complete");
    assert_eq!(by_name("empty.txt")["sha256"], sha256_hex(b""));
    app.stop().await;
}

#[tokio::test]
async fn protocol_errors_have_tus_status_codes_and_lose_nothing() {
    let app = spawn_app().await;
    let (_, patient) = app.create_case(None).await;
    let (_, other_patient) = app.create_case(None).await;
    let data = pattern(200_000, 9);
    let path = app
        .tus_create(&patient, data.len() as u64, &meta("a.bin", None))
        .await;
    assert_eq!(
        app.tus_patch(&patient, &path, 0, data[..50_000].to_vec())
            .await
            .status(),
        204
    );

    // Wrong or missing Tus-Resumable.
    for version in [Some("0.2.2"), None] {
        let mut req = app
            .client
            .request(Method::HEAD, app.url(&path))
            .bearer_auth(&patient);
        if let Some(v) = version {
            req = req.header("Tus-Resumable", v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 412);
        assert_eq!(resp.headers()["tus-version"], "1.0.0");
    }
    // Wrong content type.
    let resp = app
        .tus(Method::PATCH, &path, &patient)
        .header("Upload-Offset", "50000")
        .header("Content-Type", "application/octet-stream")
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    // Offset mismatch, ahead and behind.
    for wrong in [0u64, 49_999, 50_001] {
        let resp = app
            .tus_patch(&patient, &path, wrong, data[50_000..60_000].to_vec())
            .await;
        assert_eq!(resp.status(), 409, "offset {wrong}");
    }
    // Malformed offsets.
    for bad in ["-1", "abc", "1e3", " 50000", "99999999999999999999999"] {
        let resp = app
            .tus(Method::PATCH, &path, &patient)
            .header("Upload-Offset", bad)
            .header("Content-Type", "application/offset+octet-stream")
            .body(vec![0u8; 1])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad:?}");
    }
    // Checksum mismatch: 460, the bytes are dropped, the offset stays.
    let piece = data[50_000..90_000].to_vec();
    let wrong_sum = STANDARD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        b"something else",
    ));
    let resp = app
        .tus(Method::PATCH, &path, &patient)
        .header("Upload-Offset", "50000")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Checksum", format!("sha256 {wrong_sum}"))
        .body(piece.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 460);
    assert_eq!(app.tus_offset(&patient, &path).await, 50_000);
    // Unsupported algorithm: 400.
    let resp = app
        .tus(Method::PATCH, &path, &patient)
        .header("Upload-Offset", "50000")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Checksum", "md5 AAAAAAAAAAAAAAAAAAAAAA==")
        .body(piece.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // The right checksum (sha1) is accepted.
    let sum = STANDARD.encode(ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        &piece,
    ));
    let resp = app
        .tus(Method::PATCH, &path, &patient)
        .header("Upload-Offset", "50000")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Checksum", format!("sha1 {sum}"))
        .body(piece)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(app.tus_offset(&patient, &path).await, 90_000);
    // More than Upload-Length: 413, nothing kept.
    let resp = app
        .tus_patch(&patient, &path, 90_000, vec![7u8; 110_001])
        .await;
    assert_eq!(resp.status(), 413);
    assert_eq!(app.tus_offset(&patient, &path).await, 90_000);
    // Another case's token, an unknown id, a malformed id: 404.
    let resp = app
        .tus(Method::HEAD, &path, &other_patient)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = app.tus_patch(&other_patient, &path, 90_000, vec![1]).await;
    assert_eq!(resp.status(), 404);
    for p in [
        format!("/tus/up_{}", "0".repeat(32)),
        "/tus/../../etc".to_string(),
        "/tus/up_zz".to_string(),
    ] {
        let resp = app.tus(Method::HEAD, &p, &patient).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{p}");
    }
    // A coordinator uploads its own documents, never into a patient's upload.
    let resp = app
        .tus(Method::HEAD, &path, &app.coordinator)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // Creation errors.
    for (length, metadata, want) in [
        (None, meta("x", None), 400),
        (Some("-5"), meta("x", None), 400),
        (Some("10"), "category aW1hZ2luZ19kaWNvbQ==".to_string(), 400),
        (Some("10"), meta("x", Some("x-ray")), 400),
        (Some("999999999999999999"), meta("x", None), 413),
    ] {
        let mut req = app
            .tus(Method::POST, "/tus/", &patient)
            .header("Upload-Metadata", metadata);
        if let Some(l) = length {
            req = req.header("Upload-Length", l);
        }
        assert_eq!(req.send().await.unwrap().status(), want, "{length:?}");
    }
    // Finish with the right bytes: the stored file is exactly the data.
    assert_eq!(
        app.tus_patch(&patient, &path, 90_000, data[90_000..].to_vec())
            .await
            .status(),
        204
    );
    let m = app.patient_manifest(&patient).await;
    assert_eq!(m["files"][0]["sha256"], sha256_hex(&data));
    let audit = app.audit().await;
    assert!(audit.iter().any(|e| e["action"] == "upload.patch"
        && e["outcome"] == "deny"
        && e["reason"].as_str().unwrap().contains("checksum")));
    app.stop().await;
}

#[tokio::test]
async fn termination_and_expiry_remove_stored_parts() {
    let app = spawn_app().await;
    let (case_id, patient) = app.create_case(None).await;
    let path = app
        .tus_create(&patient, 500_000, &meta("x.bin", None))
        .await;
    assert_eq!(
        app.tus_patch(&patient, &path, 0, pattern(200_000, 1))
            .await
            .status(),
        204
    );
    let objects = app.config.fs_root().join("cases").join(&case_id);
    assert_eq!(std::fs::read_dir(&objects).unwrap().count(), 1);
    let resp = app
        .tus(Method::DELETE, &path, &patient)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        app.tus(Method::HEAD, &path, &patient)
            .send()
            .await
            .unwrap()
            .status(),
        410
    );
    assert_eq!(
        app.tus_patch(&patient, &path, 200_000, vec![1])
            .await
            .status(),
        410
    );
    assert_eq!(
        std::fs::read_dir(&objects).unwrap().count(),
        0,
        "terminated upload's object removed"
    );
    assert_eq!(
        app.patient_manifest(&patient).await["files"],
        serde_json::json!([])
    );

    // Expiry: a week without activity.
    let stale = app
        .tus_create(&patient, 500_000, &meta("y.bin", None))
        .await;
    assert_eq!(
        app.tus_patch(&patient, &stale, 0, pattern(100_000, 2))
            .await
            .status(),
        204
    );
    app.clock
        .advance(app.config.uploads.upload_ttl_secs as i64 + 1);
    assert_eq!(
        app.tus(Method::HEAD, &stale, &patient)
            .send()
            .await
            .unwrap()
            .status(),
        410
    );
    assert_eq!(app.uploads.sweep().await.unwrap(), 1);
    assert_eq!(
        std::fs::read_dir(&objects).unwrap().count(),
        0,
        "expired upload's object removed"
    );
    assert_eq!(
        app.patient_manifest(&patient).await["files"],
        serde_json::json!([])
    );
    let audit = app.audit().await;
    assert!(audit.iter().any(|e| e["action"] == "upload.terminate"));
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "upload.expire" && e["actor"] == "system:uploads")
    );
    app.stop().await;
}

/// Every byte stored and acknowledged, but the gateway died before the
/// completion was recorded (the state a kill or a store outage between the
/// last PATCH's commit and its completion leaves). The client saw HEAD =
/// length and sends nothing more; if the gateway stays down past the
/// upload expiry, the file must still complete, never expire and lose the
/// patient's bytes.
#[tokio::test]
async fn a_stored_upload_completes_after_its_expiry_instead_of_being_deleted() {
    let app = spawn_app().await;
    let (case_id, patient) = app.create_case(None).await;
    let data = pattern(300_000, 7);
    let path = app
        .tus_create(&patient, data.len() as u64, &meta("ct.zip", None))
        .await;
    assert_eq!(
        app.tus_patch(&patient, &path, 0, data.clone())
            .await
            .status(),
        204
    );
    // Undo the recorded completion, as a crash before it would have left it.
    let db = app.db().await;
    for sql in [
        "UPDATE uploads SET state = 'active'",
        "UPDATE files SET state = 'uploading'",
    ] {
        sqlx::query(sql).execute(&db).await.unwrap();
    }
    db.close().await;
    app.clock
        .advance(app.config.uploads.upload_ttl_secs as i64 + 1);

    let head = app.tus(Method::HEAD, &path, &patient).send().await.unwrap();
    assert_eq!(head.status(), 200, "HEAD of a fully stored upload");
    assert_eq!(
        head.headers()["upload-offset"],
        data.len().to_string().as_str()
    );
    assert_eq!(app.uploads.sweep().await.unwrap(), 1);
    let m = app.patient_manifest(&patient).await;
    assert_eq!(m["files"][0]["state"], "complete", "{m}");
    assert_eq!(m["files"][0]["sha256"], sha256_hex(&data));
    let objects = app.config.fs_root().join("cases").join(&case_id);
    assert_eq!(std::fs::read_dir(&objects).unwrap().count(), 1);
    assert!(
        !app.audit()
            .await
            .iter()
            .any(|e| e["action"] == "upload.expire"),
        "a fully stored upload was expired"
    );
    app.stop().await;
}

#[tokio::test]
async fn upload_token_expiry_stops_uploads_but_not_the_manifest() {
    let app = spawn_app().await;
    let (_, patient) = app.create_case(None).await;
    let path = app.tus_create(&patient, 10, &meta("x", None)).await;
    app.clock
        .advance(app.config.uploads.token_ttl_secs as i64 + 1);
    let resp = app
        .tus(Method::POST, "/tus/", &patient)
        .header("Upload-Length", "1")
        .header("Upload-Metadata", meta("y", None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "upload_expired"
    );
    assert_eq!(
        app.tus_patch(&patient, &path, 0, vec![1; 10])
            .await
            .status(),
        403
    );
    assert_eq!(
        app.request(Method::GET, "/api/v1/patient/case", Some(&patient), None)
            .await
            .status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn quotas_are_enforced() {
    let app = spawn_app_with(|c| {
        c.uploads.max_case_files = 2;
        c.uploads.max_case_bytes = 1_000_000;
    })
    .await;
    let (_, patient) = app.create_case(None).await;
    app.tus_create(&patient, 600_000, &meta("a", None)).await;
    let resp = app
        .tus(Method::POST, "/tus/", &patient)
        .header("Upload-Length", "400001")
        .header("Upload-Metadata", meta("b", None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "quota_exceeded"
    );
    app.tus_create(&patient, 400_000, &meta("b", None)).await;
    let resp = app
        .tus(Method::POST, "/tus/", &patient)
        .header("Upload-Length", "0")
        .header("Upload-Metadata", meta("c", None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413, "file count quota");
    // Another case has its own quota.
    let (_, other) = app.create_case(None).await;
    app.tus_create(&other, 600_000, &meta("a", None)).await;
    app.stop().await;
}

/// A request body fed by the test, to hold a PATCH open.
fn channel_body() -> (
    tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    reqwest::Body,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (tx, reqwest::Body::wrap_stream(stream))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_are_refused_not_interleaved() {
    let app = spawn_app_with(|c| c.uploads.max_concurrent_uploads = 2).await;
    let (_, patient) = app.create_case(None).await;
    let data = pattern(400_000, 5);
    let path = app
        .tus_create(&patient, data.len() as u64, &meta("a", None))
        .await;
    let (tx, body) = channel_body();
    let slow = {
        let req = app
            .tus(Method::PATCH, &path, &patient)
            .header("Upload-Offset", "0")
            .header("Content-Type", "application/offset+octet-stream")
            .body(body);
        tokio::spawn(async move { req.send().await.unwrap() })
    };
    tx.send(Ok(data[..100_000].to_vec())).await.unwrap();
    // Let the first PATCH reach the server and take the lock (a probe
    // arriving first would take it itself), then probe with a wrong offset
    // (changes nothing): 423 while the first PATCH holds the lock.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut locked = false;
    for _ in 0..100 {
        let resp = app
            .tus_patch(&patient, &path, 999, data[..10].to_vec())
            .await;
        if resp.status() == 423 {
            locked = true;
            break;
        }
        assert_eq!(resp.status(), 409);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(locked, "a second PATCH on the same upload gets 423");
    // Case-wide cap: 2 running PATCHes; a third upload's PATCH waits its turn.
    let second = app.tus_create(&patient, 10, &meta("b", None)).await;
    let (tx2, body2) = channel_body();
    let slow2 = {
        let req = app
            .tus(Method::PATCH, &second, &patient)
            .header("Upload-Offset", "0")
            .header("Content-Type", "application/offset+octet-stream")
            .body(body2);
        tokio::spawn(async move { req.send().await.unwrap() })
    };
    tx2.send(Ok(vec![1u8; 5])).await.unwrap();
    let third = app.tus_create(&patient, 10, &meta("c", None)).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Two PATCHes are running in this case now: a third one waits its turn.
    let resp = app.tus_patch(&patient, &third, 0, vec![2u8; 10]).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "quota_exceeded"
    );
    tx2.send(Ok(vec![1u8; 5])).await.unwrap();
    drop(tx2);
    assert_eq!(slow2.await.unwrap().status(), 204);
    tx.send(Ok(data[100_000..].to_vec())).await.unwrap();
    drop(tx);
    assert_eq!(slow.await.unwrap().status(), 204);
    let m = app.patient_manifest(&patient).await;
    let a = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["filename"] == "a")
        .unwrap();
    assert_eq!(a["sha256"], sha256_hex(&data));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_that_breaks_off_keeps_what_arrived() {
    let app = spawn_app().await;
    let (_, patient) = app.create_case(None).await;
    let data = pattern(1_000_000, 8);
    let path = app
        .tus_create(&patient, data.len() as u64, &meta("a", None))
        .await;
    let (tx, body) = channel_body();
    let req = app
        .tus(Method::PATCH, &path, &patient)
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(body);
    let patch = tokio::spawn(async move { req.send().await });
    tx.send(Ok(data[..300_000].to_vec())).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tx.send(Err(std::io::Error::other("network gone")))
        .await
        .unwrap();
    drop(tx);
    let _ = patch.await;
    // The server kept what arrived; the client resumes from HEAD.
    let mut offset = 0;
    for _ in 0..50 {
        offset = app.tus_offset(&patient, &path).await;
        if offset > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(offset > 0 && offset <= 300_000, "offset {offset}");
    assert_eq!(
        app.tus_patch(&patient, &path, offset, data[offset as usize..].to_vec())
            .await
            .status(),
        204
    );
    assert_eq!(
        app.patient_manifest(&patient).await["files"][0]["sha256"],
        sha256_hex(&data)
    );
    app.stop().await;
}

#[tokio::test]
async fn restart_keeps_offsets_and_rehashes() {
    let mut app = spawn_app().await;
    let (_, patient) = app.create_case(None).await;
    let data = pattern(700_000, 11);
    let path = app
        .tus_create(&patient, data.len() as u64, &meta("scan.bin", None))
        .await;
    assert_eq!(
        app.tus_patch(&patient, &path, 0, data[..333_333].to_vec())
            .await
            .status(),
        204
    );
    app.restart().await;
    assert_eq!(app.tus_offset(&patient, &path).await, 333_333);
    assert_eq!(
        app.tus_patch(&patient, &path, 333_333, data[333_333..].to_vec())
            .await
            .status(),
        204
    );
    // The running hash was lost with the restart: completion re-hashed.
    assert_eq!(
        app.patient_manifest(&patient).await["files"][0]["sha256"],
        sha256_hex(&data)
    );
    app.stop().await;
}

#[tokio::test]
async fn dicom_files_are_indexed_and_impostors_flagged() {
    let app = spawn_app().await;
    let (case_id, patient) = app.create_case(None).await;
    use casegate::upload::dicom::testdata::ct_file;
    let study = "1.2.826.0.1.3680043.8.498.1";
    let a = ct_file(study, "1.2.826.0.1.3680043.8.498.1.1", "Doe^Jane", 200_000);
    let b = ct_file(study, "1.2.826.0.1.3680043.8.498.1.2", "Doe^Jane", 10_000);
    let c = ct_file(study, "1.2.826.0.1.3680043.8.498.1.1", "Doe^Jane", 1_000);
    app.upload(&patient, "IM0001", Some("imaging_dicom"), &a, 70_000)
        .await;
    app.upload(&patient, "IM0002", Some("imaging_dicom"), &b, 100_000)
        .await;
    app.upload(&patient, "IM0003", None, &c, 100_000).await;
    app.upload(
        &patient,
        "fake.dcm",
        Some("imaging_dicom"),
        b"not a dicom file at all",
        100,
    )
    .await;
    let m = app.patient_manifest(&patient).await;
    let files = m["files"].as_array().unwrap();
    let f = |n: &str| files.iter().find(|f| f["filename"] == n).unwrap().clone();
    assert_eq!(f("IM0001")["state"], "complete");
    assert_eq!(f("IM0001")["dicom"]["modality"], "CT");
    assert_eq!(f("IM0001")["dicom"]["study_date"], "20260115");
    assert_eq!(f("IM0001")["dicom"]["study_instance_uid"], study);
    assert_eq!(
        f("IM0001")["dicom"]["sop_class_uid"],
        "1.2.840.10008.5.1.4.1.1.2"
    );
    assert_eq!(f("fake.dcm")["state"], "flagged");
    assert_eq!(f("fake.dcm")["dicom"], Value::Null);
    let studies = m["studies"].as_array().unwrap();
    assert_eq!(studies.len(), 1);
    let series = studies[0]["series"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[0]["file_ids"].as_array().unwrap().len(), 2);
    // The coordinator sees the same grouping.
    let resp = app
        .request(
            Method::GET,
            &format!("/api/v1/cases/{case_id}"),
            Some(&app.coordinator),
            None,
        )
        .await;
    assert_eq!(resp.json::<Value>().await.unwrap()["studies"], m["studies"]);
    app.stop().await;
}

#[tokio::test]
async fn nothing_identifying_reaches_disk_in_plaintext() {
    let app = spawn_app().await;
    let (_, patient) = app.create_case(Some("REF-Ozymandias-4471")).await;
    let marker = b"PLAINTEXT-MARKER-6b1f0c9a";
    let mut file = pattern(400_000, 21);
    for at in [0usize, 65_530, 131_072, 399_000 - marker.len()] {
        file[at..at + marker.len()].copy_from_slice(marker);
    }
    let filename = "Biopsy-Ozymandias-report.pdf";
    app.upload(&patient, filename, Some("pathology_report"), &file, 90_000)
        .await;
    // An unfinished upload whose tail (not a whole chunk) holds the marker.
    let mut partial = pattern(100_000, 22);
    partial[70_000..70_000 + marker.len()].copy_from_slice(marker);
    let path = app
        .tus_create(
            &patient,
            1_000_000,
            &meta("Unfinished-Ozymandias.bin", None),
        )
        .await;
    assert_eq!(
        app.tus_patch(&patient, &path, 0, partial).await.status(),
        204
    );
    use casegate::upload::dicom::testdata::ct_file;
    let series = "1.2.826.0.1.3680043.8.498.777.1";
    let dicom = ct_file(
        "1.2.826.0.1.3680043.8.498.777",
        series,
        "Ozymandias^Percy",
        50_000,
    );
    app.upload(
        &patient,
        "IM-Ozymandias.dcm",
        Some("imaging_dicom"),
        &dicom,
        30_000,
    )
    .await;
    let m = app.patient_manifest(&patient).await;
    assert_eq!(m["files"].as_array().unwrap().len(), 3);

    let values = app.database_values().await;
    let dir = app.stop().await;
    let needles: Vec<&[u8]> = vec![
        marker,
        b"Ozymandias",
        b"DICM",
        series.as_bytes(),
        b"Percy",
        b"Biopsy",
    ];
    let mut scanned = 0;
    let mut saw_db = false;
    let mut stack = vec![dir.path().join("data")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            scanned += bytes.len();
            saw_db |= p.ends_with("casegate.db");
            for needle in &needles {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == *needle),
                    "{} holds {:?} in plaintext",
                    p.display(),
                    String::from_utf8_lossy(needle)
                );
            }
        }
    }
    // PostgreSQL's rows, read as values.
    for needle in &needles {
        assert!(
            !values.windows(needle.len()).any(|w| w == *needle),
            "the database holds {:?} in plaintext",
            String::from_utf8_lossy(needle)
        );
    }
    let saw_db = saw_db || values.len() > 1000;
    scanned += values.len();
    // The objects alone are over 540 kB; the database was read too.
    assert!(scanned > 540_000 && saw_db, "scanned {scanned} bytes");
}

#[tokio::test]
async fn tus_routes_deny_everyone_but_the_case_patient_and_audit_it() {
    // A coordinator may upload its own documents (naming a case), so it
    // meets 400 (no case_id) and 404 (not its upload) instead of 403.
    let app = spawn_app().await;
    let (_, patient) = app.create_case(None).await;
    let path = app.tus_create(&patient, 10, &meta("a", None)).await;
    let forged = crate::common::forged_operator_token();
    let forged_upload = format!("cgu_{}", "B".repeat(43));
    let mut request_ids = Vec::new();
    for (method, p) in [
        (Method::POST, "/tus/"),
        (Method::HEAD, path.as_str()),
        (Method::PATCH, path.as_str()),
        (Method::DELETE, path.as_str()),
    ] {
        for (token, want) in [
            (None, 401),
            (Some(forged.as_str()), 401),
            (Some(forged_upload.as_str()), 401),
            (
                Some(app.coordinator.as_str()),
                if method == Method::POST { 400 } else { 404 },
            ),
            (Some(app.compliance.as_str()), 403),
        ] {
            let mut req = app
                .client
                .request(method.clone(), app.url(p))
                .header("Tus-Resumable", "1.0.0")
                .header("Upload-Length", "1")
                .header("Upload-Offset", "0")
                .header("Upload-Metadata", meta("x", None))
                .header("Content-Type", "application/offset+octet-stream");
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), want, "{method} {p} {token:?}");
            assert_eq!(resp.headers()["tus-resumable"], "1.0.0");
            request_ids.push(resp.headers()["x-request-id"].to_str().unwrap().to_owned());
        }
    }
    let audit = app.audit().await;
    for id in request_ids {
        assert!(
            audit
                .iter()
                .any(|e| e["request_id"] == id.as_str() && e["outcome"] == "deny"),
            "no audit entry for {id}"
        );
    }
    // The upload is untouched.
    assert_eq!(app.tus_offset(&patient, &path).await, 0);
    app.stop().await;
}
