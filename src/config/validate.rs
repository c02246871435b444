//! The configuration rules types alone cannot express: locations,
//! connection shares, values that must not be 0, S3 bounds, lifetimes and
//! the audit log's origin and checkpoint copy. Run by [`Config::load`] and
//! [`Config::parse`]; a broken rule names its key.

use super::load::{ConfigError, invalid};
use super::{Config, StorageBackend};

/// The longest token or upload lifetime the config accepts.
const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

impl Config {
    /// Checks the rules types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_locations()?;
        self.validate_connection_share()?;
        self.validate_positive()?;
        self.validate_storage()?;
        self.validate_lifetimes()?;
        self.validate_audit()
    }

    /// The audit log's origin and checkpoint copy.
    fn validate_audit(&self) -> Result<(), ConfigError> {
        let origin = self.audit_origin();
        if origin.is_empty()
            || origin
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '+')
        {
            return Err(invalid(
                "audit.origin",
                "must be non-empty without spaces or '+' (e.g. gateway.example.org/casegate-audit)",
            ));
        }
        let copy = self.audit.checkpoint_copy.as_deref();
        if let Some(copy) = copy.filter(|c| c.starts_with("s3://")) {
            if super::parse_s3_url(copy).is_none() {
                return Err(invalid(
                    "audit.checkpoint_copy",
                    "must be s3://bucket/prefix with a valid bucket name (3-63 of a-z, 0-9, '-', '.')",
                ));
            }
            if self.checkpoint_copy_connection().is_none() {
                return Err(invalid(
                    "audit.checkpoint_copy",
                    "s3:// copies need an endpoint and keys: set audit.checkpoint_copy_s3 (or storage.s3)",
                ));
            }
        } else if let Some(copy) = copy
            && (copy.is_empty() || copy.contains("://"))
        {
            return Err(invalid(
                "audit.checkpoint_copy",
                "must be a directory path or s3://bucket/prefix",
            ));
        }
        if let Some(days) = self.audit.checkpoint_copy_retention_days
            && (days == 0 || !copy.is_some_and(|c| c.starts_with("s3://")))
        {
            return Err(invalid(
                "audit.checkpoint_copy_retention_days",
                "needs an s3:// audit.checkpoint_copy and at least 1 day",
            ));
        }
        Ok(())
    }

    /// URLs, origins, the database and the store backend.
    fn validate_locations(&self) -> Result<(), ConfigError> {
        if !self.server.public_url.starts_with("https://") {
            return Err(invalid("server.public_url", "must start with https://"));
        }
        let lists = [
            ("server.allowed_origins", &self.server.allowed_origins),
            (
                "server.centre_allowed_origins",
                &self.server.centre_allowed_origins,
            ),
        ];
        for (key, origins) in lists {
            for origin in origins {
                if !(origin.starts_with("https://") || origin.starts_with("http://"))
                    || origin.trim() == "*"
                {
                    return Err(invalid(
                        key,
                        format!("{origin:?} is not an origin (scheme://host[:port])"),
                    ));
                }
            }
        }
        self.database.validate()?;
        if self.storage.backend == StorageBackend::S3 && self.storage.s3.is_none() {
            return Err(invalid(
                "storage.s3",
                "storage.backend = \"s3\" needs a [storage.s3] section",
            ));
        }
        Ok(())
    }

    /// A client address's share of connections fits inside the listener's.
    fn validate_connection_share(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        if let Some(share) = l.max_connections_per_address {
            if share == 0 {
                return Err(invalid(
                    "limits.max_connections_per_address",
                    "must be greater than 0",
                ));
            }
            if share > l.max_connections {
                return Err(invalid(
                    "limits.max_connections_per_address",
                    format!(
                        "must not exceed limits.max_connections ({})",
                        l.max_connections
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Limits, timeouts and quotas where 0 would refuse everything (or
    /// never time out).
    fn validate_positive(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        for (key, value) in [
            ("limits.max_connections", l.max_connections as u64),
            (
                "limits.tls_handshake_timeout_secs",
                l.tls_handshake_timeout_secs,
            ),
            (
                "limits.header_read_timeout_secs",
                l.header_read_timeout_secs,
            ),
            ("limits.request_timeout_secs", l.request_timeout_secs),
            ("limits.json_body_bytes", l.json_body_bytes as u64),
            ("limits.max_upload_bytes", l.max_upload_bytes),
            (
                "limits.auth_failures_per_minute",
                u64::from(l.auth_failures_per_minute),
            ),
            ("uploads.token_ttl_secs", self.uploads.token_ttl_secs),
            ("uploads.upload_ttl_secs", self.uploads.upload_ttl_secs),
            (
                "uploads.body_idle_timeout_secs",
                self.uploads.body_idle_timeout_secs,
            ),
            ("uploads.sync_every_bytes", self.uploads.sync_every_bytes),
            (
                "audit.checkpoint_interval_secs",
                self.audit.checkpoint_interval_secs,
            ),
            (
                "audit.alert_token_guesses",
                u64::from(self.audit.alert_token_guesses),
            ),
            ("uploads.max_case_bytes", self.uploads.max_case_bytes),
            ("uploads.max_case_files", self.uploads.max_case_files),
            (
                "uploads.max_concurrent_uploads",
                self.uploads.max_concurrent_uploads,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        Ok(())
    }

    fn validate_storage(&self) -> Result<(), ConfigError> {
        if let Some(s3) = &self.storage.s3
            && !(1..=super::MAX_PARTS_IN_FLIGHT).contains(&s3.parts_in_flight)
        {
            return Err(invalid(
                "storage.s3.parts_in_flight",
                format!("must be 1 to {}", super::MAX_PARTS_IN_FLIGHT),
            ));
        }
        if let Some(s3) = &self.storage.s3
            && s3.request_timeout_secs == 0
        {
            return Err(invalid(
                "storage.s3.request_timeout_secs",
                "must be greater than 0",
            ));
        }
        Ok(())
    }

    fn validate_lifetimes(&self) -> Result<(), ConfigError> {
        // Added to "now" to make expiry times: bounded, so no value can
        // overflow a date.
        for (key, value) in [
            ("uploads.token_ttl_secs", self.uploads.token_ttl_secs),
            ("uploads.upload_ttl_secs", self.uploads.upload_ttl_secs),
        ] {
            if value > MAX_TTL_SECS {
                return Err(invalid(
                    key,
                    format!("must be at most {MAX_TTL_SECS} (10 years)"),
                ));
            }
        }
        Ok(())
    }
}
