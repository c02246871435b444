//! Loading the configuration: defaults, then the file, then the
//! environment; then the checks types alone cannot express.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Config, StorageBackend};

/// A configuration problem, always naming the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("invalid config: {key}: {message}")]
    Invalid { key: String, message: String },
}

/// The longest token or upload lifetime the config accepts.
const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

pub(super) fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

const ENV_PREFIX: &str = "CASEGATE_";

impl Config {
    /// Defaults, then `file` (if any), then the `CASEGATE_*__*` variables of `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = file
            .map(|path| {
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })
            })
            .transpose()?;
        Config::parse(file.zip(text.as_deref()), env)
    }

    /// [`Config::load`] on a file already read: `file` is its path (named in
    /// errors) and its text.
    pub fn parse(
        file: Option<(&Path, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some((path, text)) => text
                .parse::<toml::Table>()
                .map_err(|e| ConfigError::Syntax {
                    path: path.to_owned(),
                    message: e.message().to_owned(),
                })?,
            None => toml::Table::new(),
        };
        let overrides: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
            .collect();
        // Variables whose value read as a TOML number, boolean, date or
        // array: if the key wants a string (`CASEGATE_STORAGE__S3__BUCKET=2024`)
        // the raw text is used instead.
        let mut typed: BTreeMap<String, (String, String)> = BTreeMap::new();
        for (name, raw) in overrides {
            if let Some(dotted) = apply_env(&mut table, &name, &raw, false)? {
                typed.insert(dotted, (name, raw));
            }
        }
        let config: Config = loop {
            match serde_path_to_error::deserialize(toml::Value::Table(table.clone())) {
                Ok(config) => break config,
                Err(e) => {
                    let key = e.path().to_string();
                    match typed.remove(&key) {
                        Some((name, raw)) => {
                            apply_env(&mut table, &name, &raw, true)?;
                        }
                        None => return Err(invalid(&key, e.into_inner().message().to_owned())),
                    }
                }
            }
        };
        config.validate()?;
        Ok(config)
    }

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

    /// Directory of the `fs` object store.
    pub fn fs_root(&self) -> PathBuf {
        self.storage
            .fs_root
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("objects"))
    }
}

/// `CASEGATE_SERVER__LISTEN=…` → `server.listen`; nested sections use more
/// `__` (`CASEGATE_STORAGE__S3__BUCKET`). The value is read as a TOML value
/// when it parses as one (numbers, booleans, arrays), else — or when
/// `as_string` — as a string. Returns the dotted key when the value was
/// read as something other than a string.
fn apply_env(
    table: &mut toml::Table,
    name: &str,
    raw: &str,
    as_string: bool,
) -> Result<Option<String>, ConfigError> {
    let path: Vec<String> = name[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    let dotted = path.join(".");
    if path.iter().any(String::is_empty) {
        return Err(invalid(&dotted, format!("malformed variable name {name}")));
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|_| !as_string)
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let typed = (!value.is_str()).then(|| dotted.clone());
    let (last, sections) = path.split_last().ok_or_else(|| invalid(&dotted, "empty"))?;
    let mut cursor = table;
    for section in sections {
        let entry = cursor
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cursor = entry
            .as_table_mut()
            .ok_or_else(|| invalid(&dotted, format!("{section} is not a section")))?;
    }
    cursor.insert(last.clone(), value);
    Ok(typed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_spec() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(c.server.centre_listen.to_string(), "127.0.0.1:8444");
        assert_eq!(c.database.url, "sqlite://data/casegate.db");
        assert_eq!(c.keys.master_key_file, PathBuf::from("data/master.key"));
        assert_eq!(c.storage.backend, StorageBackend::Fs);
    }

    #[test]
    fn env_overrides_and_names_bad_keys() {
        let c = Config::load(
            None,
            env(&[
                ("CASEGATE_SERVER__LISTEN", "127.0.0.1:0"),
                ("CASEGATE_LIMITS__MAX_CONNECTIONS", "7"),
                ("CASEGATE_CA", "ignored.pem"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen.port(), 0);
        assert_eq!(c.limits.max_connections, 7);

        let err = Config::load(None, env(&[("CASEGATE_SERVER__LISTEN", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.listen"), "{err}");
        let err = Config::load(
            None,
            env(&[("CASEGATE_UPLOADS__TOKEN_TTL_SECS", "99999999999999")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("uploads.token_ttl_secs"), "{err}");
        // A string key whose value looks like a number is still a string.
        let c = Config::load(
            None,
            env(&[
                ("CASEGATE_STORAGE__BACKEND", "s3"),
                ("CASEGATE_STORAGE__S3__ENDPOINT", "http://127.0.0.1:3900"),
                ("CASEGATE_STORAGE__S3__REGION", "garage"),
                ("CASEGATE_STORAGE__S3__BUCKET", "2024"),
                ("CASEGATE_STORAGE__S3__ACCESS_KEY", "1e5"),
                ("CASEGATE_STORAGE__S3__SECRET_KEY", "true"),
            ]),
        )
        .unwrap();
        let s3 = c.storage.s3.unwrap();
        assert_eq!(
            (s3.bucket.as_str(), s3.access_key.as_str()),
            ("2024", "1e5")
        );
        let err = Config::load(None, env(&[("CASEGATE_SERVER__LISEN", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
        let err = Config::load(None, env(&[("CASEGATE_LIMITS__MAX_CONNECTIONS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.max_connections"), "{err}");
    }

    #[test]
    fn s3_parts_in_flight_are_bounded() {
        // An S3 store, with `storage.s3` keys added.
        let s3_with = |extra: &[(&str, &str)]| {
            let mut vars = env(&[
                ("CASEGATE_STORAGE__BACKEND", "s3"),
                ("CASEGATE_STORAGE__S3__ENDPOINT", "http://127.0.0.1:3900"),
                ("CASEGATE_STORAGE__S3__REGION", "garage"),
                ("CASEGATE_STORAGE__S3__BUCKET", "b"),
                ("CASEGATE_STORAGE__S3__ACCESS_KEY", "k"),
                ("CASEGATE_STORAGE__S3__SECRET_KEY", "s"),
            ]);
            for (k, v) in extra {
                vars.push((format!("CASEGATE_STORAGE__S3__{k}"), v.to_string()));
            }
            Config::load(None, vars)
        };
        let s3 = |parts: &str| match parts {
            "" => s3_with(&[]),
            parts => s3_with(&[("PARTS_IN_FLIGHT", parts)]),
        };
        let parts = |c: Config| c.storage.s3.map(|s3| s3.parts_in_flight);
        assert_eq!(parts(s3("").unwrap()), Some(2));
        assert_eq!(parts(s3("16").unwrap()), Some(16));
        for bad in ["0", "17", "-1", "two"] {
            let err = s3(bad).unwrap_err().to_string();
            assert!(err.contains("parts_in_flight"), "{bad}: {err}");
        }
        let c = s3("").unwrap();
        assert_eq!(c.storage.s3.map(|s3| s3.request_timeout_secs), Some(60));
        let err = s3_with(&[("REQUEST_TIMEOUT_SECS", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("request_timeout_secs"), "{err}");
    }

    #[test]
    fn connection_share_per_address() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.limits.connections_per_address(), 64);
        let c = Config::load(None, env(&[("CASEGATE_LIMITS__MAX_CONNECTIONS", "40")])).unwrap();
        assert_eq!(c.limits.connections_per_address(), 8);
        let c = Config::load(None, env(&[("CASEGATE_LIMITS__MAX_CONNECTIONS", "2")])).unwrap();
        assert_eq!(c.limits.connections_per_address(), 2);
        let c = Config::load(
            None,
            env(&[("CASEGATE_LIMITS__MAX_CONNECTIONS_PER_ADDRESS", "3")]),
        )
        .unwrap();
        assert_eq!(c.limits.connections_per_address(), 3);
        for bad in ["0", "1025", "-1", "many"] {
            let err = Config::load(
                None,
                env(&[("CASEGATE_LIMITS__MAX_CONNECTIONS_PER_ADDRESS", bad)]),
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("limits.max_connections_per_address") && !err.contains('\n'),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn example_file_equals_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/casegate.toml");
        let from_file = Config::load(Some(&path), env(&[])).unwrap();
        assert_eq!(
            format!("{from_file:?}"),
            format!("{:?}", Config::load(None, env(&[])).unwrap())
        );
    }
}
