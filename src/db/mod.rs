//! Metadata database: one repository over SQLite (embedded default) or
//! PostgreSQL (several gateway replicas), chosen by `database.url`.
//! Queries are plain SQL with runtime binding, written once for both
//! (`$1`-style placeholders, no engine-specific functions except through
//! [`Backend`]); each concept has its module.

pub mod audit;
pub mod cases;
pub mod centres;
pub mod disclosures;
pub mod files;
pub mod grants;
pub mod leases;
pub mod master_keys;
pub mod tokens;
pub mod uploads;

mod backend;

use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, Connection, Transaction};

pub use backend::{Backend, WRITE_LOCK_KEY};

pub type Tx<'a> = Transaction<'a, Any>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database holds an invalid value in {0}")]
    Corrupt(&'static str),
    #[error("database.url: {0}")]
    Url(&'static str),
}

/// How the gateway connects to its database (`[database]` in the config).
/// Connections each gateway keeps for lease statements on PostgreSQL, on
/// top of `max_connections`.
pub const LEASE_CONNECTIONS: u32 = 2;

#[derive(Clone, Debug)]
pub struct DbOptions {
    /// Connections kept open at most.
    pub max_connections: u32,
    /// How long a request waits for a free connection.
    pub acquire_timeout: Duration,
    /// PostgreSQL only: a statement running longer is cancelled.
    pub statement_timeout: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

impl From<&crate::config::DatabaseConfig> for DbOptions {
    fn from(c: &crate::config::DatabaseConfig) -> Self {
        DbOptions {
            max_connections: c.max_connections,
            acquire_timeout: Duration::from_secs(c.acquire_timeout_secs),
            statement_timeout: Duration::from_secs(c.statement_timeout_secs),
        }
    }
}

pub use crate::config::redacted_url;

/// The database handle shared by all requests.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    /// PostgreSQL: two connections of their own for lease statements, so a
    /// pool busy with requests waiting for the write lock never keeps a
    /// running upload from renewing its lease (it would stop writing).
    lease_pool: Option<AnyPool>,
    backend: Backend,
    /// The audit tree's right edge as this process last appended it.
    tree_edge: std::sync::Arc<audit::tree::EdgeCache>,
}

impl Db {
    /// Opens (creating if needed) and migrates the database at `url`
    /// (`sqlite:` or `postgres:`) with the default pool settings.
    pub async fn open(url: &str) -> Result<Db, DbError> {
        Db::open_with(url, &DbOptions::default()).await
    }

    /// Opens and migrates the database at `url`.
    pub async fn open_with(url: &str, options: &DbOptions) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .after_connect(backend.session_setup(options))
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
                    // soon as the disk has room again. (A PostgreSQL
                    // connection in that state is as useless.)
                    conn.ping().await?;
                    Ok(!conn.is_in_transaction())
                })
            })
            .connect(&backend.connect_url(url))
            .await?;
        // Migrations run on a connection of their own without the
        // statement timeout: an index built on a large table may take
        // longer. (On PostgreSQL they hold an advisory lock, so replicas
        // starting together apply each migration once.)
        let mut conn = pool.acquire().await?.detach();
        if backend == Backend::Postgres {
            sqlx::raw_sql("SET statement_timeout = 0; SET lock_timeout = 0")
                .execute(&mut conn)
                .await?;
        }
        backend.migrator().run(&mut conn).await?;
        conn.close().await?;
        let lease_pool = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(
                AnyPoolOptions::new()
                    .max_connections(LEASE_CONNECTIONS)
                    .acquire_timeout(options.acquire_timeout)
                    .after_connect(backend.session_setup(options))
                    .connect(&backend.connect_url(url))
                    .await?,
            ),
        };
        Ok(Db {
            pool,
            lease_pool,
            backend,
            tree_edge: Default::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Where lease statements run (outside any transaction).
    pub(crate) fn lease_pool(&self) -> &AnyPool {
        self.lease_pool.as_ref().unwrap_or(&self.pool)
    }

    pub(crate) fn tree_edge(&self) -> &audit::tree::EdgeCache {
        &self.tree_edge
    }

    /// A write transaction. Write transactions run one at a time, as
    /// SQLite runs them: `BEGIN IMMEDIATE` takes SQLite's write lock at
    /// once, and on PostgreSQL the transaction first takes one
    /// transaction-scoped advisory lock shared by every replica. So what a
    /// writer reads (the audit sequence, a quota, a count) cannot change
    /// before it commits, on one gateway or on several.
    pub async fn begin(&self) -> Result<Tx<'static>, DbError> {
        let mut tx = self.pool.begin_with(self.backend.begin_write()).await?;
        if let Some(lock) = self.backend.write_lock() {
            sqlx::query(lock).execute(&mut *tx).await?;
        }
        Ok(tx)
    }

    /// A read-only transaction that sees one snapshot throughout (SQLite's
    /// deferred transaction does; PostgreSQL needs REPEATABLE READ).
    pub async fn begin_read(&self) -> Result<Tx<'static>, DbError> {
        Ok(self.pool.begin_with(self.backend.begin_read()).await?)
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
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn meta_set(tx: &mut Tx<'_>, key: &str, value: &str) -> Result<(), DbError> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// `rows` groups of `width` numbered placeholders starting at `$first`:
/// `placeholders(1, 2, 2)` is `($1, $2), ($3, $4)`, and with `width` 1
/// the bare list `$1, $2`. For `IN (…)` lists and multi-row inserts.
pub(crate) fn placeholders(first: usize, rows: usize, width: usize) -> String {
    let mut out = String::new();
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        let group: Vec<String> = (0..width)
            .map(|col| format!("${}", first + row * width + col))
            .collect();
        if width == 1 {
            out.push_str(&group.join(", "));
        } else {
            out.push('(');
            out.push_str(&group.join(", "));
            out.push(')');
        }
    }
    out
}

/// For unit tests: a fresh database — with `CASEGATE_TEST_POSTGRES` set
/// (a PostgreSQL URL whose user may create databases) a new PostgreSQL
/// database, else a SQLite file in `dir`.
#[cfg(test)]
pub(crate) async fn test_url(dir: &std::path::Path) -> String {
    let Ok(admin) = std::env::var("CASEGATE_TEST_POSTGRES") else {
        return format!("sqlite://{}", dir.join("test.db").display());
    };
    sqlx::any::install_default_drivers();
    let name = format!(
        "cg_unit_{}",
        crate::hex::encode(&crate::random::array::<8>())
    );
    let mut conn = <sqlx::AnyConnection as Connection>::connect(&admin)
        .await
        .expect("CASEGATE_TEST_POSTGRES connects");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("a test database can be created");
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            redacted_url("postgres://gw:s3cret@db.internal:5432/casegate?sslmode=require"),
            "postgres://gw:***@db.internal:5432/casegate?sslmode=require"
        );
        assert_eq!(
            redacted_url("postgres://gw@db/casegate"),
            "postgres://gw:***@db/casegate"
        );
        assert_eq!(
            redacted_url("sqlite://data/casegate.db"),
            "sqlite://data/casegate.db"
        );
        assert_eq!(placeholders(1, 2, 2), "($1, $2), ($3, $4)");
        assert_eq!(placeholders(3, 3, 1), "$3, $4, $5");
    }
}
