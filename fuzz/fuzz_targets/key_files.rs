//! Key and certificate text that reaches the gateway: a centre's client
//! certificate PEM and X25519 public key (`casegate::service::centres`, from
//! the admin API and `admin centre register`), the master key file and its
//! `;`-separated environment form (`casegate::crypto::LocalMasterKeys`), and
//! the TLS certificate and key files (`casegate::tls::ServerIdentity`, then
//! the rustls configuration built from them). Every parser sees every input.
//!
//! Invariants: an accepted certificate is exactly one X.509 certificate
//! that survives a PEM round trip; an accepted X25519 key is the canonical
//! encoding of 32 non-zero bytes; accepted master keys have positive
//! versions, survive their own serialisation (a key wrapped before unwraps
//! after) and never show in their Debug output; a loaded TLS identity has
//! a certificate.
#![no_main]

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use casegate::crypto::{KeyEncryptionKey, LocalMasterKeys};
use casegate::service::centres::{parse_certificate, parse_x25519};
use casegate::tls::server_config::{ServerIdentity, main_listener};
use libfuzzer_sys::fuzz_target;

/// A private directory for the TLS files, made once per process.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("casegate-fuzz-key-files-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("{}: {e}", dir.display());
        }
        dir
    })
}

fn write_private(path: &PathBuf, data: &[u8]) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(data));
    if let Err(e) = file {
        panic!("{}: {e}", path.display());
    }
}

fn pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cert) = parse_certificate(text) {
            match parse_certificate(&pem(cert.as_ref())) {
                Ok(again) => assert_eq!(again.as_ref(), cert.as_ref()),
                Err(e) => panic!("an accepted certificate did not survive PEM: {e}"),
            }
            assert_eq!(casegate::tls::cert_sha256(&cert).len(), 64);
        }

        if let Ok(key) = parse_x25519(text) {
            assert_ne!(key, [0u8; 32]);
            assert_eq!(URL_SAFE_NO_PAD.encode(key), text.trim());
        }

        if let Ok(keys) = LocalMasterKeys::parse(text) {
            let versions = keys.versions();
            assert!(!versions.is_empty());
            assert!(versions.iter().all(|v| *v > 0));
            assert!(versions.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(keys.current_version(), versions[versions.len() - 1]);
            let serialized = keys.serialize();
            let again = match LocalMasterKeys::parse(&serialized) {
                Ok(k) => k,
                Err(e) => panic!("serialized master keys do not parse: {e}"),
            };
            assert_eq!(again.versions(), versions);
            let wrapped = keys.wrap(&[7u8; 32], b"fuzz");
            match again.unwrap(&wrapped, b"fuzz") {
                Ok(k) => assert_eq!(*k, [7u8; 32]),
                Err(_) => panic!("a key wrapped before serialisation did not unwrap after"),
            }
            let shown = format!("{keys:?}");
            for line in serialized.lines().filter(|l| !l.starts_with('#')) {
                if let Some((_, key)) = line.split_once(' ') {
                    assert!(!shown.contains(key), "Debug shows a master key");
                }
            }
        }
    }

    let dir = scratch();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    write_private(&cert, data);
    write_private(&key, data);
    if let Ok(identity) = ServerIdentity::load(&cert, &key) {
        assert!(!identity.chain.is_empty());
        let _ = main_listener(&identity);
    }
});
