//! Layered configuration: embedded defaults, then an optional TOML file, then
//! `CASEGATE_<SECTION>__<KEY>` environment variables. Parsed and validated
//! once at start; every error names the offending key in one line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration. Unknown keys are errors, so a typo never
/// silently falls back to a default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub database: DatabaseConfig,
    pub storage: StorageConfig,
    pub keys: KeysConfig,
    pub limits: LimitsConfig,
    pub uploads: UploadsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub centre_listen: SocketAddr,
    pub public_url: String,
    pub allowed_origins: Vec<String>,
    pub data_dir: PathBuf,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    /// Directory of the `fs` backend; default `<data_dir>/objects`.
    pub fs_root: Option<PathBuf>,
    pub s3: Option<S3Config>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    Fs,
    S3,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: Secret,
    #[serde(default = "default_true")]
    pub path_style: bool,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key", &"<redacted>")
            .field("secret_key", &"<redacted>")
            .field("path_style", &self.path_style)
            .finish()
    }
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    pub master_key_file: PathBuf,
    /// The master key versions themselves (`<version> <base64url>` entries
    /// separated by `;`), normally from `CASEGATE_KEYS__MASTER_KEY`. When
    /// set, `master_key_file` is not used.
    pub master_key: Option<Secret>,
}

/// A configuration value that must never be printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Concurrent TLS connections per listener; further ones are closed at once.
    pub max_connections: usize,
    pub tls_handshake_timeout_secs: u64,
    /// Time a client gets to send a request's headers (slowloris guard); also
    /// bounds how long an idle keep-alive connection is held.
    pub header_read_timeout_secs: u64,
    /// Whole-request deadline on JSON API routes.
    pub request_timeout_secs: u64,
    pub json_body_bytes: usize,
    /// `Tus-Max-Size`: the largest single upload.
    pub max_upload_bytes: u64,
    /// Failed authentications from one address within a minute before it
    /// gets 429 for the rest of that minute.
    pub auth_failures_per_minute: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// How long a patient's upload token may upload after it is issued.
    pub token_ttl_secs: u64,
    /// An unfinished upload expires this long after its last PATCH; its
    /// stored parts are then removed.
    pub upload_ttl_secs: u64,
    /// A PATCH whose body stalls this long is ended (what arrived is kept).
    pub body_idle_timeout_secs: u64,
    /// Inside one long PATCH, take a durable point every this many bytes
    /// (a PATCH with a checksum is durable only at its end).
    pub sync_every_bytes: u64,
    /// Per-case quota: total declared bytes of all files.
    pub max_case_bytes: u64,
    /// Per-case quota: number of files (finished or not).
    pub max_case_files: u64,
    /// Per-case quota: PATCH requests running at once.
    pub max_concurrent_uploads: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            centre_listen: SocketAddr::from(([127, 0, 0, 1], 8444)),
            public_url: "https://localhost:8443".into(),
            allowed_origins: Vec::new(),
            data_dir: PathBuf::from("data"),
            shutdown_grace_secs: 20,
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: PathBuf::from("certs/server.pem"),
            key: PathBuf::from("certs/server-key.pem"),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://data/casegate.db".into(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: StorageBackend::Fs,
            fs_root: None,
            s3: None,
        }
    }
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            master_key_file: PathBuf::from("data/master.key"),
            master_key: None,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 1024,
            tls_handshake_timeout_secs: 10,
            header_read_timeout_secs: 15,
            request_timeout_secs: 30,
            json_body_bytes: 64 * 1024,
            max_upload_bytes: 64 * 1024 * 1024 * 1024,
            auth_failures_per_minute: 30,
        }
    }
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig {
            token_ttl_secs: 30 * 24 * 3600,
            upload_ttl_secs: 7 * 24 * 3600,
            body_idle_timeout_secs: 60,
            sync_every_bytes: 64 * 1024 * 1024,
            max_case_bytes: 256 * 1024 * 1024 * 1024,
            max_case_files: 20_000,
            max_concurrent_uploads: 8,
        }
    }
}

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

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
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
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Syntax {
                        path: path.to_owned(),
                        message: e.message().to_owned(),
                    })?
            }
            None => toml::Table::new(),
        };
        let overrides: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
            .collect();
        for (name, raw) in overrides {
            apply_env(&mut table, &name, &raw)?;
        }
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                invalid(&key, e.into_inner().message().to_owned())
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.server.public_url.starts_with("https://") {
            return Err(invalid("server.public_url", "must start with https://"));
        }
        for origin in &self.server.allowed_origins {
            if !(origin.starts_with("https://") || origin.starts_with("http://")) {
                return Err(invalid(
                    "server.allowed_origins",
                    format!("{origin:?} is not an origin (scheme://host[:port])"),
                ));
            }
        }
        if !self.database.url.starts_with("sqlite:") {
            return Err(invalid(
                "database.url",
                "only sqlite: URLs are supported by this build",
            ));
        }
        if self.storage.backend == StorageBackend::S3 && self.storage.s3.is_none() {
            return Err(invalid(
                "storage.s3",
                "storage.backend = \"s3\" needs a [storage.s3] section",
            ));
        }
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
/// when it parses as one (numbers, booleans, arrays), else as a string.
fn apply_env(table: &mut toml::Table, name: &str, raw: &str) -> Result<(), ConfigError> {
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
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
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
    Ok(())
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
    fn example_file_equals_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/casegate.toml");
        let from_file = Config::load(Some(&path), env(&[])).unwrap();
        assert_eq!(
            format!("{from_file:?}"),
            format!("{:?}", Config::load(None, env(&[])).unwrap())
        );
    }
}
