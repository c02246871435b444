//! Named leases: one holder at a time across every gateway replica that
//! shares the database, until it releases the lease or stops renewing it
//! (its gateway died) and the lease expires. Expiry times are milliseconds
//! since 1970 by the **database's** clock, taken in each statement, so
//! replicas whose clocks differ never disagree on who holds a lease.

use super::{Backend, Db, DbError};

/// Now, in milliseconds since 1970, by the database server's clock.
fn now_ms(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    }
}

/// Takes the lease `name` for `holder` for `ttl_ms` from now, if it is
/// free, expired, or already `holder`'s (then it is renewed). `false`:
/// another holder has it.
pub async fn acquire(db: &Db, name: &str, holder: &str, ttl_ms: i64) -> Result<bool, DbError> {
    let now = now_ms(db.backend());
    let sql = format!(
        "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, {now} + $3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE leases.expires_at <= {now} OR leases.holder = excluded.holder"
    );
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .bind(holder)
        .bind(ttl_ms)
        .execute(db.lease_pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Extends `holder`'s lease to `ttl_ms` from now. `false`: it is no
/// longer `holder`'s (it expired and another holder took it).
pub async fn renew(db: &Db, name: &str, holder: &str, ttl_ms: i64) -> Result<bool, DbError> {
    let now = now_ms(db.backend());
    let sql = format!("UPDATE leases SET expires_at = {now} + $1 WHERE name = $2 AND holder = $3");
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ttl_ms)
        .bind(name)
        .bind(holder)
        .execute(db.lease_pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether `holder` still has the lease, inside a write transaction; on
/// PostgreSQL the row stays locked until the transaction ends, so nobody
/// takes the lease over before what it guards is committed. (SQLite has
/// one gateway and holds its write lock already.)
pub async fn held_in(
    tx: &mut super::Tx<'_>,
    backend: Backend,
    name: &str,
    holder: &str,
) -> Result<bool, DbError> {
    let now = now_ms(backend);
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "SELECT CASE WHEN expires_at > {now} THEN 1 ELSE 0 END FROM leases
         WHERE name = $1 AND holder = $2{lock}"
    );
    let live: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .bind(holder)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(live == Some(1))
}

/// Gives the lease up, if `holder` still has it.
pub async fn release(db: &Db, name: &str, holder: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(db.lease_pool())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lease whose holder stopped renewing long ago.
    const EXPIRED: i64 = -60_000;
    const LIVE: i64 = 60_000;

    async fn db(dir: &tempfile::TempDir) -> Db {
        Db::open(&crate::db::test_url(dir.path()).await)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_commit_confirms_its_lease_in_its_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir).await;
        assert!(acquire(&db, "upload:u1", "a", LIVE).await.unwrap());
        assert!(acquire(&db, "upload:u3", "a", EXPIRED).await.unwrap());
        let b = db.backend();
        let mut tx = db.begin().await.unwrap();
        assert!(held_in(&mut tx, b, "upload:u1", "a").await.unwrap());
        assert!(
            !held_in(&mut tx, b, "upload:u3", "a").await.unwrap(),
            "expired"
        );
        assert!(
            !held_in(&mut tx, b, "upload:u1", "b").await.unwrap(),
            "not b's"
        );
        assert!(
            !held_in(&mut tx, b, "upload:u2", "a").await.unwrap(),
            "no such lease"
        );
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn one_holder_until_release_or_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir).await;
        assert!(acquire(&db, "upload:u1", "a", LIVE).await.unwrap());
        assert!(
            !acquire(&db, "upload:u1", "b", LIVE).await.unwrap(),
            "held by a"
        );
        assert!(
            acquire(&db, "upload:u2", "b", LIVE).await.unwrap(),
            "another name"
        );
        assert!(
            acquire(&db, "upload:u1", "a", LIVE).await.unwrap(),
            "a renews"
        );
        assert!(renew(&db, "upload:u1", "a", LIVE).await.unwrap());
        assert!(!renew(&db, "upload:u1", "b", LIVE).await.unwrap());
        // b cannot release a's lease.
        release(&db, "upload:u1", "b").await.unwrap();
        assert!(!acquire(&db, "upload:u1", "b", LIVE).await.unwrap());
        // a stops renewing: expired, b takes it over, and a's renewal
        // fails from then on.
        assert!(renew(&db, "upload:u1", "a", EXPIRED).await.unwrap());
        assert!(acquire(&db, "upload:u1", "b", LIVE).await.unwrap());
        assert!(!renew(&db, "upload:u1", "a", LIVE).await.unwrap());
        release(&db, "upload:u1", "b").await.unwrap();
        assert!(
            acquire(&db, "upload:u1", "a", LIVE).await.unwrap(),
            "released"
        );
    }
}
