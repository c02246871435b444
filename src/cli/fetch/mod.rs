//! `casegate fetch`: a reviewing centre downloads every file of its grant
//! end to end — the sealed object as stored, its file key sealed to the
//! centre's X25519 key — decrypts locally, verifies size and SHA-256, and
//! writes files under their original names grouped by category (and DICOM
//! study/series). An interrupted fetch resumes with Range requests; files
//! already fetched are skipped. Nothing is written outside `--out`.

mod decrypt;
mod download;
mod names;

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::crypto::format::{HEADER_LEN, ObjectHeader};
use crate::crypto::{FileKey, sealed_key};
use decrypt::{decrypt_to, sha256_file};
use download::{download_sealed, problem};
use names::destination;

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The gateway's centre listener, e.g. https://gateway.example.org:8444
    #[arg(long)]
    server: String,
    /// The grant token.
    #[arg(long, env = "CASEGATE_GRANT")]
    grant: String,
    /// The centre's client certificate (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// The centre's X25519 secret key (base64url, from `centre keygen`).
    #[arg(long = "x25519-key")]
    x25519_key: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// A PEM CA to trust (else the system trust store).
    #[arg(long, env = "CASEGATE_CA")]
    ca: Option<PathBuf>,
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn client(args: &FetchArgs) -> Result<reqwest::Client, String> {
    let mut identity = read(&args.cert)?;
    identity.extend_from_slice(b"\n");
    identity.extend_from_slice(&read(&args.key)?);
    let mut builder = reqwest::Client::builder().identity(
        reqwest::Identity::from_pem(&identity)
            .map_err(|e| format!("client certificate/key: {e}"))?,
    );
    if let Some(ca) = &args.ca {
        builder = builder.tls_built_in_root_certs(false).add_root_certificate(
            reqwest::Certificate::from_pem(&read(ca)?)
                .map_err(|e| format!("{}: {e}", ca.display()))?,
        );
    }
    builder.build().map_err(|e| e.to_string())
}

fn x25519_secret(path: &Path) -> Result<Zeroizing<[u8; 32]>, String> {
    crate::fsutil::check_private(path)?;
    let text = Zeroizing::new(
        String::from_utf8(read(path)?).map_err(|_| "x25519 key is not text".to_string())?,
    );
    let raw = Zeroizing::new(
        URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| "x25519 key is not base64url".to_string())?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    if raw.len() != 32 {
        return Err("x25519 key must be 32 bytes".into());
    }
    key.copy_from_slice(&raw);
    Ok(key)
}

pub async fn run(args: FetchArgs) -> Result<(), String> {
    let secret = x25519_secret(&args.x25519_key)?;
    let client = client(&args)?;
    let base = args.server.trim_end_matches('/');
    let resp = client
        .get(format!("{base}/api/v1/grant"))
        .bearer_auth(&args.grant)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("grant: {}", problem(resp).await));
    }
    let grant: Value = resp.json().await.map_err(|e| e.to_string())?;
    let (grant_id, case_id) = (
        grant["grant_id"].as_str().unwrap_or(""),
        grant["case_id"].as_str().unwrap_or(""),
    );
    let files = grant["files"].as_array().cloned().unwrap_or_default();
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let style =
        ProgressStyle::with_template("{msg:40!} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut fetched = 0;
    for file in &files {
        let file_id = file["file_id"]
            .as_str()
            .ok_or("grant lists a file without id")?;
        let size = file["size"]
            .as_u64()
            .ok_or("grant lists a file without size")?;
        let sealed_size = file["sealed_size"]
            .as_u64()
            .ok_or("grant lists a file without sealed_size")?;
        let sha256 = file["sha256"]
            .as_str()
            .ok_or("grant lists a file without sha256")?;
        let dest = destination(&args.out, file);
        if !dest.starts_with(&args.out) {
            return Err(format!("refusing to write outside {}", args.out.display()));
        }
        if dest.exists()
            && std::fs::metadata(&dest).map(|m| m.len()).ok() == Some(size)
            && sha256_file(&dest)? == sha256
        {
            continue;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let part = dest.with_extension("casegate-sealed");
        let bar = ProgressBar::new(sealed_size)
            .with_style(style.clone())
            .with_message(file["filename"].as_str().unwrap_or(file_id).to_owned());
        let url = format!("{base}/api/v1/grant/files/{file_id}/sealed");
        let sealed_key_header =
            download_sealed(&client, &url, &args.grant, &part, sealed_size, &bar).await?;
        bar.finish();
        let object_header = {
            let mut h = [0u8; HEADER_LEN];
            std::fs::File::open(&part)
                .and_then(|mut f| f.read_exact(&mut h))
                .map_err(|e| e.to_string())?;
            h
        };
        let dek = sealed_key::open(
            &secret,
            &sealed_key::info(grant_id, case_id, file_id),
            &object_header,
            &sealed_key::decode(&sealed_key_header).map_err(|_| "malformed sealed key")?,
        )
        .map_err(|_| "the sealed file key does not open with this X25519 key")?;
        let key_id = ObjectHeader::decode(&object_header)
            .map_err(|e| e.to_string())?
            .key_id;
        let file_key = FileKey::from_parts(
            key_id,
            dek.as_slice()
                .try_into()
                .map_err(|_| "sealed key has the wrong length")?,
        );
        decrypt_to(&part, &dest, &file_key, case_id, file_id, size, sha256)?;
        drop(file_key);
        let _ = std::fs::remove_file(&part);
        fetched += 1;
    }
    eprintln!(
        "{fetched} of {} files fetched into {} (others were already there)",
        files.len(),
        args.out.display()
    );
    Ok(())
}
