//! Races a stranger can start with parallel requests: quota checks that
//! must hold however many creates arrive at once.

use reqwest::Method;

use crate::common::spawn_app_with;
use crate::tus::meta;

#[tokio::test]
async fn parallel_creates_never_exceed_the_file_quota() {
    let app = spawn_app_with(|c| {
        c.uploads.max_case_files = 5;
        c.uploads.max_case_bytes = u64::MAX / 2;
    })
    .await;
    let (_, patient) = app.create_case(None).await;
    let creates = (0..20).map(|i| {
        app.tus(Method::POST, "/tus/", &patient)
            .header("Upload-Length", "10")
            .header("Upload-Metadata", meta(&format!("f{i}"), None))
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(creates)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    let created = statuses.iter().filter(|s| **s == 201).count();
    assert_eq!(created, 5, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 413),
        "{statuses:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn parallel_creates_never_exceed_the_byte_quota() {
    let app = spawn_app_with(|c| {
        c.uploads.max_case_files = 1000;
        c.uploads.max_case_bytes = 1 << 20;
    })
    .await;
    let (case_id, patient) = app.create_case(None).await;
    let creates = (0..10).map(|i| {
        app.tus(Method::POST, "/tus/", &patient)
            .header("Upload-Length", (512 * 1024).to_string())
            .header("Upload-Metadata", meta(&format!("f{i}"), None))
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(creates)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        2,
        "{statuses:?}"
    );
    let manifest = app
        .get_json(&format!("/api/v1/cases/{case_id}"), &app.coordinator)
        .await;
    let declared: u64 = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["size"].as_u64().unwrap())
        .sum();
    assert!(declared <= 1 << 20, "declared {declared}");
    app.stop().await;
}

/// An `Upload-Checksum` (or `Upload-Metadata`) that is not ASCII is a bad
/// request, never the same as no header: the bytes are not stored
/// unverified.
#[tokio::test]
async fn an_unreadable_checksum_header_is_refused_not_ignored() {
    let app = crate::common::spawn_app().await;
    let (_, patient) = app.create_case(None).await;
    let path = app.tus_create(&patient, 10, &meta("a.txt", None)).await;
    let bad = reqwest::header::HeaderValue::from_bytes(b"sha256 \xff\xfe").unwrap();
    let resp = app
        .tus(Method::PATCH, &path, &patient)
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Checksum", bad.clone())
        .body(b"0123456789".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(app.tus_offset(&patient, &path).await, 0);
    let resp = app
        .tus(Method::POST, "/tus/", &patient)
        .header("Upload-Length", "10")
        .header("Upload-Metadata", bad)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    app.stop().await;
}

/// Everything the gateway writes under its data directory is owner-only:
/// the database and its WAL, objects and their directories.
#[tokio::test]
async fn the_data_directory_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let app = crate::common::spawn_app().await;
    let (_, patient) = app.create_case(None).await;
    app.upload(
        &patient,
        "scan.pdf",
        None,
        &crate::tus::pattern(200_000, 5),
        100_000,
    )
    .await;
    let mut stack = vec![app.data_dir()];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() {
                assert_eq!(mode, 0o700, "{}", path.display());
                stack.push(path);
            } else {
                assert_eq!(mode, 0o600, "{}", path.display());
                seen += 1;
            }
        }
    }
    assert!(seen >= 3, "database, WAL and an object at least");
    app.stop().await;
}
