//! The local side of a fetch: the sealed object decrypted chunk by chunk
//! while hashing, checked against the manifest's SHA-256, and moved into
//! place.

use std::io::{Read, Write};
use std::path::Path;

use crate::crypto::FileKey;
use crate::crypto::format::{CHUNK_OVERHEAD, ChunkCipher, HEADER_LEN, Layout, ObjectHeader};

pub fn sha256_file(path: &Path) -> Result<String, String> {
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

/// Decrypts the sealed object at `part` into `dest`, verifying SHA-256.
pub fn decrypt_to(
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
