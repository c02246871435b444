//! Gateways sharing one PostgreSQL database: an upload another replica is
//! writing (it holds the upload's lease) is answered 423 here, and can be
//! resumed here once that replica released it or its lease expired (the
//! replica died). On SQLite there is one gateway and no lease; the test
//! runs in the PostgreSQL pass of the suite.

use crate::common::spawn_app;
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
    // Released when the request ended, not left to expire.
    for _ in 0..40 {
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM leases WHERE name = $1")
            .bind(format!("upload:{upload_id}"))
            .fetch_one(&db)
            .await
            .unwrap();
        if held == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the upload's lease outlived its request");
}
