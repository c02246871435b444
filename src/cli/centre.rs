//! `casegate centre keygen --out DIR`: what a reviewing centre needs to be
//! registered — a self-signed client certificate and key (casegate pins the
//! certificate by SHA-256, so no CA is involved) and an X25519 key pair for
//! sealed file keys.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Subcommand;

use crate::crypto::sealed_key;
use crate::fsutil;

#[derive(Debug, Subcommand)]
pub enum CentreCommand {
    /// Write centre.pem, centre-key.pem, x25519.key and x25519.pub into DIR.
    Keygen {
        #[arg(long)]
        out: PathBuf,
        /// Common name of the client certificate.
        #[arg(long, default_value = "casegate reviewing centre")]
        name: String,
    },
}

pub fn run(command: CentreCommand) -> Result<(), super::CliError> {
    match command {
        CentreCommand::Keygen { out, name } => Ok(keygen(&out, &name)?),
    }
}

fn keygen(out: &Path, name: &str) -> Result<(), String> {
    let files = ["centre.pem", "centre-key.pem", "x25519.key", "x25519.pub"];
    if let Some(existing) = files.iter().map(|f| out.join(f)).find(|p| p.exists()) {
        return Err(format!(
            "{} exists; refusing to overwrite keys",
            existing.display()
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(825);
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let (secret, public) = sealed_key::generate_keypair();
    let write_secret = |file: &str, text: &str| {
        fsutil::create_secret_file(&out.join(file), text.as_bytes())
            .map_err(|e| format!("{file}: {e}"))
    };
    std::fs::write(out.join("centre.pem"), cert.pem()).map_err(|e| e.to_string())?;
    write_secret("centre-key.pem", &key.serialize_pem())?;
    write_secret(
        "x25519.key",
        &format!("{}\n", URL_SAFE_NO_PAD.encode(secret.as_ref())),
    )?;
    std::fs::write(
        out.join("x25519.pub"),
        format!("{}\n", URL_SAFE_NO_PAD.encode(public)),
    )
    .map_err(|e| e.to_string())?;
    println!(
        "wrote {}/{{centre.pem, centre-key.pem, x25519.key, x25519.pub}}",
        out.display()
    );
    println!(
        "certificate sha256: {}",
        crate::tls::cert_sha256(cert.der())
    );
    println!("x25519 public key:  {}", URL_SAFE_NO_PAD.encode(public));
    Ok(())
}
