//! Layered configuration: embedded defaults, then an optional TOML file, then
//! `CASEGATE_<SECTION>__<KEY>` environment variables. Parsed and validated
//! once at start (`load.rs`); every error names the offending key in one line.

use std::net::SocketAddr;
use std::path::PathBuf;

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
    pub audit: AuditConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub centre_listen: SocketAddr,
    pub public_url: String,
    pub allowed_origins: Vec<String>,
    /// Origins of browser viewers (OHIF and the like) allowed to call the
    /// centre listener's grant routes and DICOMweb with credentials.
    pub centre_allowed_origins: Vec<String>,
    pub data_dir: PathBuf,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    pub shutdown_grace_secs: u64,
    /// Load balancers whose connections start with a PROXY protocol v2
    /// header naming the real client (both listeners). Only these may
    /// send one, and they must.
    pub trusted_proxies: Vec<IpNetwork>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
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
    /// Parts of one upload sent at once while the next fills (1 to
    /// [`MAX_PARTS_IN_FLIGHT`]); each holds a part's bytes in memory.
    #[serde(default = "default_parts_in_flight")]
    pub parts_in_flight: usize,
    /// How long one request to the store may take before it is given up
    /// (and retried, like any transport failure).
    #[serde(default = "default_s3_request_timeout_secs")]
    pub request_timeout_secs: u64,
}

fn default_s3_request_timeout_secs() -> u64 {
    60
}

/// The most `storage.s3.parts_in_flight` accepts.
pub const MAX_PARTS_IN_FLIGHT: usize = 16;

fn default_parts_in_flight() -> usize {
    2
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
            .field("parts_in_flight", &self.parts_in_flight)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .finish()
    }
}

/// An S3 endpoint and the keys for it, without a bucket: where checkpoint
/// copies are written when they should not use `storage.s3`'s keys.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Connection {
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: Secret,
    #[serde(default = "default_true")]
    pub path_style: bool,
}

impl std::fmt::Debug for S3Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Connection")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &"<redacted>")
            .field("secret_key", &"<redacted>")
            .field("path_style", &self.path_style)
            .finish()
    }
}

impl From<&S3Config> for S3Connection {
    fn from(c: &S3Config) -> S3Connection {
        S3Connection {
            endpoint: c.endpoint.clone(),
            region: c.region.clone(),
            access_key: c.access_key.clone(),
            secret_key: c.secret_key.clone(),
            path_style: c.path_style,
        }
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
    /// Concurrent connections one client address (IPv6: one /64) may hold
    /// per listener, so no address can take every connection; further ones
    /// are closed at accept. Unset: [`LimitsConfig::connections_per_address`].
    pub max_connections_per_address: Option<usize>,
    pub tls_handshake_timeout_secs: u64,
    /// Time a client gets to send a request's headers (slowloris guard); also
    /// bounds how long an idle keep-alive connection is held.
    pub header_read_timeout_secs: u64,
    /// Whole-request deadline on JSON API routes.
    pub request_timeout_secs: u64,
    pub json_body_bytes: usize,
    /// `Tus-Max-Size`: the largest single upload.
    pub max_upload_bytes: u64,
    /// Denied requests (401, 403, …) from one address within a minute
    /// before it gets 429 for the rest of that minute.
    pub auth_failures_per_minute: u32,
}

impl LimitsConfig {
    /// The per-address connection share: the configured one, else
    /// max(8, max_connections / 16) — a sixteenth of the listener, but room
    /// for a browser's or `fetch --jobs`'s parallel connections even on a
    /// small listener — never more than `max_connections`.
    pub fn connections_per_address(&self) -> usize {
        self.max_connections_per_address
            .unwrap_or_else(|| (self.max_connections / 16).max(8))
            .min(self.max_connections)
    }
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// While entries arrive, a signed checkpoint at least this often.
    pub checkpoint_interval_secs: u64,
    /// Where each checkpoint is also copied, as `<size>.checkpoint`, never
    /// overwritten: a directory, or `s3://bucket/prefix` (over
    /// `checkpoint_copy_s3`, else `storage.s3`'s endpoint and keys).
    pub checkpoint_copy: Option<String>,
    /// The endpoint and keys of `s3://` copies, when they should not be
    /// the object store's (keys that may only put and get in the copy
    /// bucket).
    pub checkpoint_copy_s3: Option<S3Connection>,
    /// S3 copies only: keep each copy under Object Lock (compliance mode)
    /// for this many days. Unset: no retention headers.
    pub checkpoint_copy_retention_days: Option<u32>,
    /// The checkpoint signing key (Ed25519, PKCS#8 PEM, mode 0600); created
    /// on first start. Unset: `audit-signing.key` beside the master key file.
    pub signing_key_file: Option<PathBuf>,
    /// The log's name in checkpoints and the key name of its signatures.
    /// Unset: `<host of server.public_url>/casegate-audit`.
    pub origin: Option<String>,
    /// Unknown or malformed bearer tokens from one address within one
    /// limiting window (60 s) that raise `alert.token_guessing` (one per
    /// address and window). A window sees at most
    /// `limits.auth_failures_per_minute` of them, so the lower of the two
    /// applies.
    pub alert_token_guesses: u32,
}

/// `s3://bucket/prefix` split into bucket and prefix (without slashes at
/// its ends); `None` if it is not such a URL or names no bucket.
pub fn parse_s3_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if bucket.len() < 3 || bucket.len() > 63 || !bucket.chars().all(valid) {
        return None;
    }
    Some((bucket.to_owned(), prefix.trim_matches('/').to_owned()))
}

impl AuditConfig {
    /// The origin line of checkpoints, also the signing key's name.
    pub fn origin(&self, public_url: &str) -> String {
        self.origin.clone().unwrap_or_else(|| {
            let host = public_url
                .strip_prefix("https://")
                .unwrap_or(public_url)
                .split(['/', '?', '#', ':'])
                .next()
                .filter(|h| !h.is_empty())
                .unwrap_or("localhost");
            format!("{host}/casegate-audit")
        })
    }
}

impl Config {
    /// The endpoint and keys of `s3://` checkpoint copies: their own
    /// section, else the object store's.
    pub fn checkpoint_copy_connection(&self) -> Option<S3Connection> {
        self.audit
            .checkpoint_copy_s3
            .clone()
            .or_else(|| self.storage.s3.as_ref().map(S3Connection::from))
    }

    /// The checkpoint signing key file: configured, else beside the
    /// master key file.
    pub fn audit_signing_key_file(&self) -> PathBuf {
        self.audit.signing_key_file.clone().unwrap_or_else(|| {
            self.keys
                .master_key_file
                .parent()
                .unwrap_or(std::path::Path::new(""))
                .join("audit-signing.key")
        })
    }

    /// The origin of this gateway's audit log.
    pub fn audit_origin(&self) -> String {
        self.audit.origin(&self.server.public_url)
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_interval_secs: 60,
            checkpoint_copy: None,
            checkpoint_copy_s3: None,
            checkpoint_copy_retention_days: None,
            signing_key_file: None,
            origin: None,
            alert_token_guesses: 10,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            centre_listen: SocketAddr::from(([127, 0, 0, 1], 8444)),
            public_url: "https://localhost:8443".into(),
            allowed_origins: Vec::new(),
            centre_allowed_origins: Vec::new(),
            data_dir: PathBuf::from("data"),
            shutdown_grace_secs: 20,
            trusted_proxies: Vec::new(),
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
            max_connections_per_address: None,
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

mod database;
mod load;
mod network;
mod validate;

pub use database::{DatabaseConfig, redacted_url};
pub use load::ConfigError;
pub use network::IpNetwork;

#[cfg(test)]
mod s3_url_tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_prefix() {
        assert_eq!(
            parse_s3_url("s3://audit-copies/casegate/prod/"),
            Some(("audit-copies".into(), "casegate/prod".into()))
        );
        assert_eq!(
            parse_s3_url("s3://audit-copies"),
            Some(("audit-copies".into(), String::new()))
        );
        for bad in [
            "s3://",
            "s3:///x",
            "s3://Upper/x",
            "s3://a_b/x",
            "/dir",
            "s3://ab",
        ] {
            assert_eq!(parse_s3_url(bad), None, "{bad}");
        }
    }
}
