//! The metadata database's settings (`[database]`): which engine and
//! where, the pool, and the rules a URL must meet — never printed with its
//! password, never a remote PostgreSQL without verified TLS.

use serde::Deserialize;

use super::ConfigError;
use super::load::invalid;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (one gateway) or `postgres://USER@HOST/DB` (replicas
    /// sharing one database; the password best in the environment).
    pub url: String,
    /// Connections each gateway keeps open at most.
    pub max_connections: u32,
    /// How long a request waits for a free connection.
    pub acquire_timeout_secs: u64,
    /// PostgreSQL: a statement, or a wait for a lock, that runs longer is
    /// cancelled.
    pub statement_timeout_secs: u64,
}

impl DatabaseConfig {
    /// The URL names an engine (and a remote PostgreSQL verified TLS);
    /// the pool's numbers are positive.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let engines = ["sqlite:", "postgres://", "postgresql://"];
        if !engines.iter().any(|prefix| self.url.starts_with(prefix)) {
            return Err(invalid(
                "database.url",
                "must start with sqlite: or postgres:// (or postgresql://)",
            ));
        }
        if self.url.starts_with("postgres") && !postgres_tls_or_local(&self.url) {
            return Err(invalid(
                "database.url",
                "a PostgreSQL server on another host needs sslmode=verify-full (or verify-ca) \
                     in the URL: the database holds wrapped keys and the audit log",
            ));
        }
        let numbers = [
            ("database.max_connections", u64::from(self.max_connections)),
            ("database.acquire_timeout_secs", self.acquire_timeout_secs),
            (
                "database.statement_timeout_secs",
                self.statement_timeout_secs,
            ),
        ];
        for (key, value) in numbers {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redacted_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_secs", &self.acquire_timeout_secs)
            .field("statement_timeout_secs", &self.statement_timeout_secs)
            .finish()
    }
}

/// `url` with its password, if any, replaced by `***`: for messages.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    // The user info ends at the last `@` before the query (a password may
    // hold `/` or `@`).
    let location = match before_query.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info
                .split_once(':')
                .map_or(user_info, |(user, _)| user);
            format!("{user}:***@{host}")
        }
        None => before_query.to_owned(),
    };
    let query = query.map(|q| {
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        format!("?{}", pairs.join("&"))
    });
    format!("{scheme}://{location}{}", query.unwrap_or_default())
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://data/casegate.db".into(),
            max_connections: 8,
            acquire_timeout_secs: 10,
            statement_timeout_secs: 30,
        }
    }
}

/// Whether a PostgreSQL URL either verifies the server's certificate
/// (`sslmode=verify-full` or `verify-ca`) or names this host (loopback or
/// a UNIX socket), where TLS protects nothing.
pub(super) fn postgres_tls_or_local(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let verified = query.split('&').any(|pair| {
        matches!(
            pair.split_once('='),
            Some(("sslmode", "verify-full" | "verify-ca"))
        )
    });
    let host_port = before_query
        .rsplit_once('@')
        .map_or(before_query, |(_, h)| h);
    let host_port = host_port.split('/').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    let socket = host.is_empty() || query.split('&').any(|pair| pair.starts_with("host=/"));
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    verified || socket || loopback
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_elsewhere_needs_a_verified_tls_connection() {
        for ok in [
            "postgres://gw:pw@127.0.0.1:5432/cg",
            "postgres://gw@localhost/cg",
            "postgresql://gw@[::1]:5432/cg",
            "postgres:///cg?host=/run/postgresql",
            "postgres://gw@db.internal/cg?sslmode=verify-full",
            "postgres://gw@10.0.0.5:5432/cg?application_name=x&sslmode=verify-ca",
        ] {
            assert!(postgres_tls_or_local(ok), "{ok}");
        }
        for refused in [
            "postgres://gw@db.internal/cg",
            "postgres://gw@db.internal/cg?sslmode=require",
            "postgres://gw@10.0.0.5/cg?sslmode=prefer",
            "postgres://gw:p@ss@127.0.0.2.example.org/cg",
        ] {
            assert!(!postgres_tls_or_local(refused), "{refused}");
        }
    }
}
