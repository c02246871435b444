//! Gateways sharing one PostgreSQL database: an upload another replica is
//! writing (it holds the upload's lease) is answered 423 here, and can be
//! resumed here once that replica released it or its lease expired (the
//! replica died). On SQLite there is one gateway and no lease; the test
//! runs in the PostgreSQL pass of the suite.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::Method;

use crate::common::{TestApp, spawn_app};
use crate::tus::{meta, pattern};

#[tokio::test]
async fn an_upload_another_replica_writes_is_locked_until_its_lease_ends() {
    let app = spawn_app().await;
    if !app.on_postgres() {
        return;
    }
    let (_case, patient) = app.create_case(None).await;
    let data = pattern(200_000, 5);
    let path = app
        .tus_create(&patient, 200_000, &meta("scan.pdf", None))
        .await;
    let upload_id = path.rsplit('/').next().unwrap().to_owned();
    let db = app.db().await;
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    sqlx::query("INSERT INTO leases (name, holder, expires_at) VALUES ($1, 'replica-b', $2)")
        .bind(format!("upload:{upload_id}"))
        .bind(now_ms + 60_000)
        .execute(&db)
        .await
        .unwrap();
    let resp = app
        .tus_patch(&patient, &path, 0, data[..100_000].to_vec())
        .await;
    assert_eq!(resp.status(), 423, "another replica holds the upload");

    // That replica died: its lease ran out without renewal.
    sqlx::query("UPDATE leases SET expires_at = $1 WHERE name = $2")
        .bind(now_ms - 1)
        .bind(format!("upload:{upload_id}"))
        .execute(&db)
        .await
        .unwrap();
    let resp = app
        .tus_patch(&patient, &path, 0, data[..100_000].to_vec())
        .await;
    assert_eq!(resp.status(), 204, "{:?}", resp.text().await);
    let resp = app
        .tus_patch(&patient, &path, 100_000, data[100_000..].to_vec())
        .await;
    assert_eq!(
        resp.status(),
        204,
        "the lease was released after the last PATCH"
    );
    // Given back before the answer, not left to expire or to a task.
    let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM leases WHERE name = $1")
        .bind(format!("upload:{upload_id}"))
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(held, 0, "the upload's lease outlived its request");
}

/// A PATCH streaming its body, whose upload's lease another replica took
/// over once the request held it.
struct TakenOver {
    patient: String,
    path: String,
    lease: String,
    db: sqlx::AnyPool,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    running: tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
    since: Instant,
}

/// Starts a PATCH of an upload of `length` bytes, sends its first 64 KiB,
/// then hands its lease to `replica-b` (waiting up to `patience` for the
/// request to take it first).
async fn patch_then_take_its_lease(app: &TestApp, length: u64, patience: Duration) -> TakenOver {
    let (_case, patient) = app.create_case(None).await;
    let path = app
        .tus_create(&patient, length, &meta("scan.pdf", None))
        .await;
    let upload_id = path.rsplit('/').next().unwrap().to_owned();
    let lease = format!("upload:{upload_id}");
    let db = app.db().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let request = app
        .tus(Method::PATCH, &path, &patient)
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
        )));
    let running = tokio::spawn(request.send());
    tx.send(Ok(Bytes::from(pattern(64 * 1024, 1))))
        .await
        .unwrap();
    let since = Instant::now();
    loop {
        let taken =
            sqlx::query("UPDATE leases SET holder = 'replica-b', expires_at = $1 WHERE name = $2")
                .bind(time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 120_000)
                .bind(&lease)
                .execute(&db)
                .await
                .unwrap();
        if taken.rows_affected() == 1 {
            break;
        }
        assert!(
            since.elapsed() < patience,
            "the request never took the lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    TakenOver {
        patient,
        path,
        lease,
        db,
        tx,
        running,
        since,
    }
}

impl TakenOver {
    /// The request's answer once its body ended, and that it recorded
    /// nothing and left the other holder's lease alone.
    async fn ends_locked_with_nothing_recorded(self, app: &TestApp, why: &str) {
        drop(self.tx);
        let resp = self.running.await.unwrap().unwrap();
        assert_eq!(resp.status(), 423, "{:?}", resp.text().await);
        assert_eq!(app.tus_offset(&self.patient, &self.path).await, 0, "{why}");
        let holder: String = sqlx::query_scalar("SELECT holder FROM leases WHERE name = $1")
            .bind(&self.lease)
            .fetch_one(&self.db)
            .await
            .unwrap();
        assert_eq!(holder, "replica-b");
    }
}

/// A request whose lease another replica took over (this one was cut off
/// from the database long enough for it to expire) stops writing at its
/// next body frame: 423, nothing acknowledged, the other holder's lease
/// left alone.
#[tokio::test]
async fn a_request_that_lost_its_lease_stops_writing() {
    let app = spawn_app().await;
    if !app.on_postgres() {
        return;
    }
    let t = patch_then_take_its_lease(&app, 10_000_000, Duration::from_secs(10)).await;
    // The body goes on; the holder notices at its next renewal (10 s).
    let mut sent = 64 * 1024;
    while !t.running.is_finished() && t.since.elapsed() < Duration::from_secs(30) {
        if t.tx
            .send(Ok(Bytes::from(pattern(16 * 1024, 2))))
            .await
            .is_err()
        {
            break;
        }
        sent += 16 * 1024;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        t.since.elapsed() < Duration::from_secs(30),
        "the request went on writing 30 s after losing its lease"
    );
    assert!(sent < 10_000_000);
    t.ends_locked_with_nothing_recorded(&app, "nothing acknowledged")
        .await;
}

/// The lease is confirmed in the transaction that records the offset: a
/// request whose lease another replica took between two renewals records
/// nothing when its body ends (423), and the new holder's lease stands.
#[tokio::test]
async fn a_durable_point_is_recorded_only_under_the_lease() {
    let app = spawn_app().await;
    if !app.on_postgres() {
        return;
    }
    let t = patch_then_take_its_lease(&app, 1_000_000, Duration::from_secs(5)).await;
    // The body ends at once, long before the holder's next renewal.
    t.ends_locked_with_nothing_recorded(&app, "nothing recorded")
        .await;
}
