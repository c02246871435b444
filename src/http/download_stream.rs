//! The body of a running download: object windows read from the store,
//! decrypted (plaintext route) or passed through (sealed route), with the
//! grant re-checked every two seconds so a revocation or expiry cuts it,
//! and an audit entry when it ends or is cut. A body may send several
//! pieces of the file with framing bytes between them ([`Piece`]: a
//! DICOMweb frames answer), all under the download's one lease.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;

use super::state::AppState;
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::crypto::format::{Decryptor, FormatError, ReadError};
use crate::ids::FileId;
use crate::service::downloads::{Download, Kind, Lease, Stop};
use crate::service::principal::{CentreRow, GrantRow};
use crate::store::{StoreError, object_key};

/// Plaintext per store read while streaming: 1 MiB, a whole number of
/// chunks for every allowed chunk size (powers of two up to 1 MiB): 16
/// chunks at the default 64 KiB. Windows end on chunk boundaries
/// (`window_end`), so each chunk is read and decrypted once.
const WINDOW: u64 = 1024 * 1024;
/// Object bytes per store read on the sealed route (passed through as
/// stored, so bigger reads cost no decryption latency).
const SEALED_WINDOW: u64 = 2 * WINDOW;
/// How often a running download records its progress and re-checks its
/// grant.
const RECHECK: Duration = Duration::from_secs(2);

struct Streaming {
    state: AppState,
    ctx: RequestContext,
    grant: GrantRow,
    centre: CentreRow,
    file_id: FileId,
    /// The file piece being sent (`at` is how far it got).
    span: Range<u64>,
    at: u64,
    /// What comes after it.
    pieces: VecDeque<Piece>,
    kind: Kind,
    /// The audit action of its end (or cut) entry.
    action: &'static str,
    /// Reads the object's plaintext by range, with the chunk size of the
    /// header the cipher was built for.
    object: Arc<Decryptor>,
    /// The next window, read (and decrypted) while this one is sent.
    ahead: Option<ReadAhead>,
    checked: Instant,
    /// Whether progress was recorded since the first frame: it is, at once,
    /// so a gateway that dies early leaves a lease that says bytes went out
    /// (a lease that sent nothing gives its download start back).
    beaten: bool,
    /// Whether the lease's settling started (at the end, a cut or the
    /// drop): it starts once.
    done: bool,
    /// The rest of the current window, handed out in small frames so the
    /// grant is re-checked even while a slow client drains a window.
    pending: Bytes,
    /// Bytes actually handed to the connection.
    sent: u64,
    /// The lease on the file's download budget, settled at `sent` when the
    /// download ends, is cut, or its body is dropped.
    lease: Lease,
}

/// Why a running download's body is cut; the text is the cut's audit
/// reason (after "cut after N bytes: ").
#[derive(Debug, thiserror::Error)]
enum Cut {
    /// The grant or the lease no longer allows it.
    #[error(transparent)]
    Stopped(#[from] Stop),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("stored object does not decrypt: {0}")]
    Decrypt(#[from] FormatError),
    #[error("stored object shorter than expected")]
    Short,
    #[error("window read failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<ReadError<StoreError>> for Cut {
    fn from(e: ReadError<StoreError>) -> Cut {
        match e {
            ReadError::Fetch(e) => Cut::Store(e),
            ReadError::Format(e) => Cut::Decrypt(e),
        }
    }
}

/// Largest body frame: a slow client pulls a new frame (and so triggers a
/// grant re-check) at least this often.
const FRAME: usize = 64 * 1024;

impl Streaming {
    async fn still_allowed(&mut self) -> Result<(), Cut> {
        let first_beat = !self.beaten && self.sent > 0;
        if !first_beat && self.checked.elapsed() < RECHECK {
            return Ok(());
        }
        self.beaten |= self.sent > 0;
        self.checked = Instant::now();
        // The reason becomes the cut's audit entry, like a failed read's.
        Ok(self.lease.recheck(&self.state.services, self.sent).await?)
    }

    fn read(&self, range: Range<u64>) -> ReadAhead {
        let (state, kind, object) = (self.state.clone(), self.kind, self.object.clone());
        let key = object_key(&self.grant.case_id, &self.file_id);
        ReadAhead(tokio::spawn(async move {
            read_window(&state, &key, kind, &object, range).await
        }))
    }

    /// Where the window that starts at `from` ends. Plaintext windows end
    /// on a chunk boundary (when one lies inside the window), so a range
    /// that starts mid-chunk has only its first window unaligned and no
    /// chunk is fetched and decrypted twice.
    fn window_end(&self, from: u64) -> u64 {
        let end = match self.kind {
            Kind::Sealed => from + SEALED_WINDOW,
            Kind::Plaintext => {
                let end = from + WINDOW;
                let chunk = u64::from(self.object.header().chunk_size);
                let aligned = end - end % chunk;
                if aligned > from { aligned } else { end }
            }
        };
        end.min(self.span.end)
    }

    /// The window at `at`, and the read of the one after it started.
    async fn next_piece(&mut self) -> Result<Bytes, Cut> {
        let end = self.window_end(self.at);
        let current = match self.ahead.take() {
            Some(ahead) => ahead,
            None => self.read(self.at..end),
        };
        if end < self.span.end {
            self.ahead = Some(self.read(end..self.window_end(end)));
        }
        let bytes = current.wait().await?;
        if bytes.len() as u64 != end - self.at {
            return Err(Cut::Short);
        }
        self.at = end;
        Ok(bytes)
    }

    /// The body reached its end, every byte of it handed to hyper: the
    /// lease is settled as complete and the end entry written.
    async fn end(&mut self) {
        let reason = format!("end: {} bytes sent", self.sent);
        self.close(true, Outcome::Allow, reason).await;
    }

    /// The body stops short (`why`): the lease is settled as cut and the
    /// cut entry written.
    async fn cut(&mut self, why: &Cut) {
        let reason = format!("cut after {} bytes: {why}", self.sent);
        self.close(false, Outcome::Deny, reason).await;
    }

    /// Settles the lease and writes the entry, once: `done` keeps the drop
    /// from settling again, and the settling runs on a task of its own,
    /// so a body dropped while it waits for it (the client went away, the
    /// connection was cut, the database was slow) does not stop it half
    /// way and leave the lease, and the file's budget with it, to the
    /// stale sweep. Waited for, so the body ends only once its end is
    /// recorded.
    async fn close(&mut self, complete: bool, outcome: Outcome, reason: String) {
        self.done = true;
        if let Some(task) = Closing::of(self, complete).spawn(outcome, reason)
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "download end task failed");
        }
    }
}

/// What it takes to end a download after its body is gone: the lease,
/// settled at the bytes sent, and the end (or cut) entry.
struct Closing {
    state: AppState,
    ctx: RequestContext,
    entry: NewEntry,
    lease: Lease,
    sent: u64,
    complete: bool,
}

impl Closing {
    fn of(s: &Streaming, complete: bool) -> Closing {
        Closing {
            state: s.state.clone(),
            ctx: s.ctx.clone(),
            entry: NewEntry::new(s.action, Outcome::Allow)
                .case(&s.grant.case_id)
                .centre(&s.centre.centre_id)
                .grant(&s.grant.grant_id)
                .file(&s.file_id),
            lease: s.lease.clone(),
            sent: s.sent,
            complete,
        }
    }

    /// Runs [`Closing::run`] on a task of its own; `None` outside a
    /// runtime (nothing is settled then; the stale sweep will).
    fn spawn(self, outcome: Outcome, reason: String) -> Option<tokio::task::JoinHandle<()>> {
        let rt = tokio::runtime::Handle::try_current().ok()?;
        Some(rt.spawn(self.run(outcome, reason)))
    }

    async fn run(self, outcome: Outcome, reason: String) {
        let mut entry = self.entry.reason(reason);
        entry.outcome = outcome;
        self.lease
            .close(
                &self.state.services,
                &self.ctx,
                entry,
                self.sent,
                self.complete,
            )
            .await;
    }
}

impl Drop for Streaming {
    /// A body dropped before its end (the client went away, the connection
    /// broke, the server shut down) still settles its lease and gets its
    /// audit entry. Dropped owing nothing at all, it ended: hyper drops a
    /// body with a `Content-Length` (HTTP/1.1) as soon as its last byte is
    /// written, without polling it to its end.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let owed = Owed::of(self.at..self.span.end, &self.pending, &self.pieces);
        let (outcome, reason) = match owed {
            Owed::Nothing => (Outcome::Allow, format!("end: {} bytes sent", self.sent)),
            Owed::Framing => (
                Outcome::Deny,
                format!(
                    "cut after {} bytes: all file bytes handed to the connection, delivery unconfirmed",
                    self.sent
                ),
            ),
            Owed::FileBytes => (
                Outcome::Deny,
                format!("cut after {} bytes: the client went away", self.sent),
            ),
        };
        // A drop cannot wait: the task finishes on its own.
        let _ = Closing::of(self, owed == Owed::Nothing).spawn(outcome, reason);
    }
}

/// What a dropped body still owed. Only a body that owed nothing is
/// complete. One dropped after its last file byte but before its framing
/// (a multipart answer's closing delimiter; such answers are chunked, so
/// hyper polls them to their end) is a cut: that happens only when the
/// connection was back-pressured (HTTP/2: no WINDOW_UPDATE, then
/// RST_STREAM), so its last frames may never have been delivered.
#[derive(Debug, PartialEq, Eq)]
enum Owed {
    Nothing,
    Framing,
    FileBytes,
}

impl Owed {
    fn of(left: Range<u64>, pending: &Bytes, rest: &VecDeque<Piece>) -> Owed {
        let file = |p: &Piece| matches!(p, Piece::File(r) if !r.is_empty());
        if !left.is_empty() || !pending.is_empty() || rest.iter().any(file) {
            Owed::FileBytes
        } else if rest.is_empty() {
            Owed::Nothing
        } else {
            Owed::Framing
        }
    }
}

/// What a download's body sends, in order.
pub enum Piece {
    /// Plaintext (or object) bytes of the file, charged to the lease.
    File(Range<u64>),
    /// Bytes around them that are not the file's (a multipart answer's
    /// part heads and delimiters), not charged.
    Framing(Bytes),
}

/// The body of a download the grant service started: its span.
pub fn stream_body(
    state: AppState,
    ctx: RequestContext,
    grant: GrantRow,
    centre: CentreRow,
    download: Download,
) -> Body {
    let pieces = vec![Piece::File(download.span.clone())];
    stream_pieces(state, ctx, (grant, centre), download, pieces)
}

/// The body of a download the grant service started: `pieces`, whose
/// file bytes the download's lease covers.
pub fn stream_pieces(
    state: AppState,
    ctx: RequestContext,
    (grant, centre): (GrantRow, CentreRow),
    download: Download,
    pieces: Vec<Piece>,
) -> Body {
    let s = Streaming {
        state,
        ctx,
        grant,
        centre,
        file_id: download.file_id,
        at: 0,
        span: 0..0,
        pieces: pieces.into(),
        kind: download.kind,
        action: download.action,
        object: Arc::new(Decryptor::from_cipher(download.cipher, download.size)),
        ahead: None,
        checked: Instant::now(),
        beaten: false,
        done: false,
        pending: Bytes::new(),
        sent: 0,
        lease: download.lease,
    };
    let stream = futures_util::stream::unfold(s, |mut s| async move {
        if s.done {
            return None;
        }
        while s.pending.is_empty() && s.at >= s.span.end {
            match s.pieces.pop_front() {
                // An empty chunk would end a chunked HTTP/1.1 body early.
                Some(Piece::Framing(bytes)) if bytes.is_empty() => {}
                Some(Piece::Framing(bytes)) => return Some((Ok(bytes), s)),
                Some(Piece::File(range)) => {
                    s.at = range.start;
                    s.span = range;
                    s.ahead = None;
                }
                None => {
                    s.end().await;
                    return None;
                }
            }
        }
        let mut step = s.still_allowed().await;
        if step.is_ok() && s.pending.is_empty() {
            step = s.next_piece().await.map(|bytes| s.pending = bytes);
        }
        match step {
            Ok(()) => {
                let frame = s.pending.split_to(FRAME.min(s.pending.len()));
                s.sent += frame.len() as u64;
                Some((Ok(frame), s))
            }
            Err(why) => {
                s.cut(&why).await;
                Some((Err(std::io::Error::other(why)), s))
            }
        }
    });
    Body::from_stream(stream)
}

/// A window read on another task; dropping it stops the read.
struct ReadAhead(tokio::task::JoinHandle<Result<Bytes, Cut>>);

impl ReadAhead {
    async fn wait(mut self) -> Result<Bytes, Cut> {
        (&mut self.0).await?
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads `range` of the file: object bytes as stored (sealed route) or the
/// plaintext, decrypting only the chunks the range touches.
async fn read_window(
    state: &AppState,
    key: &str,
    kind: Kind,
    object: &Decryptor,
    range: Range<u64>,
) -> Result<Bytes, Cut> {
    let bytes = match kind {
        Kind::Sealed => state.services.store.get_range(key, range).await?,
        Kind::Plaintext => {
            object
                .read_range(range, |r| state.services.store.get_range(key, r))
                .await?
        }
    };
    Ok(Bytes::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(text: &'static str) -> Piece {
        Piece::Framing(Bytes::from_static(text.as_bytes()))
    }

    #[test]
    fn only_a_body_dropped_owing_nothing_is_complete() {
        // A frames answer whose last frame was handed to hyper; only the
        // part's CRLF and the closing delimiter were still owed: a cut.
        let owed: VecDeque<Piece> = vec![framing("\r\n"), framing("--b--\r\n")].into();
        assert_eq!(Owed::of(100..100, &Bytes::new(), &owed), Owed::Framing);
        // A plain download whose last byte was written (hyper drops a
        // Content-Length body then): complete.
        let empty: VecDeque<Piece> = VecDeque::new();
        assert_eq!(Owed::of(100..100, &Bytes::new(), &empty), Owed::Nothing);
        // File bytes still owed: in the current piece, its window, or a
        // piece to come.
        assert_eq!(Owed::of(90..100, &Bytes::new(), &owed), Owed::FileBytes);
        let window = Bytes::from_static(b"rest");
        assert_eq!(Owed::of(100..100, &window, &empty), Owed::FileBytes);
        let more: VecDeque<Piece> = vec![framing("\r\n"), Piece::File(200..300)].into();
        assert_eq!(Owed::of(100..100, &Bytes::new(), &more), Owed::FileBytes);
    }
}
