//! A PATCH body streamed from the file on disk: read in pieces from an
//! offset, each piece hashed (the receipt's local SHA-256) and counted on
//! the progress bars as it goes, optionally held to `--max-rate`. Memory
//! is one piece, whatever the file's size.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::hashing::Hasher;
use super::progress::FileBar;
use super::stall::Stall;

const PIECE: usize = 256 * 1024;

/// Bytes per second for the whole run, shared by every file.
pub struct RateLimit {
    per_sec: u64,
    start: Instant,
    sent: Mutex<u64>,
}

impl RateLimit {
    pub fn new(per_sec: u64) -> Arc<RateLimit> {
        Arc::new(RateLimit {
            per_sec: per_sec.max(1),
            start: Instant::now(),
            sent: Mutex::new(0),
        })
    }

    /// How long to wait before sending `n` more bytes.
    fn pause_for(&self, n: u64) -> Duration {
        let Ok(mut sent) = self.sent.lock() else {
            return Duration::ZERO;
        };
        *sent += n;
        let due = Duration::from_secs_f64(*sent as f64 / self.per_sec as f64);
        due.saturating_sub(self.start.elapsed())
    }
}

struct Reading {
    file: tokio::fs::File,
    left: u64,
    hasher: Hasher,
    bar: Arc<FileBar>,
    limit: Option<Arc<RateLimit>>,
    stall: Arc<Stall>,
}

/// The body for a PATCH of `len` bytes of `path` from `offset`.
pub async fn file_body(
    path: &Path,
    offset: u64,
    len: u64,
    hasher: Hasher,
    bar: Arc<FileBar>,
    limit: Option<Arc<RateLimit>>,
    stall: Arc<Stall>,
) -> std::io::Result<reqwest::Body> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let reading = Reading {
        file,
        left: len,
        hasher,
        bar,
        limit,
        stall,
    };
    let stream = futures_util::stream::unfold(reading, |mut r| async move {
        if r.left == 0 {
            return None;
        }
        let want = r.left.min(PIECE as u64) as usize;
        let mut buf = vec![0u8; want];
        let n = match r.file.read(&mut buf).await {
            Ok(0) => {
                r.left = 0;
                let e = std::io::Error::other("the file got shorter while it was being sent");
                return Some((Err(e), r));
            }
            Ok(n) => n,
            Err(e) => {
                r.left = 0;
                return Some((Err(e), r));
            }
        };
        buf.truncate(n);
        if let Some(limit) = &r.limit {
            tokio::time::sleep(limit.pause_for(n as u64)).await;
        }
        if let Ok(mut hashing) = r.hasher.lock() {
            hashing.update(&buf);
        }
        r.left -= n as u64;
        r.bar.advance(n as u64);
        // The connection takes the next piece only once the last one is
        // out: the line is alive, however long this one PATCH lasts.
        r.stall.progressed();
        Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), r))
    });
    Ok(reqwest::Body::wrap_stream(stream))
}
