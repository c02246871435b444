//! Sending files: a few at once (`--parallel`), each with its own loop —
//! create the upload (or find the gateway's offset for one already
//! started), stream the rest in one PATCH, and after any break ask the
//! gateway where it stands and go on from there. Network trouble, 5xx, 423
//! and 429 are retried with exponential backoff and jitter (the gateway's
//! `Retry-After` when it gives one); a vanished upload is started afresh;
//! a refused file is reported and the others go on; an expired or invalid
//! link stops the run, since every file would fail alike.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Url;

use super::body::{RateLimit, file_body};
use super::hashing::{Hasher, Hashing, hash_to};
use super::problem::{Failure, unreadable};
use super::progress::{FileBar, Progress};
use super::stall::Stall;
use super::state::{Entry, Phase, StateStore};
use super::tus::{Announce, Tus, filetype};
use super::walk::LocalFile;

/// Tries without progress before a file is given up (about 7 minutes of
/// waiting with the backoff below).
const MAX_ATTEMPTS: u32 = 12;
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What a file not tried after the run stopped says on the receipt.
pub const NOT_SENT: &str = "not sent: the run stopped";

pub struct Job {
    pub file: LocalFile,
    pub category: &'static str,
    pub dicom: bool,
    /// An upload started by an earlier run.
    pub resume: Option<Url>,
    /// The SHA-256 an earlier run computed when it saw `resume` take every
    /// byte (the manifest did not list it as complete yet).
    pub known_sha256: Option<String>,
    /// Its line in the receipt.
    pub line: usize,
}

#[derive(Debug)]
pub enum Outcome {
    /// Every byte is on the gateway; the SHA-256 computed while sending.
    Sent {
        sha256: String,
    },
    Failed(String),
    /// Not sent because the run stopped (the message says why).
    Stopped(String),
}

pub struct Sender {
    pub tus: Tus,
    pub state: StateStore,
    pub progress: Arc<Progress>,
    pub limit: Option<Arc<RateLimit>>,
    stopped: AtomicBool,
    stall: Arc<Stall>,
}

/// Where one file's upload stands between tries.
struct Attempt {
    url: Option<Url>,
    /// Just created: the offset is 0, no HEAD needed.
    fresh: bool,
    best_offset: u64,
    tries: u32,
    /// The file's hash as far as it was read, with marks to go back to.
    hashing: Hasher,
}

pub fn backoff(tries: u32) -> Duration {
    let base = Duration::from_secs(1u64 << tries.saturating_sub(1).min(6)).min(MAX_BACKOFF);
    // 50–100 % of the step, so many clients do not retry in step.
    let jitter = f64::from(crate::random::array::<1>()[0]) / 255.0;
    base.mul_f64(0.5 + jitter / 2.0)
}

/// A file that changed since it was found is not sent half old, half new.
fn unchanged(file: &LocalFile) -> Result<(), Failure> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&file.path).map_err(|e| unreadable(&file.shown, &e))?;
    if meta.len() == file.size && meta.mtime() * 1_000_000_000 + meta.mtime_nsec() == file.mtime_ns
    {
        return Ok(());
    }
    Err(Failure::File(format!(
        "{}: changed while it was being sent; run the same command again to send it as it is now",
        file.shown
    )))
}

impl Sender {
    pub fn new(
        tus: Tus,
        state: StateStore,
        progress: Arc<Progress>,
        limit: Option<Arc<RateLimit>>,
    ) -> Sender {
        Sender {
            tus,
            state,
            progress,
            limit,
            stopped: AtomicBool::new(false),
            stall: Arc::new(Stall::new()),
        }
    }

    /// Sends every job, `parallel` at a time; outcomes in job order.
    pub async fn send_all(&self, jobs: &[Job], parallel: usize) -> Vec<Outcome> {
        let mut outcomes: Vec<(usize, Outcome)> =
            futures_util::stream::iter(jobs.iter().enumerate())
                .map(|(i, job)| async move { (i, self.send_one(job).await) })
                .buffer_unordered(parallel.max(1))
                .collect()
                .await;
        outcomes.sort_by_key(|(i, _)| *i);
        outcomes.into_iter().map(|(_, o)| o).collect()
    }

    async fn send_one(&self, job: &Job) -> Outcome {
        if self.stopped.load(Ordering::SeqCst) {
            return Outcome::Stopped(NOT_SENT.into());
        }
        let shown = &job.file.shown;
        let bar = Arc::new(self.progress.file(shown, job.file.size));
        let mut at = Attempt {
            fresh: false,
            url: job.resume.clone(),
            best_offset: 0,
            tries: 0,
            hashing: Hashing::new(),
        };
        loop {
            let failure = match self.step(job, &mut at, &bar).await {
                Ok(Some(sha256)) => {
                    self.stall.file_sent();
                    bar.done("sent");
                    return Outcome::Sent { sha256 };
                }
                Ok(None) => continue,
                Err(f) => f,
            };
            match self.after_failure(failure, &mut at, shown) {
                Ok(wait) => tokio::time::sleep(wait).await,
                Err(outcome) => {
                    bar.abandon();
                    return outcome;
                }
            }
        }
    }

    /// What a failed try means: the pause before the next one, or the
    /// file's outcome (given up, or the whole run stops).
    fn after_failure(
        &self,
        failure: Failure,
        at: &mut Attempt,
        shown: &str,
    ) -> Result<Duration, Outcome> {
        let (why, after) = match failure {
            Failure::Stop(msg) => {
                self.stopped.store(true, Ordering::SeqCst);
                return Err(Outcome::Stopped(msg));
            }
            Failure::File(msg) => {
                self.progress.say(&format!("casegate: {msg}"));
                return Err(Outcome::Failed(msg));
            }
            Failure::Gone => {
                at.url = None;
                (
                    "the gateway no longer has the earlier upload; starting it again".into(),
                    Some(Duration::ZERO),
                )
            }
            Failure::Retry { why, after } => (why, after),
        };
        at.tries += 1;
        let run_over = if at.tries > MAX_ATTEMPTS {
            self.stall.file_given_up(&why)
        } else {
            self.stall.quiet_too_long(&why)
        };
        if let Some(msg) = run_over {
            self.stopped.store(true, Ordering::SeqCst);
            return Err(Outcome::Stopped(msg));
        }
        if at.tries > MAX_ATTEMPTS || self.stopped.load(Ordering::SeqCst) {
            let msg =
                format!("{shown}: not sent ({why}); run the same command again later to continue");
            self.progress.say(&format!("casegate: {msg}"));
            return Err(Outcome::Failed(msg));
        }
        let wait = after.unwrap_or_else(|| backoff(at.tries));
        if !wait.is_zero() {
            let secs = wait.as_secs().max(1);
            self.progress
                .say(&format!("{shown}: {why}; trying again in {secs}s"));
        }
        Ok(wait)
    }

    /// One try: the SHA-256 when the file is complete, `None` when the
    /// gateway took part of it and the next try goes on.
    async fn step(
        &self,
        job: &Job,
        at: &mut Attempt,
        bar: &Arc<FileBar>,
    ) -> Result<Option<String>, Failure> {
        let file = &job.file;
        unchanged(file)?;
        let url = self.upload_for(job, at).await?;
        let offset = self.offset_of(&url, file, at).await?;
        bar.start_at(offset);
        if let (true, Some(sha256)) = (offset == file.size, &job.known_sha256) {
            // The gateway holds every byte and is finishing the file.
            self.remember(file, Some(&url), Phase::Complete, Some(sha256))?;
            return Ok(Some(sha256.clone()));
        }
        hash_to(&file.path, &at.hashing, offset)
            .await
            .map_err(|e| unreadable(&file.shown, &e))?;
        if offset == file.size {
            return self.finished(file, &url, &at.hashing).map(Some);
        }
        at.hashing = Hashing::fork(&at.hashing);
        self.send_rest(file, &url, offset, &at.hashing, bar).await
    }

    /// Where the gateway stands with this upload (0 when just created).
    async fn offset_of(
        &self,
        url: &Url,
        file: &LocalFile,
        at: &mut Attempt,
    ) -> Result<u64, Failure> {
        let offset = if std::mem::take(&mut at.fresh) {
            0
        } else {
            self.tus.offset(url, &file.shown).await?
        };
        if offset > at.best_offset {
            at.best_offset = offset;
            at.tries = 0; // progress: a flaky line is not a dead one
            self.stall.progressed();
        }
        if offset > file.size {
            return Err(Failure::Gone);
        }
        Ok(offset)
    }

    /// One PATCH with the rest of the file from `offset`, hashed on the way
    /// on top of `hasher` (at `offset`).
    async fn send_rest(
        &self,
        file: &LocalFile,
        url: &Url,
        offset: u64,
        hasher: &Hasher,
        bar: &Arc<FileBar>,
    ) -> Result<Option<String>, Failure> {
        let left = file.size - offset;
        let body = file_body(
            &file.path,
            offset,
            left,
            Arc::clone(hasher),
            Arc::clone(bar),
            self.limit.clone(),
            Arc::clone(&self.stall),
        )
        .await
        .map_err(|e| unreadable(&file.shown, &e))?;
        let now = self
            .tus
            .append(url, offset, left, body, &file.shown)
            .await?;
        if now <= offset {
            // A 204 that took nothing: counted as a failed try (with a
            // pause), or a broken gateway would be asked again at once,
            // forever.
            return Err(Failure::Retry {
                why: "the gateway took none of the bytes sent".into(),
                after: None,
            });
        }
        self.stall.progressed();
        if now < file.size {
            return Ok(None);
        }
        self.finished(file, url, hasher).map(Some)
    }

    /// The upload this try continues, created when there is none.
    async fn upload_for(&self, job: &Job, at: &mut Attempt) -> Result<Url, Failure> {
        if let Some(url) = &at.url {
            return Ok(url.clone());
        }
        let file = &job.file;
        let announce = Announce {
            name: &file.name,
            size: file.size,
            category: job.category,
            filetype: filetype(&file.name, job.dicom),
        };
        let url = self.tus.create(&announce, &file.shown).await?;
        self.remember(file, Some(&url), Phase::Uploading, None)?;
        at.url = Some(url.clone());
        at.fresh = true;
        Ok(url)
    }

    fn finished(&self, file: &LocalFile, url: &Url, hasher: &Hasher) -> Result<String, Failure> {
        let sha256 = hasher
            .lock()
            .map(|h| h.hex())
            .map_err(|_| Failure::File("internal: hash state poisoned".into()))?;
        self.remember(file, Some(url), Phase::Complete, Some(&sha256))?;
        Ok(sha256)
    }

    fn remember(
        &self,
        file: &LocalFile,
        url: Option<&Url>,
        state: Phase,
        sha256: Option<&str>,
    ) -> Result<(), Failure> {
        self.state
            .record(
                &file.path,
                Entry {
                    size: file.size,
                    mtime_ns: file.mtime_ns,
                    // The path only: the same gateway may be reached
                    // under another address next time.
                    upload_url: url.map(|u| u.path().to_owned()),
                    state,
                    sha256: sha256.map(str::to_owned),
                },
            )
            .map_err(|e| Failure::Stop(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_minute_with_jitter() {
        for tries in 1..20 {
            let step = Duration::from_secs(1u64 << (tries - 1).min(6)).min(Duration::from_secs(60));
            let wait = backoff(tries);
            assert!(wait >= step / 2 && wait <= step, "{tries}: {wait:?}");
        }
    }
}
