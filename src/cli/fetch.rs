//! `casegate fetch`: a reviewing centre downloads every file of its grant
//! end to end — the sealed object as stored, its file key sealed to the
//! centre's X25519 key — decrypts locally, verifies size and SHA-256, and
//! writes files under their original names grouped by category (and DICOM
//! study/series). An interrupted fetch resumes with Range requests; files
//! already fetched are skipped. Nothing is written outside `--out`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Args;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::crypto::format::{CHUNK_OVERHEAD, ChunkCipher, HEADER_LEN, Layout, ObjectHeader};
use crate::crypto::{FileKey, sealed_key};

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

/// One path component from a stored name: no separators, no `..`, no
/// control characters, never empty.
pub fn safe_component(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() || c == '\0' {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.').to_string();
    if trimmed.is_empty() {
        "unnamed".into()
    } else {
        trimmed.chars().take(200).collect()
    }
}

/// Where a file goes under `out`: `category/[study/series/]filename`.
pub fn destination(out: &Path, file: &Value) -> PathBuf {
    let mut path = out.join(safe_component(file["category"].as_str().unwrap_or("other")));
    if let Some(d) = file["dicom"].as_object() {
        for key in ["study_instance_uid", "series_instance_uid"] {
            if let Some(uid) = d.get(key).and_then(Value::as_str).filter(|u| !u.is_empty()) {
                path = path.join(safe_component(uid));
            }
        }
    }
    path.join(safe_component(
        file["filename"].as_str().unwrap_or("unnamed"),
    ))
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

async fn problem(resp: reqwest::Response) -> String {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    format!(
        "{status}: {}",
        body["detail"]
            .as_str()
            .or(body["code"].as_str())
            .unwrap_or("")
    )
}

fn sha256_file(path: &Path) -> Result<String, String> {
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(crate::tls::hex(ctx.finish().as_ref()))
}

/// Downloads (or resumes) the sealed object into `part`; returns the
/// sealed key header.
async fn download_sealed(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    part: &Path,
    sealed_size: u64,
    bar: &ProgressBar,
) -> Result<String, String> {
    let have = std::fs::metadata(part)
        .map(|m| m.len())
        .unwrap_or(0)
        .min(sealed_size);
    let mut req = client.get(url).bearer_auth(token);
    if have > 0 && have < sealed_size {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let resuming = resp.status() == reqwest::StatusCode::PARTIAL_CONTENT;
    if !resp.status().is_success() {
        return Err(problem(resp).await);
    }
    let sealed_key = resp
        .headers()
        .get("casegate-sealed-key")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Casegate-Sealed-Key header")?
        .to_owned();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resuming)
        .truncate(!resuming)
        .open(part)
        .map_err(|e| format!("{}: {e}", part.display()))?;
    bar.set_position(if resuming { have } else { 0 });
    let mut stream = resp.bytes_stream();
    while let Some(piece) = stream.next().await {
        let piece =
            piece.map_err(|e| format!("download interrupted: {e} (run fetch again to resume)"))?;
        file.write_all(&piece).map_err(|e| e.to_string())?;
        bar.inc(piece.len() as u64);
    }
    file.sync_all().map_err(|e| e.to_string())?;
    Ok(sealed_key)
}

/// Decrypts the sealed object at `part` into `dest`, verifying SHA-256.
fn decrypt_to(
    part: &Path,
    dest: &Path,
    key: &FileKey,
    case_id: &str,
    file_id: &str,
    size: u64,
    sha256: &str,
) -> Result<(), String> {
    let mut input = std::io::BufReader::new(std::fs::File::open(part).map_err(|e| e.to_string())?);
    let mut header = [0u8; HEADER_LEN];
    input.read_exact(&mut header).map_err(|e| e.to_string())?;
    let header = ObjectHeader::decode(&header).map_err(|e| e.to_string())?;
    let cipher = ChunkCipher::new(key, header, case_id, file_id).map_err(|e| e.to_string())?;
    let layout = Layout::new(header.chunk_size);
    let tmp = dest.with_extension("casegate-part");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(|e| e.to_string())?);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let count = layout.chunk_count(size);
    let mut buf = vec![0u8; header.chunk_size as usize + CHUNK_OVERHEAD];
    for index in 0..count {
        let n = layout.chunk_plain_len(index, size) as usize + CHUNK_OVERHEAD;
        input
            .read_exact(&mut buf[..n])
            .map_err(|_| "sealed object is truncated".to_string())?;
        let plain = cipher
            .open_in_place(index, index + 1 == count, &mut buf[..n])
            .map_err(|_| "decryption failed: the object was altered".to_string())?;
        ctx.update(plain);
        out.write_all(plain).map_err(|e| e.to_string())?;
    }
    let mut extra = [0u8; 1];
    if input.read(&mut extra).map_err(|e| e.to_string())? != 0 {
        return Err("sealed object is longer than expected".into());
    }
    out.flush().map_err(|e| e.to_string())?;
    let got = crate::tls::hex(ctx.finish().as_ref());
    if got != sha256 {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("SHA-256 mismatch: expected {sha256}, got {got}"));
    }
    std::fs::rename(&tmp, dest).map_err(|e| e.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape() {
        let out = Path::new("/tmp/out");
        for (name, cat) in [
            ("../../etc/passwd", "other"),
            ("..", "../x"),
            ("/abs/path", "a/b"),
            ("a\u{0}b", "other"),
            ("", ""),
        ] {
            let file = serde_json::json!({ "filename": name, "category": cat });
            let d = destination(out, &file);
            assert!(d.starts_with(out), "{d:?}");
            assert_eq!(
                d.components().count(),
                out.components().count() + 2,
                "{d:?}"
            );
            assert!(!d.components().any(|c| c.as_os_str() == ".."), "{d:?}");
        }
        let dicom = serde_json::json!({ "filename": "IM1", "category": "imaging_dicom",
            "dicom": { "study_instance_uid": "1.2", "series_instance_uid": "1.2.3" } });
        assert_eq!(
            destination(out, &dicom),
            Path::new("/tmp/out/imaging_dicom/1.2/1.2.3/IM1")
        );
    }
}
