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
pub const WRITE_LOCK_KEY: i64 = 7161130607815353189;
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
            // A transaction left idle (its gateway frozen or cut off)
            // would hold the write lock every replica needs: the server
            // ends it, and notices a dead client within ~2 minutes.
            Backend::Postgres => {
                let ms = options.statement_timeout.as_millis();
                format!(
                    "SET statement_timeout = {ms}; SET lock_timeout = {ms};
                     SET idle_in_transaction_session_timeout = {ms};
                     SET tcp_keepalives_idle = 60; SET tcp_keepalives_interval = 10;
                     SET tcp_keepalives_count = 6;"
                )
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn migrations(engine: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(engine);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn both_engines_have_the_same_migrations() {
        let (sqlite, postgres) = (migrations("sqlite"), migrations("postgres"));
        assert!(sqlite.len() >= 11, "{sqlite:?}");
        assert_eq!(
            sqlite, postgres,
            "every migration is written for both engines, under the same name"
        );
    }

    #[test]
    fn urls_name_their_engine() {
        assert_eq!(
            Backend::of_url("sqlite://data/casegate.db").unwrap(),
            Backend::Sqlite
        );
        assert_eq!(
            Backend::of_url("postgres://gw@db/cg").unwrap(),
            Backend::Postgres
        );
        assert_eq!(
            Backend::of_url("postgresql://gw@db/cg").unwrap(),
            Backend::Postgres
        );
        assert!(Backend::of_url("mysql://gw@db/cg").is_err());
        assert_eq!(
            Backend::Sqlite.connect_url("sqlite://d/c.db"),
            "sqlite://d/c.db?mode=rwc"
        );
        assert_eq!(
            Backend::Sqlite.connect_url("sqlite::memory:"),
            "sqlite::memory:"
        );
    }
}
