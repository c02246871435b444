//! Checkpoint copies in an S3 bucket (`audit.checkpoint_copy =
//! "s3://bucket/prefix"`) through the real server: each checkpoint lands as
//! `<prefix>/<size>.checkpoint` with exactly the signed note, an object
//! already there with other contents is never overwritten, and a copy that
//! fails is an alert while the checkpoint is still made and served. Against
//! s3s-fs in process, and Garage when `.ci/run` started one.

use casegate::config::StorageBackend;
use casegate::store::{ObjectStore, S3Store};
use reqwest::Method;
use serde_json::Value;

use crate::common::{TestApp, spawn_app_with};
use crate::support::{TestS3, garage, s3s_fs};

async fn app_copying_to(s3: &TestS3, copy: String, retention_days: Option<u32>) -> TestApp {
    let config = s3.config.clone();
    spawn_app_with(move |c| {
        c.storage.backend = StorageBackend::S3;
        c.storage.s3 = Some(config);
        c.audit.checkpoint_interval_secs = 3600;
        c.audit.checkpoint_copy = Some(copy);
        c.audit.checkpoint_copy_retention_days = retention_days;
    })
    .await
}

/// The checkpoint the route serves (made now), and its size.
async fn checkpoint(app: &TestApp) -> (String, u64) {
    let resp = app
        .request(
            Method::GET,
            "/api/v1/audit/checkpoint",
            Some(&app.compliance),
            None,
        )
        .await;
    assert_eq!(
        resp.status(),
        200,
        "the checkpoint is served whatever the copy did"
    );
    let note = resp.text().await.unwrap();
    let size = note.lines().nth(1).unwrap().parse().unwrap();
    (note, size)
}

async fn object(store: &ObjectStore, key: &str) -> Option<Vec<u8>> {
    let len = store.len(key).await.ok()?;
    Some(store.get_range(key, 0..len).await.unwrap())
}

async fn copy_alerts(app: &TestApp) -> Vec<String> {
    let alerts: Value = app.get_json("/api/v1/audit/alerts", &app.compliance).await;
    alerts["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "alert.checkpoint_copy")
        .map(|a| a["reason"].as_str().unwrap().to_owned())
        .collect()
}

async fn copies_land_and_are_never_overwritten(s3: &TestS3, retention_days: Option<u32>) {
    let prefix = format!("audit-copies/{}", uuid::Uuid::new_v4());
    let url = format!("s3://{}/{prefix}/", s3.config.bucket);
    let app = app_copying_to(s3, url, retention_days).await;
    let store = ObjectStore::S3(S3Store::open(&s3.config).unwrap());
    app.create_case(None).await;
    let (note, size) = checkpoint(&app).await;
    let key = |size: u64| format!("{prefix}/{size}.checkpoint");
    assert_eq!(
        object(&store, &key(size)).await.as_deref(),
        Some(note.as_bytes()),
        "the copy is the signed note"
    );
    assert!(copy_alerts(&app).await.is_empty());

    // Something else already under the next checkpoint's name: refused, kept.
    app.create_case(None).await;
    let head: i64 = sqlx::query_scalar("SELECT MAX(seq) FROM audit_log")
        .fetch_one(&app.db().await)
        .await
        .unwrap();
    let next = head as u64 + 1; // the checkpoint read's own entry comes first
    let planted = b"not the gateway's checkpoint\n";
    store.put(&key(next), planted).await.unwrap();
    let (_, size) = checkpoint(&app).await;
    assert_eq!(size, next);
    assert_eq!(
        object(&store, &key(next)).await.as_deref(),
        Some(&planted[..])
    );
    let alerts = copy_alerts(&app).await;
    assert!(
        alerts.len() == 1 && alerts[0].contains("already exists with other contents"),
        "{alerts:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn s3_copies_land_and_are_never_overwritten_on_s3s_fs() {
    let s3 = s3s_fs().await;
    copies_land_and_are_never_overwritten(&s3, None).await;
}

/// With retention the write carries Object Lock headers; the store must
/// accept them as well-formed (s3s-fs parses and ignores them).
#[tokio::test]
async fn s3_copies_with_retention_headers_are_accepted_on_s3s_fs() {
    let s3 = s3s_fs().await;
    copies_land_and_are_never_overwritten(&s3, Some(30)).await;
}

#[tokio::test]
async fn s3_copies_land_and_are_never_overwritten_on_garage() {
    let Some(s3) = garage() else { return };
    copies_land_and_are_never_overwritten(&s3, None).await;
}

/// The store goes away (connections refused): the copy fails, is an
/// alert, and the checkpoint is still signed, stored and served.
#[tokio::test]
async fn an_s3_copy_that_fails_is_an_alert_and_the_checkpoint_still_made() {
    let mut s3 = s3s_fs().await;
    let url = format!("s3://{}/copies", s3.config.bucket);
    let app = app_copying_to(&s3, url.clone(), None).await;
    app.create_case(None).await;
    s3.stop().await;
    let (_, size) = checkpoint(&app).await;
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_checkpoints WHERE tree_size = $1")
            .bind(size as i64)
            .fetch_one(&app.db().await)
            .await
            .unwrap();
    assert_eq!(stored, 1);
    let alerts = copy_alerts(&app).await;
    // (The background task's first checkpoint may have failed too.)
    assert!(
        alerts.iter().any(
            |a| a.contains(&format!("checkpoint of {size} entries not copied"))
                && a.contains(&format!("{url}/{size}.checkpoint"))
        ),
        "{alerts:?}"
    );
    app.stop().await;
}

/// The copy bucket has keys of its own (`audit.checkpoint_copy_s3`) while
/// the objects stay on the `fs` store.
#[tokio::test]
async fn s3_copies_with_their_own_keys_beside_an_fs_store() {
    let s3 = s3s_fs().await;
    let connection = casegate::config::S3Connection::from(&s3.config);
    let url = format!("s3://{}/own-keys", s3.config.bucket);
    let app = spawn_app_with(move |c| {
        c.audit.checkpoint_interval_secs = 3600;
        c.audit.checkpoint_copy = Some(url);
        c.audit.checkpoint_copy_s3 = Some(connection);
    })
    .await;
    assert!(app.config.storage.s3.is_none());
    app.create_case(None).await;
    let (note, size) = checkpoint(&app).await;
    let store = ObjectStore::S3(S3Store::open(&s3.config).unwrap());
    assert_eq!(
        object(&store, &format!("own-keys/{size}.checkpoint"))
            .await
            .as_deref(),
        Some(note.as_bytes())
    );
    assert!(copy_alerts(&app).await.is_empty());
    app.stop().await;
}
