//! One granted file, start to finish: skipped when it is already in place,
//! moved into place when an earlier fetch left it elsewhere under `--out`,
//! else downloaded sealed (or resumed), its key unsealed, decrypted,
//! verified and moved into place.

use std::path::Path;
use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use zeroize::Zeroizing;

use super::adopt::Earlier;
use super::decrypt::{DecryptError, decrypt_to, open_file_key, sha256_file};
use super::download::{Meter, download_sealed};
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
    /// Where an earlier fetch may have left files.
    pub earlier: Arc<Earlier>,
    pub bars: Bars,
}

/// The fetch's progress display: a bar per file being downloaded and one
/// for the whole grant (bytes, rate, time left).
pub struct Bars {
    multi: MultiProgress,
    pub total: ProgressBar,
    style: ProgressStyle,
}

impl Bars {
    pub fn new() -> Bars {
        let multi = MultiProgress::new();
        let total = multi.add(
            ProgressBar::new(0).with_style(
                ProgressStyle::with_template(
                    "{msg:40!} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta} left",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
        );
        total.set_message("all files");
        Bars {
            multi,
            total,
            style: ProgressStyle::with_template(
                "{msg:40!} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        }
    }

    fn file(&self, len: u64, shown: &str) -> ProgressBar {
        self.multi.insert_before(
            &self.total,
            ProgressBar::new(len)
                .with_style(self.style.clone())
                .with_message(shown.to_owned()),
        )
    }

    /// A line above the bars (they are redrawn below it).
    pub fn println(&self, line: String) {
        if self.multi.is_hidden() {
            eprintln!("{line}");
        } else {
            let _ = self.multi.println(line);
        }
    }
}

pub enum Landed {
    Fetched,
    AlreadyThere,
    /// Found where an earlier fetch put it, moved to its place now.
    Moved,
}

/// Whether `dest` already holds exactly this file.
fn in_place(dest: &Path, file: &GrantedFile) -> Result<bool, String> {
    match std::fs::metadata(dest) {
        Ok(m) if m.is_file() && m.len() == file.size => Ok(sha256_file(dest)? == file.sha256),
        _ => Ok(false),
    }
}

/// Runs file work (hashing, decrypting, syncing) on a blocking thread, so
/// the other files' downloads go on meanwhile.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, FileError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| FileError::from(format!("internal: {e}")))
}

pub async fn fetch_one(
    session: &Session<'_>,
    file: &GrantedFile,
    dest: &Path,
    shown: &str,
) -> Result<Landed, FileError> {
    if off_runtime({
        let (dest, file) = (dest.to_owned(), file.clone());
        move || in_place(&dest, &file)
    })
    .await??
    {
        session.bars.total.inc(file.sealed_size);
        return Ok(Landed::AlreadyThere);
    }
    if let Some(parent) = dest.parent() {
        crate::fsutil::private_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    if off_runtime({
        let (earlier, file, dest) = (session.earlier.clone(), file.clone(), dest.to_owned());
        move || earlier.adopt(&file, &dest)
    })
    .await?
    {
        session.bars.total.inc(file.sealed_size);
        return Ok(Landed::Moved);
    }
    session.partials.ensure()?;
    let sealed = session.partials.sealed(&file.file_id);
    let bar = session.bars.file(file.sealed_size, shown);
    let url = format!(
        "{}/api/v1/grant/files/{}/sealed",
        session.base, file.file_id
    );
    let downloaded = download_sealed(
        &session.client,
        &url,
        session.token,
        &sealed,
        file,
        Meter {
            file: &bar,
            total: &session.bars.total,
        },
    )
    .await;
    bar.finish_and_clear();
    let sealed_key_header = downloaded?;
    unseal_into_place(session, file, sealed, sealed_key_header, dest).await
}

/// Opens the downloaded object's sealed key, decrypts and verifies it into
/// `dest`; the sealed download goes once it is used or found bad.
async fn unseal_into_place(
    session: &Session<'_>,
    file: &GrantedFile,
    sealed: std::path::PathBuf,
    sealed_key_header: String,
    dest: &Path,
) -> Result<Landed, FileError> {
    let info = sealed_key::info(&session.grant_id, &session.case_id, file.file_id.as_str());
    let landed = off_runtime({
        let secret = session.secret.clone();
        let (plain, dest) = (session.partials.plain(&file.file_id), dest.to_owned());
        let (sealed, case_id, file) = (sealed.clone(), session.case_id.clone(), file.clone());
        move || {
            open_file_key(&secret, &info, &sealed, &sealed_key_header)
                .and_then(|key| decrypt_to(&sealed, &plain, &dest, &key, &case_id, &file))
        }
    })
    .await?;
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
