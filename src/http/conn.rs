//! Per-connection and per-request facts the handlers and the audit log need:
//! the client's address, its certificate fingerprint (centre listener), and
//! a request id.

use std::net::SocketAddr;

/// Set once per TLS connection by the listener.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote_addr: SocketAddr,
    /// Lowercase hex SHA-256 of the client certificate, if one was presented.
    pub client_cert_sha256: Option<String>,
}

/// A random id per request: in the `x-request-id` response header, every
/// log line of the request, and its audit entries.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    pub fn generate() -> RequestId {
        RequestId(uuid::Uuid::new_v4().simple().to_string())
    }
}
