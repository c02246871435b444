//! One granted file, start to finish: skipped when it is already in place,
//! else downloaded sealed (or resumed), its key unsealed, decrypted,
//! verified and moved into place.

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use zeroize::Zeroizing;

use super::decrypt::{DecryptError, decrypt_to, open_file_key, sha256_file};
use super::download::download_sealed;
use super::manifest::GrantedFile;
use super::partial::Partials;
use super::problem::FileError;
use crate::crypto::sealed_key;

/// What every file of one fetch shares.
pub struct Session<'a> {
    pub client: reqwest::Client,
    pub base: &'a str,
    pub token: &'a str,
    pub secret: Zeroizing<[u8; 32]>,
    pub grant_id: String,
    pub case_id: String,
    pub partials: Partials,
    pub style: ProgressStyle,
}

pub enum Landed {
    Fetched,
    AlreadyThere,
}

/// Whether `dest` already holds exactly this file.
fn in_place(dest: &Path, file: &GrantedFile) -> Result<bool, String> {
    match std::fs::metadata(dest) {
        Ok(m) if m.is_file() && m.len() == file.size => Ok(sha256_file(dest)? == file.sha256),
        _ => Ok(false),
    }
}

pub async fn fetch_one(
    session: &Session<'_>,
    file: &GrantedFile,
    dest: &Path,
    shown: &str,
) -> Result<Landed, FileError> {
    if in_place(dest, file)? {
        return Ok(Landed::AlreadyThere);
    }
    if let Some(parent) = dest.parent() {
        crate::fsutil::private_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    session.partials.ensure()?;
    let sealed = session.partials.sealed(&file.file_id);
    let bar = ProgressBar::new(file.sealed_size)
        .with_style(session.style.clone())
        .with_message(shown.to_owned());
    let url = format!(
        "{}/api/v1/grant/files/{}/sealed",
        session.base, file.file_id
    );
    let downloaded = download_sealed(
        &session.client,
        &url,
        session.token,
        &sealed,
        file.sealed_size,
        &bar,
    )
    .await;
    bar.finish_and_clear();
    let sealed_key_header = downloaded?;
    let info = sealed_key::info(&session.grant_id, &session.case_id, file.file_id.as_str());
    let landed =
        open_file_key(&session.secret, &info, &sealed, &sealed_key_header).and_then(|key| {
            decrypt_to(
                &sealed,
                &session.partials.plain(&file.file_id),
                dest,
                &key,
                &session.case_id,
                file,
            )
        });
    match landed {
        Ok(()) => {
            let _ = std::fs::remove_file(&sealed);
            Ok(Landed::Fetched)
        }
        Err(DecryptError::BadObject(why)) => {
            let _ = std::fs::remove_file(&sealed);
            Err(format!(
                "{why}; the sealed download was discarded (run fetch again to download it afresh)"
            )
            .into())
        }
        Err(DecryptError::Local(why)) => Err(why.into()),
        Err(DecryptError::WrongKey) => Err(FileError {
            message: "the sealed file key does not open with this X25519 key".into(),
            stop: true,
        }),
    }
}
