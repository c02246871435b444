//! Metadata database: one repository over SQLite (embedded default).
//! Queries are plain SQL with runtime binding; each concept has its module.

pub mod audit;
pub mod cases;
pub mod centres;
pub mod disclosures;
pub mod files;
pub mod grants;
pub mod master_keys;
pub mod tokens;
pub mod uploads;

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Sqlite, SqlitePool, Transaction};

pub type Tx<'a> = Transaction<'a, Sqlite>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database holds an invalid value in {0}")]
    Corrupt(&'static str),
}

/// The database handle shared by all requests.
#[derive(Clone, Debug)]
pub struct Db {
    pool: SqlitePool,
    /// The audit tree's right edge as this process last appended it.
    tree_edge: std::sync::Arc<audit::tree::EdgeCache>,
}

impl Db {
    /// Opens (creating if needed) and migrates the database at `url`.
    pub async fn open(url: &str) -> Result<Db, DbError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed transaction survives power loss; upload
            // offsets promise exactly that.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // 1 MiB page cache per connection (SQLite's default is 2 MiB):
            // metadata is small, and memory per upload must stay bounded.
            .pragma("cache_size", "-1024");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .after_release(|conn, _meta| {
                Box::pin(async move {
                    // A COMMIT that fails with SQLITE_FULL (disk full) lets
                    // SQLite roll the transaction back itself; the rollback
                    // sqlx then queues fails ("no transaction is active")
                    // and its depth counter stays at 1, so every later
                    // BEGIN on this connection would be refused. Flush the
                    // queued rollback, then close a connection that still
                    // believes it is in a transaction instead of pooling it:
                    // the pool opens a clean one, and writes recover as
                    // soon as the disk has room again.
                    conn.ping().await?;
                    Ok(!conn.is_in_transaction())
                })
            })
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Db {
            pool,
            tree_edge: Default::default(),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) fn tree_edge(&self) -> &audit::tree::EdgeCache {
        &self.tree_edge
    }

    /// A write transaction. `BEGIN IMMEDIATE` takes SQLite's write lock at
    /// once, so the audit sequence read inside it cannot race.
    pub async fn begin(&self) -> Result<Tx<'static>, DbError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Commits a one-row write, as the audit log does for every action:
    /// readiness must fail while writes fail (disk full, database locked or
    /// read-only), not only when reads do.
    pub async fn probe_write(&self, now: crate::clock::Timestamp) -> Result<(), DbError> {
        let mut tx = self.begin().await?;
        Db::meta_set(&mut tx, "readiness_probe", &now.to_string()).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn meta_get(&self, key: &str) -> Result<Option<String>, DbError> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn meta_set(tx: &mut Tx<'_>, key: &str, value: &str) -> Result<(), DbError> {
        sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}
