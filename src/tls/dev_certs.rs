//! Development certificates: on first start without `tls.cert`/`tls.key`, a
//! local CA (`dev-ca.pem`, key `dev-ca-key.pem`) and a server certificate for
//! localhost, 127.0.0.1, ::1 and the host of `server.public_url` are written
//! next to `tls.cert`. Clients trust `dev-ca.pem` (`--ca`, `curl --cacert`).
//! Production deployments configure their own certificate instead.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    #[error("tls.cert and tls.key must both exist or both be absent ({0} is missing)")]
    HalfPresent(String),
    #[error("development certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("development certificates: {0}")]
    Io(#[from] std::io::Error),
    #[error("development CA key {0}")]
    Permissions(#[from] crate::fsutil::SecretFileError),
}

pub const CA_FILE: &str = "dev-ca.pem";
pub const CA_KEY_FILE: &str = "dev-ca-key.pem";

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "casegate development CA");
    dn.push(DnType::OrganizationName, "casegate (development only)");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(3650);
    Ok(params)
}

/// Makes sure a server certificate exists; returns the CA path when it
/// generated one.
pub fn ensure(
    cert: &Path,
    key: &Path,
    extra_host: Option<&str>,
) -> Result<Option<PathBuf>, DevCertError> {
    match (cert.exists(), key.exists()) {
        (true, true) => return Ok(None),
        (true, false) => return Err(DevCertError::HalfPresent(key.display().to_string())),
        (false, true) => return Err(DevCertError::HalfPresent(cert.display().to_string())),
        (false, false) => {}
    }
    let dir = cert
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let ca_path = dir.join(CA_FILE);
    let ca_key_path = dir.join(CA_KEY_FILE);

    let ca_key = if ca_path.exists() && ca_key_path.exists() {
        fsutil::check_private(&ca_key_path)?;
        KeyPair::from_pem(&std::fs::read_to_string(&ca_key_path)?)?
    } else {
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params()?.self_signed(&ca_key)?;
        let _ = std::fs::remove_file(&ca_key_path);
        fsutil::create_secret_file(&ca_key_path, ca_key.serialize_pem().as_bytes())?;
        std::fs::write(&ca_path, ca_cert.pem())?;
        ca_key
    };
    let issuer = Issuer::new(ca_params()?, ca_key);

    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if let Some(host) = extra_host.filter(|h| !names.iter().any(|n| n == h)) {
        names.push(host.to_string());
    }
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "casegate development server");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(397);
    let server_key = KeyPair::generate()?;
    let server_cert = params.signed_by(&server_key, &issuer)?;
    fsutil::create_secret_file(key, server_key.serialize_pem().as_bytes())?;
    std::fs::write(cert, server_cert.pem())?;
    Ok(Some(ca_path))
}

/// The host part of an `https://host[:port]/…` URL, for the certificate.
pub fn host_of(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next();
    }
    authority.split(':').next().filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_parsing() {
        assert_eq!(
            host_of("https://gw.example.org:8443/x"),
            Some("gw.example.org")
        );
        assert_eq!(host_of("https://[::1]:8443"), Some("::1"));
        assert_eq!(host_of("http://x"), None);
    }

    #[test]
    fn generates_once_and_reuses_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (
            dir.path().join("server.pem"),
            dir.path().join("server-key.pem"),
        );
        let ca = ensure(&cert, &key, Some("gw.test")).unwrap().unwrap();
        let ca_pem = std::fs::read(&ca).unwrap();
        assert_eq!(ensure(&cert, &key, None).unwrap(), None);
        fsutil::check_private(&key).unwrap();
        std::fs::remove_file(&cert).unwrap();
        assert!(matches!(
            ensure(&cert, &key, None),
            Err(DevCertError::HalfPresent(_))
        ));
        std::fs::remove_file(&key).unwrap();
        ensure(&cert, &key, None).unwrap();
        assert_eq!(std::fs::read(&ca).unwrap(), ca_pem, "existing CA is kept");
    }
}
