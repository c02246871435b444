//! Named leases: one holder at a time across every gateway replica that
//! shares the database, until it releases the lease or stops renewing it
//! (its gateway died) and the lease expires. Times are milliseconds since
//! 1970 by the callers' clocks.

use super::{Db, DbError};

/// Takes the lease `name` for `holder` until `expires_at`, if it is free,
/// expired at `now`, or already `holder`'s (then it is renewed). `false`:
/// another holder has it.
pub async fn acquire(
    db: &Db,
    name: &str,
    holder: &str,
    now: i64,
    expires_at: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE leases.expires_at <= $4 OR leases.holder = excluded.holder",
    )
    .bind(name)
    .bind(holder)
    .bind(expires_at)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Extends `holder`'s lease to `expires_at`. `false`: it is no longer
/// `holder`'s (it expired and another holder took it).
pub async fn renew(db: &Db, name: &str, holder: &str, expires_at: i64) -> Result<bool, DbError> {
    let done = sqlx::query("UPDATE leases SET expires_at = $1 WHERE name = $2 AND holder = $3")
        .bind(expires_at)
        .bind(name)
        .bind(holder)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether `holder` still has the lease at `now`, inside a write
/// transaction; on PostgreSQL the row stays locked until the transaction
/// ends, so nobody takes the lease over before what it guards is
/// committed. (SQLite has one gateway and holds its write lock already.)
pub async fn held_in(
    tx: &mut super::Tx<'_>,
    backend: super::Backend,
    name: &str,
    holder: &str,
    now: i64,
) -> Result<bool, DbError> {
    let sql = match backend {
        super::Backend::Postgres => {
            "SELECT expires_at FROM leases WHERE name = $1 AND holder = $2 FOR UPDATE"
        }
        super::Backend::Sqlite => "SELECT expires_at FROM leases WHERE name = $1 AND holder = $2",
    };
    let expires: Option<i64> = sqlx::query_scalar(sql)
        .bind(name)
        .bind(holder)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(expires.is_some_and(|e| e > now))
}

/// Gives the lease up, if `holder` still has it.
pub async fn release(db: &Db, name: &str, holder: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(db.pool())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_commit_confirms_its_lease_in_its_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&crate::db::test_url(dir.path()).await)
            .await
            .unwrap();
        assert!(acquire(&db, "upload:u1", "a", 1_000, 31_000).await.unwrap());
        let b = db.backend();
        let mut tx = db.begin().await.unwrap();
        assert!(held_in(&mut tx, b, "upload:u1", "a", 30_999).await.unwrap());
        assert!(
            !held_in(&mut tx, b, "upload:u1", "a", 31_000).await.unwrap(),
            "expired"
        );
        assert!(
            !held_in(&mut tx, b, "upload:u1", "b", 2_000).await.unwrap(),
            "not b's"
        );
        assert!(
            !held_in(&mut tx, b, "upload:u2", "a", 2_000).await.unwrap(),
            "no such lease"
        );
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn one_holder_until_release_or_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&crate::db::test_url(dir.path()).await)
            .await
            .unwrap();
        assert!(acquire(&db, "upload:u1", "a", 1_000, 31_000).await.unwrap());
        assert!(
            !acquire(&db, "upload:u1", "b", 2_000, 32_000).await.unwrap(),
            "held by a"
        );
        assert!(
            acquire(&db, "upload:u2", "b", 2_000, 32_000).await.unwrap(),
            "another name"
        );
        assert!(
            acquire(&db, "upload:u1", "a", 3_000, 33_000).await.unwrap(),
            "a renews"
        );
        assert!(renew(&db, "upload:u1", "a", 40_000).await.unwrap());
        assert!(!renew(&db, "upload:u1", "b", 40_000).await.unwrap());
        // b cannot release a's lease.
        release(&db, "upload:u1", "b").await.unwrap();
        assert!(
            !acquire(&db, "upload:u1", "b", 39_999, 70_000)
                .await
                .unwrap()
        );
        // Expired: b takes it over, and a's renewal fails from then on.
        assert!(
            acquire(&db, "upload:u1", "b", 40_000, 70_000)
                .await
                .unwrap()
        );
        assert!(!renew(&db, "upload:u1", "a", 80_000).await.unwrap());
        release(&db, "upload:u1", "b").await.unwrap();
        assert!(
            acquire(&db, "upload:u1", "a", 41_000, 71_000)
                .await
                .unwrap(),
            "released"
        );
    }
}
