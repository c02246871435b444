//! Interrupted downloads under a tight `max_downloads`: a Range
//! continuation of a started download is not a new use, whichever
//! representation, and only bytes actually sent are charged — after the
//! client went away and after a kill -9 of the gateway. An abandoned
//! download still gets its end entry in the audit log.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::spawn_app;
use crate::grants::{grant, register_centre, register_centre_at};
use crate::startup::{start_with, value};
use crate::tus::{pattern, sha256_hex};

const SIZE: usize = 8 << 20;

/// Reads at least `want` bytes of the body, then drops the response.
async fn read_then_abandon(resp: reqwest::Response, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut body = resp.bytes_stream();
    while got.len() < want {
        let chunk = body.next().await.expect("body ended early").unwrap();
        got.extend_from_slice(&chunk);
    }
    got
}

#[tokio::test]
async fn an_abandoned_download_continues_under_max_downloads_1() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let data = pattern(SIZE, 7);
    app.upload(&patient, "ct.bin", None, &data, 4 << 20).await;
    let centre = register_centre(&app, "Centre A").await;
    let (_, token) = grant(
        &app,
        &case,
        json!({ "centre_id": centre.id, "expires_in_secs": 3600, "max_downloads": 1 }),
    )
    .await;
    let (_, file_id) = centre.grant_listing(&token).await;
    let path = format!("/api/v1/grant/files/{file_id}");

    let resp = centre.get(&path, &token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = read_then_abandon(resp, 1 << 20).await;
    got.extend(
        centre
            .continue_from(&path, &token, got.len(), Duration::from_secs(10))
            .await,
    );
    assert_eq!(sha256_hex(&got), sha256_hex(&data));

    // The one use is spent: a new download from byte 0 is refused.
    let resp = centre.get(&path, &token).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "grant_exhausted"
    );

    // The abandoned download has its end entry.
    let audit = app.audit().await;
    let cut = audit.iter().any(|e| {
        e["action"] == "download.plaintext"
            && e["outcome"] == "deny"
            && e["reason"]
                .as_str()
                .unwrap_or("")
                .contains("client went away")
    });
    assert!(cut, "no entry for the abandoned download: {audit:#?}");
    app.stop().await;
}

/// A download that sent nothing (here its first window does not decrypt;
/// the same holds for a store outage, or a gateway killed before its first
/// byte went out) gives its use back: under `max_downloads = 1` the centre
/// can still fetch the file once it is readable again.
#[tokio::test]
async fn a_download_that_sent_nothing_does_not_use_up_the_grant() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let data = pattern(SIZE, 9);
    app.upload(&patient, "ct.bin", None, &data, 4 << 20).await;
    let centre = register_centre(&app, "Centre N").await;
    let (_, token) = grant(
        &app,
        &case,
        json!({ "centre_id": centre.id, "expires_in_secs": 3600, "max_downloads": 1 }),
    )
    .await;
    let (_, file_id) = centre.grant_listing(&token).await;
    let path = format!("/api/v1/grant/files/{file_id}");
    let object = app
        .config
        .fs_root()
        .join("cases")
        .join(&case)
        .join(&file_id);
    let stored = std::fs::read(&object).unwrap();
    let mut broken = stored.clone();
    // Inside the first chunk's ciphertext, past the header.
    broken[4096] ^= 0x55;
    std::fs::write(&object, &broken).unwrap();

    let resp = centre.get(&path, &token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.bytes().await.is_err(),
        "a body that does not decrypt is cut"
    );
    // The cut download settles after its body is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.audit().await.iter().any(|e| {
        e["action"] == "download.plaintext"
            && e["reason"]
                .as_str()
                .unwrap_or("")
                .contains("cut after 0 bytes")
    }) {
        assert!(Instant::now() < deadline, "no entry for the cut download");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    std::fs::write(&object, &stored).unwrap();
    let resp = centre.get(&path, &token).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the use was given back");
    assert_eq!(sha256_hex(&resp.bytes().await.unwrap()), sha256_hex(&data));
    // That one delivered the file: the use is spent now.
    let resp = centre.get(&path, &token).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn sealed_then_plaintext_fit_max_downloads_2() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let data = pattern(300_000, 9);
    app.upload(&patient, "report.pdf", None, &data, 300_000)
        .await;
    let centre = register_centre(&app, "Centre B").await;
    let (_, token) = grant(
        &app,
        &case,
        json!({ "centre_id": centre.id, "expires_in_secs": 3600, "max_downloads": 2 }),
    )
    .await;
    let (_, file_id) = centre.grant_listing(&token).await;
    let sealed = format!("/api/v1/grant/files/{file_id}/sealed");
    let plain = format!("/api/v1/grant/files/{file_id}");
    for path in [&sealed, &plain] {
        let resp = centre.get(path, &token).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        resp.bytes().await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = centre.get(&plain, &token).send().await.unwrap();
        assert_eq!(resp.status(), 403, "a third download was served");
        if resp.json::<Value>().await.unwrap()["code"] == "grant_exhausted" {
            break;
        }
        assert!(Instant::now() < deadline);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_cut_by_kill_9_continues_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (child, lines) = start_with(dir.path(), &[]);
    let main = format!(
        "https://{}",
        value(&lines, "listening on https://").unwrap()
    );
    let centre_base = format!(
        "https://{}",
        value(&lines, "centre listener on https://").unwrap()
    );
    let coordinator = value(&lines, "coordinator token: ").unwrap().to_owned();
    let ca = std::fs::read(dir.path().join("certs/dev-ca.pem")).unwrap();
    let client = crate::common::client_trusting(&ca);

    let case: Value = client
        .post(format!("{main}/api/v1/cases"))
        .bearer_auth(&coordinator)
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
    let data = pattern(SIZE, 11);
    let created = client
        .request(Method::POST, format!("{main}/tus/"))
        .bearer_auth(&patient)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", SIZE.to_string())
        .header("Upload-Metadata", crate::tus::meta("mri.bin", None))
        .header("Content-Type", "application/offset+octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(
        created.headers()["upload-offset"],
        SIZE.to_string().as_str()
    );

    let mut centre =
        register_centre_at(&client, &main, &coordinator, &ca, &centre_base, "Centre C").await;
    let grant: Value = client
        .post(format!("{main}/api/v1/cases/{case_id}/grants"))
        .bearer_auth(&coordinator)
        .json(&json!({ "centre_id": centre.id, "expires_in_secs": 3600, "max_downloads": 1 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = grant["grant_token"].as_str().unwrap().to_owned();
    let (info, file_id) = centre.grant_listing(&token).await;
    let path = format!("/api/v1/grant/files/{file_id}/sealed");
    let sealed_size = info["files"][0]["sealed_size"].as_u64().unwrap() as usize;

    let resp = centre.get(&path, &token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut got = Vec::new();
    while got.len() < 1 << 20 {
        got.extend_from_slice(&body.next().await.unwrap().unwrap());
    }
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    let mut child = child;
    child.wait().unwrap();
    drop(body);

    let (mut child, lines) = start_with(dir.path(), &[]);
    centre.base = format!(
        "https://{}",
        value(&lines, "centre listener on https://").unwrap()
    );
    let rest = centre
        .continue_from(&path, &token, got.len(), Duration::from_secs(10))
        .await;
    got.extend(rest);
    assert_eq!(got.len(), sealed_size);
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn a_range_to_u64_max_is_the_whole_file() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let data = pattern(100_000, 3);
    app.upload(&patient, "a.pdf", None, &data, 100_000).await;
    let centre = register_centre(&app, "Centre D").await;
    let (_, token) = grant(
        &app,
        &case,
        json!({ "centre_id": centre.id, "expires_in_secs": 3600, "max_downloads": 3 }),
    )
    .await;
    let (_, file_id) = centre.grant_listing(&token).await;
    let resp = centre
        .get(&format!("/api/v1/grant/files/{file_id}"), &token)
        .header("Range", "bytes=0-18446744073709551615")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.headers()["content-range"], "bytes 0-99999/100000");
    assert_eq!(resp.bytes().await.unwrap().len(), 100_000);
    app.stop().await;
}
