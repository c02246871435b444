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
