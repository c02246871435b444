//! The two database engines the gateway runs on, and the few places where
//! their SQL or session set-up differ. Everything else is written once.

use futures_util::future::BoxFuture;
use sqlx::AnyConnection;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnectionMetadata;

use super::{DbError, DbOptions};

/// Any replica's write transaction takes this advisory lock first
/// (`pg_advisory_xact_lock`), so writers run one at a time as on SQLite.
/// The number only has to be the same on every replica: "casegate" in
/// ASCII.
const WRITE_LOCK: &str = "SELECT pg_advisory_xact_lock(7161130607815353189)";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://PATH`: one gateway, the embedded default.
    Sqlite,
    /// `postgres://…`: one database shared by every replica.
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Backend, DbError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(DbError::Url(
                "must start with sqlite: or postgres:// (or postgresql://)",
            ))
        }
    }

    /// The URL to connect with: a SQLite file is created when missing.
    pub(super) fn connect_url(self, url: &str) -> String {
        let memory = url.starts_with("sqlite::memory:");
        if self == Backend::Sqlite && !memory && !url.contains("mode=") {
            let sep = if url.contains('?') { '&' } else { '?' };
            return format!("{url}{sep}mode=rwc");
        }
        url.to_owned()
    }

    /// Session settings run on every new connection.
    pub(super) fn session_setup(
        self,
        options: &DbOptions,
    ) -> impl Fn(
        &mut AnyConnection,
        PoolConnectionMetadata,
    ) -> BoxFuture<'_, Result<(), sqlx::Error>>
    + Send
    + Sync
    + 'static {
        let sql = match self {
            // WAL with FULL sync: a committed transaction survives power
            // loss, which upload offsets promise. A 1 MiB page cache per
            // connection (SQLite's default is 2 MiB): metadata is small,
            // and memory per upload must stay bounded.
            Backend::Sqlite => "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                 PRAGMA cache_size = -1024;"
                .to_owned(),
            // A statement (or a wait for the write lock) longer than this
            // is cancelled instead of holding a connection forever.
            Backend::Postgres => format!(
                "SET statement_timeout = {}; SET lock_timeout = {};",
                options.statement_timeout.as_millis(),
                options.statement_timeout.as_millis()
            ),
        };
        move |conn, _meta| {
            let sql = sql.clone();
            Box::pin(async move {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(conn)
                    .await?;
                Ok(())
            })
        }
    }

    pub(super) fn migrator(self) -> Migrator {
        match self {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        }
    }

    /// The statement that opens a write transaction.
    pub(super) fn begin_write(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        }
    }

    /// The statement that opens a read transaction with one snapshot.
    pub(super) fn begin_read(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        }
    }

    /// Run first in every write transaction, if the engine needs it.
    pub(super) fn write_lock(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => Some(WRITE_LOCK),
        }
    }

    /// `expr` (seconds since 1970) as the text timestamps are stored in,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn epoch_as_text(self, expr: &str) -> String {
        match self {
            Backend::Sqlite => format!("strftime('%Y-%m-%dT%H:%M:%SZ', {expr}, 'unixepoch')"),
            Backend::Postgres => format!(
                "to_char(to_timestamp({expr}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
            ),
        }
    }

    /// The two-argument minimum (`MIN(a, b)` is an aggregate on PostgreSQL).
    pub fn least(self) -> &'static str {
        match self {
            Backend::Sqlite => "MIN",
            Backend::Postgres => "LEAST",
        }
    }

    /// The two-argument maximum.
    pub fn greatest(self) -> &'static str {
        match self {
            Backend::Sqlite => "MAX",
            Backend::Postgres => "GREATEST",
        }
    }

    /// The engine behind a connection.
    pub fn of_connection(conn: &AnyConnection) -> Backend {
        if conn.backend_name().eq_ignore_ascii_case("postgresql") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}
