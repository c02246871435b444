//! rustls server configurations: TLS 1.3 and 1.2 (AEAD suites only, which
//! is all the ring provider offers for 1.2), ALPN h2 and http/1.1.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::client_verifier::PinnedClientCertVerifier;
use crate::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("tls.cert {path}: {message}")]
    Cert { path: String, message: String },
    #[error("tls.key {path}: {message}")]
    Key { path: String, message: String },
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

pub struct ServerIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl ServerIdentity {
    pub fn load(cert: &Path, key: &Path) -> Result<ServerIdentity, TlsSetupError> {
        let cert_err = |message: String| TlsSetupError::Cert {
            path: cert.display().to_string(),
            message,
        };
        let key_err = |message: String| TlsSetupError::Key {
            path: key.display().to_string(),
            message,
        };
        let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| cert_err(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| cert_err(e.to_string()))?;
        if chain.is_empty() {
            return Err(cert_err("no certificate in file".into()));
        }
        fsutil::check_private(key).map_err(|e| key_err(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| key_err(e.to_string()))?;
        Ok(ServerIdentity { chain, key })
    }
}

fn builder() -> Result<rustls::ConfigBuilder<ServerConfig, rustls::WantsVerifier>, rustls::Error> {
    ServerConfig::builder_with_provider(super::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
}

fn finish(mut config: ServerConfig) -> Arc<ServerConfig> {
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The main listener: never requests a client certificate.
pub fn main_listener(identity: &ServerIdentity) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let config = builder()?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    Ok(finish(config))
}

/// The centre listener: requests (but does not require) a client certificate.
pub fn centre_listener(identity: &ServerIdentity) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let provider = super::provider();
    let config = builder()?
        .with_client_cert_verifier(PinnedClientCertVerifier::new(&provider))
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    Ok(finish(config))
}
