//! The local side of a fetch: the file key unsealed in memory, the sealed
//! object decrypted chunk by chunk while hashing into a temporary file,
//! checked against the manifest's size and SHA-256, and only then moved
//! into place. Unverified plaintext never stays behind, and the key is
//! never written anywhere (it is zeroized when dropped).

use std::io::{BufWriter, Read, Write};
use std::path::Path;

use zeroize::Zeroizing;

use super::manifest::GrantedFile;
use crate::crypto::format::{Decryptor, HEADER_LEN, ObjectHeader, StreamError};
use crate::crypto::{FileKey, sealed_key};

/// Why a file did not land.
#[derive(Debug)]
pub enum DecryptError {
    /// The sealed download is not the object the grant describes: it is
    /// discarded, so the next run downloads it afresh.
    BadObject(String),
    /// Local trouble (disk, permissions, a folder in the way): the sealed
    /// download is kept for the next run.
    Local(String),
    /// The centre's X25519 key does not open the sealed file key: no other
    /// file will open either.
    WrongKey,
}

fn local(path: &Path) -> impl Fn(std::io::Error) -> DecryptError + '_ {
    move |e| DecryptError::Local(format!("{}: {e}", path.display()))
}

pub fn sha256_file(path: &Path) -> Result<String, String> {
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    sha256_read(&mut f)
}

/// SHA-256 (lowercase hex) of everything `f` still has to give.
pub fn sha256_read(f: &mut impl Read) -> Result<String, String> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(crate::hex::encode(ctx.finish().as_ref()))
}

fn read_header(sealed: &Path) -> Result<[u8; HEADER_LEN], DecryptError> {
    let mut header = [0u8; HEADER_LEN];
    std::fs::File::open(sealed)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(local(sealed))?;
    Ok(header)
}

/// Unseals the file key delivered with the download (in memory only).
pub fn open_file_key(
    secret: &Zeroizing<[u8; 32]>,
    info: &[u8],
    sealed: &Path,
    sealed_key_header: &str,
) -> Result<FileKey, DecryptError> {
    let header = read_header(sealed)?;
    let key_id = ObjectHeader::decode(&header)
        .map_err(|e| DecryptError::BadObject(e.to_string()))?
        .key_id;
    let dek = sealed_key::open(
        secret,
        info,
        &header,
        &sealed_key::decode(sealed_key_header)
            .map_err(|_| DecryptError::Local("malformed sealed key".into()))?,
    )
    .map_err(|_| DecryptError::WrongKey)?;
    if dek.len() != 32 {
        return Err(DecryptError::Local(
            "sealed key has the wrong length".into(),
        ));
    }
    let mut secret = Zeroizing::new([0u8; 32]);
    secret.copy_from_slice(&dek);
    Ok(FileKey::from_parts(key_id, *secret))
}

/// Decrypts the sealed object at `sealed` through `plain` into `dest`,
/// verifying size and SHA-256. `plain` is gone afterwards, whatever happens.
pub fn decrypt_to(
    sealed: &Path,
    plain: &Path,
    dest: &Path,
    key: &FileKey,
    case_id: &str,
    file: &GrantedFile,
) -> Result<(), DecryptError> {
    let result = decrypt_into(sealed, plain, key, case_id, file)
        .and_then(|()| std::fs::rename(plain, dest).map_err(local(dest)));
    if result.is_err() {
        let _ = std::fs::remove_file(plain);
    }
    result
}

fn decrypt_into(
    sealed: &Path,
    plain: &Path,
    key: &FileKey,
    case_id: &str,
    file: &GrantedFile,
) -> Result<(), DecryptError> {
    let bad = |m: &str| DecryptError::BadObject(m.to_owned());
    let mut input = std::io::BufReader::new(std::fs::File::open(sealed).map_err(local(sealed))?);
    let mut header = [0u8; HEADER_LEN];
    input.read_exact(&mut header).map_err(local(sealed))?;
    let object = Decryptor::new(key, &header, case_id, file.file_id.as_str(), file.size)
        .map_err(|e| bad(&e.to_string()))?;
    if object.object_len() != file.sealed_size {
        return Err(bad("the sealed object does not match the grant's sizes"));
    }
    let mut out = BufWriter::new(crate::fsutil::private_file(plain, true).map_err(local(plain))?);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    // Plaintext goes to the temporary file only; it is moved into place
    // after the last chunk verified and the SHA-256 matched.
    object
        .read_all(&mut input, |chunk| {
            ctx.update(chunk);
            out.write_all(chunk)
        })
        .map_err(|e| match e {
            StreamError::Input(e) => local(sealed)(e),
            StreamError::Output(e) => local(plain)(e),
            StreamError::Format(_) => bad("decryption failed: the object was altered"),
            other => bad(&other.to_string()),
        })?;
    let got = crate::hex::encode(ctx.finish().as_ref());
    if got != file.sha256 {
        return Err(DecryptError::BadObject(format!(
            "SHA-256 mismatch: expected {}, got {got}",
            file.sha256
        )));
    }
    out.into_inner()
        .map_err(|e| local(plain)(e.into_error()))?
        .sync_all()
        .map_err(local(plain))
}
