//! The checkpoint signing key: Ed25519, PKCS#8 in a PEM file created with
//! mode 0600 on the first start (beside the master key by default) and
//! refused when group or others can read it.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::Ed25519KeyPair;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use zeroize::Zeroizing;

use crate::fsutil::{self, SecretFileError};

/// Why the signing key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("audit signing key {0}")]
    Permissions(#[from] SecretFileError),
    #[error("audit signing key {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit signing key {}: not an Ed25519 PKCS#8 PEM private key", .0.display())]
    Format(PathBuf),
}

/// Loads the key at `path`, creating it (0600) if there is none yet.
pub fn load_or_create(path: &Path) -> Result<Ed25519KeyPair, SigningKeyError> {
    if !path.exists() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| SigningKeyError::Format(path.into()))?;
        let pem = Zeroizing::new(pem_of(pkcs8.as_ref()));
        fsutil::create_secret_file(path, pem.as_bytes()).map_err(|source| SigningKeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        tracing::info!(path = %path.display(), "audit checkpoint signing key created");
    }
    load(path)
}

/// Loads the key at `path`; it must exist and be private.
pub fn load(path: &Path) -> Result<Ed25519KeyPair, SigningKeyError> {
    fsutil::check_private(path)?;
    let pem = Zeroizing::new(std::fs::read(path).map_err(|source| SigningKeyError::Io {
        path: path.to_owned(),
        source,
    })?);
    let Ok(PrivateKeyDer::Pkcs8(der)) = PrivateKeyDer::from_pem_slice(&pem) else {
        return Err(SigningKeyError::Format(path.to_owned()));
    };
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
        .map_err(|_| SigningKeyError::Format(path.to_owned()))
}

fn pem_of(der: &[u8]) -> String {
    let b64 = Zeroizing::new(STANDARD.encode(der));
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::KeyPair;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-signing.key");
        let first = load_or_create(&path).unwrap();
        let again = load_or_create(&path).unwrap();
        assert_eq!(first.public_key().as_ref(), again.public_key().as_ref());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = load_or_create(&path).unwrap_err().to_string();
        assert!(refused.contains("chmod 600"), "{refused}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(load(&path), Err(SigningKeyError::Format(_))));
    }
}
