//! A download lease is named by its id and its token: the holder of a
//! lease that was settled as stale cannot record progress on, keep alive
//! or settle the lease that took its id (SQLite hands a deleted row's id
//! out again).

use super::*;
use crate::db::centres::{self, NewCentre};

/// A fresh database with a case, a centre and a grant of one file.
async fn granted(dir: &std::path::Path) -> (Db, GrantId, FileId) {
    let db = Db::open(&crate::db::test_url(dir).await).await.unwrap();
    let (case_id, file_id) = (CaseId::generate(), FileId::generate());
    sqlx::query(
        "INSERT INTO cases (case_id, created_at, state, upload_expires_at)
         VALUES ($1, '2026-11-29T00:00:00Z', 'open', '2026-12-29T00:00:00Z')",
    )
    .bind(case_id.as_str())
    .execute(db.pool())
    .await
    .unwrap();
    let at: Timestamp = "2026-11-29T00:00:00Z".parse().unwrap();
    let centre_id = CentreId::generate();
    let mut tx = db.begin().await.unwrap();
    let centre = NewCentre {
        centre_id: &centre_id,
        name: "Reviewing Centre",
        country: "CH",
        cert_sha256: "00",
        cert_der: b"der",
        x25519_public_key: &[9; 32],
        created_at: at,
    };
    assert!(centres::insert(&mut tx, &centre).await.unwrap());
    let grant = GrantRow {
        grant_id: GrantId::generate(),
        case_id,
        centre_id,
        created_at: at,
        expires_at: at.plus_secs(3600),
        max_downloads: 5,
        revoked_at: None,
        may_reply: true,
    };
    insert(
        &mut tx,
        &grant,
        &TokenHash([1; 32]),
        std::slice::from_ref(&file_id),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (db, grant.grant_id, file_id)
}

async fn lease(db: &Db, grant: &GrantId, file: &FileId, now: i64) -> LeaseKey {
    let mut tx = db.begin().await.unwrap();
    let lease = reserve(&mut tx, grant, file, true, 100, 5, 100, now, now - 120)
        .await
        .unwrap()
        .expect("the budget allows it");
    tx.commit().await.unwrap();
    lease
}

async fn sent(db: &Db, lease: LeaseKey) -> Option<i64> {
    sqlx::query_scalar("SELECT sent FROM download_leases WHERE lease_id = $1 AND token = $2")
        .bind(lease.id)
        .bind(lease.token)
        .fetch_optional(db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_stale_leases_holder_cannot_touch_the_lease_that_took_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let (db, grant, file) = granted(dir.path()).await;
    let stalled = lease(&db, &grant, &file, 1_000).await;
    // Past the TTL, another request settles the stalled lease as a dead
    // gateway's and takes a lease of its own.
    let other = lease(&db, &grant, &file, 1_200).await;
    assert_ne!(stalled, other);
    if db.backend() == crate::db::Backend::Sqlite {
        // What made the holder's id ambiguous: it is handed out again.
        assert_eq!(stalled.id, other.id, "SQLite reuses the settled lease's id");
    }
    assert!(heartbeat(&db, other, (10, 10), 1_201).await.unwrap());

    // The stalled stream resumes: its lease is gone, whatever took its id.
    assert!(!heartbeat(&db, stalled, (50, 50), 1_202).await.unwrap());
    assert!(!touch(&db, stalled, 1_202).await.unwrap());
    let mut tx = db.begin().await.unwrap();
    settle(&mut tx, stalled, (50, 50), true, 1_202)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // The other download's lease is untouched: still there, at its own
    // progress, and still alive.
    assert_eq!(sent(&db, other).await, Some(10));
    assert!(touch(&db, other, 1_203).await.unwrap());
    let mut tx = db.begin().await.unwrap();
    settle(&mut tx, other, (100, 100), false, 1_204)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(sent(&db, other).await, None, "settled by its holder");
    let served: i64 = sqlx::query_scalar("SELECT bytes_served FROM grant_files")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(
        served, 100,
        "the other download's bytes only (the stalled one sent nothing recorded)"
    );
}
