//! TLS: server configurations for the two listeners, the "any certificate,
//! but prove the key" client verifier of the centre listener, and the
//! development certificates generated on first start.

pub mod client_verifier;
pub mod dev_certs;
pub mod server_config;

use rustls::pki_types::CertificateDer;

/// Lowercase hex SHA-256 of a certificate's DER: how centres are pinned.
pub fn cert_sha256(der: &CertificateDer<'_>) -> String {
    crate::hex::encode(ring::digest::digest(&ring::digest::SHA256, der.as_ref()).as_ref())
}

/// The crypto provider of every TLS endpoint: ring, nothing else.
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
