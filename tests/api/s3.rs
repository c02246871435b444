//! Uploads on the S3 backend through the real server: multipart parts,
//! staging objects for durable bytes short of a part, completion,
//! termination (multipart aborted), restart. Against s3s-fs in process,
//! and Garage when `.ci/run` started one.

use casegate::config::StorageBackend;
use casegate::store::{ObjectStore, S3Store, StoreError, object_key};
use reqwest::Method;

use crate::common::{TestApp, spawn_app_with};
use crate::support::{TestS3, garage, s3s_fs};
use crate::tus::{meta, pattern, sha256_hex};

async fn app_on(s3: &TestS3) -> TestApp {
    let config = s3.config.clone();
    spawn_app_with(move |c| {
        c.storage.backend = StorageBackend::S3;
        c.storage.s3 = Some(config);
    })
    .await
}

async fn upload_complete_terminate_restart(s3: &TestS3) {
    let mut app = app_on(s3).await;
    let store = ObjectStore::S3(S3Store::open(&s3.config).unwrap());
    let (case_id, patient) = app.create_case(None).await;

    // 20 MiB in 3 MiB PATCHes: two full parts, staging in between.
    let data = pattern(20 * 1024 * 1024 + 5, 31);
    let path = app
        .upload(
            &patient,
            "ct-series.zip",
            Some("imaging_dicom"),
            &data,
            3 * 1024 * 1024,
        )
        .await;
    let m = app.patient_manifest(&patient).await;
    let f = &m["files"][0];
    assert_eq!(f["sha256"], sha256_hex(&data));
    assert_eq!(f["state"], "flagged", "claims DICOM, is not");
    let file_id = casegate::ids::FileId::parse(f["file_id"].as_str().unwrap()).unwrap();
    let case = casegate::ids::CaseId::parse(&case_id).unwrap();
    let layout = casegate::crypto::format::Layout::new(65536);
    assert_eq!(
        store.len(&object_key(&case, &file_id)).await.unwrap(),
        layout.object_len(data.len() as u64)
    );
    assert_eq!(app.tus_offset(&patient, &path).await, data.len() as u64);

    // An unfinished upload survives a restart, then is terminated: its
    // multipart upload is aborted and its staging objects removed.
    let big = pattern(12 * 1024 * 1024, 32);
    let unfinished = app
        .tus_create(&patient, big.len() as u64, &meta("mri.zip", None))
        .await;
    assert_eq!(
        app.tus_patch(
            &patient,
            &unfinished,
            0,
            big[..9 * 1024 * 1024 + 7].to_vec()
        )
        .await
        .status(),
        204
    );
    app.restart().await;
    assert_eq!(
        app.tus_offset(&patient, &unfinished).await,
        9 * 1024 * 1024 + 7
    );
    let m = app.patient_manifest(&patient).await;
    let unfinished_id = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["filename"] == "mri.zip")
        .unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app
        .tus(Method::DELETE, &unfinished, &patient)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let unfinished_key = object_key(
        &case,
        &casegate::ids::FileId::parse(&unfinished_id).unwrap(),
    );
    assert!(matches!(
        store.len(&unfinished_key).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .len(&format!("staging/{unfinished_key}/0000000001"))
            .await,
        Err(StoreError::NotFound)
    ));

    // Deleting the case removes the completed object.
    let resp = app
        .request(
            Method::DELETE,
            &format!("/api/v1/cases/{case_id}"),
            Some(&app.coordinator),
            None,
        )
        .await;
    assert_eq!(resp.status(), 204);
    assert!(matches!(
        store.len(&object_key(&case, &file_id)).await,
        Err(StoreError::NotFound)
    ));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_on_s3s_fs() {
    let s3 = s3s_fs().await;
    upload_complete_terminate_restart(&s3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_on_garage() {
    let Some(s3) = garage() else { return };
    upload_complete_terminate_restart(&s3).await;
}

/// A PATCH whose connection drops mid-body, then at once the client's HEAD
/// and a PATCH from the offset HEAD gave, at many drop points: the offset
/// HEAD answers is always the one the next PATCH is accepted at (never
/// 409), and the stored file is the original.
async fn head_after_dropped_patches(app: &TestApp) {
    let (_, patient) = app.create_case(None).await;
    let data = pattern(20 * 1024 * 1024 + 11, 77);
    let path = app
        .tus_create(&patient, data.len() as u64, &meta("pet.zip", None))
        .await;
    let mut offset = 0usize;
    for (i, cut) in [1_572_864usize, 3 << 20, 700_001, 5 << 20, 2_500_000]
        .into_iter()
        .enumerate()
    {
        let piece = bytes::Bytes::copy_from_slice(&data[offset..offset + cut]);
        let parts: Vec<Result<bytes::Bytes, std::io::Error>> =
            vec![Ok(piece), Err(std::io::Error::other("connection dropped"))];
        let dropped = app
            .tus(Method::PATCH, &path, &patient)
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                parts,
            )))
            .send()
            .await;
        assert!(dropped.is_err(), "drop {i}: the PATCH was not cut");
        // A client's resumption: HEAD, then PATCH from its offset. The
        // offset must never be refused with 409. A 423 can still happen
        // when the server had not yet started the dropped PATCH's handler
        // when HEAD came (nothing was running to wait for); a client then
        // waits and asks HEAD again, as tus clients do on 423.
        let mut tries = 0;
        let next = loop {
            let at = app.tus_offset(&patient, &path).await as usize;
            assert!(
                at >= offset && at <= offset + cut,
                "drop {i}: HEAD said {at}"
            );
            let next = (at + 1_000_000).min(data.len());
            let resp = app
                .tus_patch(&patient, &path, at as u64, data[at..next].to_vec())
                .await;
            match resp.status().as_u16() {
                204 => break next,
                423 if tries < 20 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                s => panic!("drop {i}: PATCH at HEAD's offset {at}: {s}"),
            }
        };
        offset = next;
    }
    let resp = app
        .tus_patch(&patient, &path, offset as u64, data[offset..].to_vec())
        .await;
    assert_eq!(resp.status(), 204);
    let m = app.patient_manifest(&patient).await;
    assert_eq!(m["files"][0]["sha256"], sha256_hex(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_after_a_dropped_patch_on_fs() {
    let app = spawn_app_with(|c| c.uploads.sync_every_bytes = 256 * 1024).await;
    head_after_dropped_patches(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_after_a_dropped_patch_on_s3s_fs() {
    let s3 = s3s_fs().await;
    let config = s3.config.clone();
    let app = spawn_app_with(move |c| {
        c.storage.backend = StorageBackend::S3;
        c.storage.s3 = Some(config);
        c.uploads.sync_every_bytes = 256 * 1024;
    })
    .await;
    head_after_dropped_patches(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_after_a_dropped_patch_on_garage() {
    let Some(s3) = garage() else { return };
    let config = s3.config.clone();
    let app = spawn_app_with(move |c| {
        c.storage.backend = StorageBackend::S3;
        c.storage.s3 = Some(config);
        c.uploads.sync_every_bytes = 256 * 1024;
    })
    .await;
    head_after_dropped_patches(&app).await;
    app.stop().await;
}

/// A case deleted while a PATCH is still streaming into it: the PATCH's
/// next durable point is refused (the upload ended), and what it stored
/// after the case's parts were removed is removed too — no staging object
/// of the case is left in the bucket.
async fn case_deleted_mid_patch(s3: &TestS3) {
    let config = s3.config.clone();
    let app = spawn_app_with(move |c| {
        c.storage.backend = StorageBackend::S3;
        c.storage.s3 = Some(config);
        c.uploads.sync_every_bytes = 1 << 20;
    })
    .await;
    let store = ObjectStore::S3(S3Store::open(&s3.config).unwrap());
    let (case_id, patient) = app.create_case(None).await;
    let data = pattern(30 << 20, 5);
    let path = app
        .tus_create(&patient, data.len() as u64, &meta("mri.zip", None))
        .await;
    let m = app.patient_manifest(&patient).await;
    let file_id: casegate::ids::FileId =
        casegate::ids::FileId::parse(m["files"][0]["file_id"].as_str().unwrap()).unwrap();

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let inflight = tokio::spawn(
        app.tus(Method::PATCH, &path, &patient)
            .header("Upload-Offset", "0")
            .header("Content-Type", "application/offset+octet-stream")
            .body(body)
            .send(),
    );
    let mut sent = 0;
    for piece in data[..3 << 20].chunks(256 << 10) {
        tx.send(Ok(piece.to_vec())).await.unwrap();
        sent += piece.len();
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let resp = app
        .request(
            Method::DELETE,
            &format!("/api/v1/cases/{case_id}"),
            Some(&app.coordinator),
            None,
        )
        .await;
    assert_eq!(resp.status(), 204);
    for piece in data[sent..sent + (4 << 20)].chunks(256 << 10) {
        if tx.send(Ok(piece.to_vec())).await.is_err() {
            break;
        }
    }
    drop(tx);
    if let Ok(resp) = inflight.await.unwrap() {
        assert!(
            !resp.status().is_success(),
            "a PATCH into a deleted case succeeded"
        );
    }
    let case_id = casegate::ids::CaseId::parse(&case_id).unwrap();
    let key = object_key(&case_id, &file_id);
    for generation in 1..=16u64 {
        let staging = format!("staging/{key}/{generation:010}");
        assert!(
            matches!(store.len(&staging).await, Err(StoreError::NotFound)),
            "{staging} left behind"
        );
    }
    assert!(matches!(store.len(&key).await, Err(StoreError::NotFound)));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_deleted_mid_patch_leaves_nothing_on_s3s_fs() {
    let s3 = s3s_fs().await;
    case_deleted_mid_patch(&s3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_deleted_mid_patch_leaves_nothing_on_garage() {
    let Some(s3) = garage() else {
        return;
    };
    case_deleted_mid_patch(&s3).await;
}
