//! The S3 store goes away and comes back, in the middle of an upload and of
//! a download: s3s-fs in process is stopped (listener closed, every
//! connection cut) and started again on the same port and directory;
//! Garage, when CI started one, is cut off and reconnected through a
//! forwarder of the test's own (stopping the shared Garage would break the
//! other tests running at once).
//!
//! An outage shorter than the gateway's S3 retries is ridden out. During
//! a longer one a PATCH answers 503 `storage_unavailable` (or its
//! connection is cut), the offset stays at the last durable point,
//! `/readyz` is 503; a running download is cut. Once the store is back the
//! upload continues from HEAD's offset to the original SHA-256, and a Range
//! continuation completes the download byte for byte.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestApp, spawn_app_with};
use crate::grants::{Centre, grant, register_centre};
use crate::support::{TestS3, garage_behind_a_switch, s3s_fs};
use crate::tus::{meta, pattern, sha256_hex};

const MIB: usize = 1 << 20;
/// Durable points inside a PATCH on S3 (staging object rewrites).
const SYNC_EVERY: u64 = 1 << 20;

async fn app_on(s3: &TestS3) -> TestApp {
    let config = s3.config.clone();
    spawn_app_with(move |c| {
        c.storage.backend = casegate::config::StorageBackend::S3;
        c.storage.s3 = Some(config);
        c.uploads.sync_every_bytes = SYNC_EVERY;
    })
    .await
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let resp = app.request(Method::GET, "/readyz", None, None).await;
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Waits (bounded) until `/readyz` answers `status`.
async fn ready_becomes(app: &TestApp, status: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (got, body) = readyz(app).await;
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {got} ({body}), expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A PATCH answer during the outage: 503 `storage_unavailable`, or a cut
/// connection. Never a success.
async fn refused(resp: Result<reqwest::Response, reqwest::Error>, what: &str) {
    let Ok(resp) = resp else { return };
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 503, "{what}: {body}");
    assert!(body.contains("storage_unavailable"), "{what}: {body}");
}

async fn outage_mid_upload(s3: &mut TestS3) {
    let app = app_on(s3).await;
    let (_, patient) = app.create_case(None).await;
    let data = pattern(16 * MIB + 13, 5);
    let path = app
        .tus_create(&patient, data.len() as u64, &meta("mri.zip", None))
        .await;

    // Acknowledged: a full part (8 MiB) and a staging object after it.
    let acked = (9 * MIB + 7) as u64;
    let resp = app
        .tus_patch(&patient, &path, 0, data[..acked as usize].to_vec())
        .await;
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["upload-offset"], acked.to_string().as_str());

    // A PATCH streaming when the store goes away: 3 MiB arrive (durable
    // points every MiB), the store stops, 2 MiB more arrive, the body ends.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let inflight = tokio::spawn(
        app.tus(Method::PATCH, &path, &patient)
            .header("Upload-Offset", acked.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(body)
            .send(),
    );
    let before_stop = acked as usize + 3 * MIB;
    for piece in data[acked as usize..before_stop].chunks(256 << 10) {
        tx.send(Ok(piece.to_vec())).await.unwrap();
    }
    // Let the gateway take the durable points of what it has.
    tokio::time::sleep(Duration::from_secs(2)).await;
    s3.stop().await;
    for piece in data[before_stop..before_stop + 2 * MIB].chunks(256 << 10) {
        if tx.send(Ok(piece.to_vec())).await.is_err() {
            break; // the gateway already refused the request
        }
    }
    drop(tx);
    refused(inflight.await.unwrap(), "the PATCH the outage hit").await;

    // During the outage: the offset is a durable point at or after what
    // was acknowledged, and no byte sent after the store went away.
    let held = app.tus_offset(&patient, &path).await;
    assert!(
        held >= acked && held <= before_stop as u64,
        "acknowledged {acked}, sent {before_stop} before the outage, HEAD says {held}"
    );
    let resp = app
        .tus(Method::PATCH, &path, &patient)
        .header("Upload-Offset", held.to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .body(data[held as usize..held as usize + MIB].to_vec())
        .send()
        .await;
    refused(resp, "a PATCH during the outage").await;
    assert_eq!(
        app.tus_offset(&patient, &path).await,
        held,
        "a refused PATCH moved the offset"
    );
    let body = ready_becomes(&app, 503).await;
    assert_eq!(body["checks"]["object_store"], "unavailable", "{body}");

    // The store is back: the upload continues from HEAD's offset.
    s3.start().await;
    ready_becomes(&app, 200).await;
    let mut offset = app.tus_offset(&patient, &path).await;
    assert_eq!(offset, held, "the offset changed while the store was away");
    for piece in data[offset as usize..].chunks(5 * MIB) {
        let resp = app.tus_patch(&patient, &path, offset, piece.to_vec()).await;
        assert_eq!(resp.status(), 204, "{:?}", resp.text().await);
        offset += piece.len() as u64;
    }
    let m = app.patient_manifest(&patient).await;
    assert_eq!(m["files"][0]["state"], "complete", "{m}");
    assert_eq!(m["files"][0]["sha256"], sha256_hex(&data));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_mid_upload_s3s_fs() {
    let mut s3 = s3s_fs().await;
    outage_mid_upload(&mut s3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_mid_upload_garage() {
    let Some(mut s3) = garage_behind_a_switch().await else {
        return;
    };
    outage_mid_upload(&mut s3).await;
}

/// An outage shorter than the gateway's S3 retries (4 tries, 0.2 s, 0.6 s
/// and 1.8 s apart) is ridden out: the PATCH that meets it succeeds.
async fn short_outage(s3: &mut TestS3) {
    let app = app_on(s3).await;
    let (_, patient) = app.create_case(None).await;
    let data = pattern(3 * MIB + 3, 4);
    let path = app
        .tus_create(&patient, data.len() as u64, &meta("labs.pdf", None))
        .await;
    // Staging holds these bytes: the next PATCH reads them back at once.
    let resp = app
        .tus_patch(&patient, &path, 0, data[..MIB].to_vec())
        .await;
    assert_eq!(resp.status(), 204);
    s3.stop().await;
    let patch = app.tus_patch(&patient, &path, MIB as u64, data[MIB..].to_vec());
    let restart = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        s3.start().await;
    };
    let (resp, ()) = tokio::join!(patch, restart);
    assert_eq!(resp.status(), 204, "{:?}", resp.text().await);
    let m = app.patient_manifest(&patient).await;
    assert_eq!(m["files"][0]["sha256"], sha256_hex(&data));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_outage_is_ridden_out_s3s_fs() {
    let mut s3 = s3s_fs().await;
    short_outage(&mut s3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_outage_is_ridden_out_garage() {
    let Some(mut s3) = garage_behind_a_switch().await else {
        return;
    };
    short_outage(&mut s3).await;
}

/// A completed file, a centre and a grant of one download of it.
async fn granted_file(app: &TestApp, data: &[u8]) -> (Centre, String, String) {
    let (case, patient) = app.create_case(None).await;
    app.upload(&patient, "ct.bin", None, data, 8 * MIB).await;
    let centre = register_centre(app, "Centre S3").await;
    let (_, token) = grant(
        app,
        &case,
        json!({ "centre_id": centre.id, "expires_in_secs": 3600, "max_downloads": 1 }),
    )
    .await;
    let (_, file_id) = centre.grant_listing(&token).await;
    (centre, token, format!("/api/v1/grant/files/{file_id}"))
}

async fn outage_mid_download(s3: &mut TestS3) {
    let app = app_on(s3).await;
    let data = pattern(12 * MIB + 5, 6);
    let (centre, token, path) = granted_file(&app, &data).await;

    let resp = centre.get(&path, &token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut got = Vec::new();
    while got.len() < 2 * MIB {
        got.extend_from_slice(&body.next().await.expect("body ended early").unwrap());
    }
    s3.stop().await;
    // What was read ahead still arrives; then the download is cut.
    let cut = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => got.extend_from_slice(&bytes),
                Err(_) => return true,
            }
        }
        false
    })
    .await
    .expect("the download neither ended nor was cut");
    assert!(cut, "the body ended cleanly after {} bytes", got.len());
    assert!(got.len() < data.len(), "the whole file arrived");
    assert_eq!(got[..], data[..got.len()], "bytes before the cut");
    let body = ready_becomes(&app, 503).await;
    assert_eq!(body["checks"]["object_store"], "unavailable", "{body}");

    // The store is back: a Range continuation (not a new download: the
    // grant allows one) completes it.
    s3.start().await;
    ready_becomes(&app, 200).await;
    let rest = centre
        .continue_from(&path, &token, got.len(), Duration::from_secs(20))
        .await;
    got.extend(rest);
    assert_eq!(got.len(), data.len());
    assert_eq!(sha256_hex(&got), sha256_hex(&data));

    // The cut is on record.
    let audit = app.audit().await;
    let recorded = audit.iter().any(|e| {
        e["action"] == "download.plaintext"
            && e["outcome"] == "deny"
            && e["reason"].as_str().unwrap_or("").starts_with("cut after")
    });
    assert!(recorded, "no entry for the cut download: {audit:#?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_mid_download_s3s_fs() {
    let mut s3 = s3s_fs().await;
    outage_mid_download(&mut s3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_mid_download_garage() {
    let Some(mut s3) = garage_behind_a_switch().await else {
        return;
    };
    outage_mid_download(&mut s3).await;
}

/// A download asked for while the store is away is refused with 503 and
/// costs nothing: once the store is back, the grant's one download works.
async fn outage_before_a_download(s3: &mut TestS3) {
    let app = app_on(s3).await;
    let data = pattern(3 * MIB + 1, 7);
    let (centre, token, path) = granted_file(&app, &data).await;

    s3.stop().await;
    ready_becomes(&app, 503).await;
    let resp = centre.get(&path, &token).send().await;
    let outcome = match resp {
        Err(e) => format!("connection cut: {e}"),
        Ok(resp) => {
            let status = resp.status();
            match resp.bytes().await {
                Ok(b) => format!("{status}: {}", String::from_utf8_lossy(&b)),
                Err(e) => format!("{status} and a body cut: {e}"),
            }
        }
    };
    assert!(
        outcome.starts_with("503") && outcome.contains("storage_unavailable"),
        "a download while the store is away: {outcome}"
    );

    s3.start().await;
    ready_becomes(&app, 200).await;
    let resp = centre.get(&path, &token).send().await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the grant's one download after the outage: {:?}",
        resp.text().await
    );
    assert_eq!(sha256_hex(&resp.bytes().await.unwrap()), sha256_hex(&data));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_before_a_download_s3s_fs() {
    let mut s3 = s3s_fs().await;
    outage_before_a_download(&mut s3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_before_a_download_garage() {
    let Some(mut s3) = garage_behind_a_switch().await else {
        return;
    };
    outage_before_a_download(&mut s3).await;
}
