//! The body of a running download: object windows read from the store,
//! decrypted (plaintext route) or passed through (sealed route), with the
//! grant re-checked every two seconds so a revocation or expiry cuts it,
//! and an audit entry when it ends or is cut.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;

use super::state::AppState;
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::crypto::format::{ChunkCipher, Decryptor, ReadError};
use crate::db::{self, centres::CentreRow, grants::GrantRow};
use crate::ids::FileId;
use crate::store::object_key;

/// Plaintext per store read while streaming: 16 chunks.
const WINDOW: u64 = 16 * 64 * 1024;
/// Object bytes per store read on the sealed route (passed through as
/// stored, so bigger reads cost no decryption latency).
const SEALED_WINDOW: u64 = 2 * WINDOW;
const RECHECK: Duration = Duration::from_secs(2);
/// A download lease without a heartbeat for this long belongs to a gateway
/// that died; its bytes are settled at its last recorded progress. A live
/// download beats every `RECHECK` while its client reads.
pub const LEASE_TTL_SECS: i64 = 120;

/// How the bytes of a download are charged to a file's budget of
/// `max_downloads × size`: plaintext bytes as they are; bytes of the sealed
/// object scaled to the plaintext size (rounded down, at least 1), so a
/// whole sealed download costs exactly one plaintext download and the two
/// representations can be mixed.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub kind: Kind,
    /// Plaintext size of the file.
    pub size: u64,
    /// Length of the representation served (plaintext size or object length).
    pub total: u64,
}

impl Budget {
    pub fn charge(&self, bytes: u64) -> i64 {
        let units = match self.kind {
            Kind::Plaintext => bytes,
            Kind::Sealed if bytes == 0 || self.total == 0 => 0,
            Kind::Sealed => {
                let scaled = u128::from(bytes) * u128::from(self.size) / u128::from(self.total);
                u64::try_from(scaled).unwrap_or(u64::MAX).max(1)
            }
        };
        i64::try_from(units).unwrap_or(i64::MAX)
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Plaintext,
    Sealed,
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Plaintext => "plaintext",
            Kind::Sealed => "sealed",
        }
    }
}

struct Streaming {
    state: AppState,
    ctx: RequestContext,
    grant: GrantRow,
    centre: CentreRow,
    file_id: FileId,
    span: std::ops::Range<u64>,
    at: u64,
    kind: Kind,
    /// Reads the object's plaintext by range, with the chunk size of the
    /// header the cipher was built for.
    object: Arc<Decryptor>,
    /// The next window, read (and decrypted) while this one is sent.
    ahead: Option<ReadAhead>,
    checked: Instant,
    done: bool,
    /// The rest of the current window, handed out in small frames so the
    /// grant is re-checked even while a slow client drains a window.
    pending: Bytes,
    /// Bytes actually handed to the connection.
    sent: u64,
    /// The lease on the file's download budget, settled at `sent` when the
    /// download ends, is cut, or its body is dropped.
    lease: i64,
    budget: Budget,
}

/// Largest body frame: a slow client pulls a new frame (and so triggers a
/// grant re-check) at least this often.
const FRAME: usize = 64 * 1024;

impl Streaming {
    async fn still_allowed(&mut self) -> Result<(), String> {
        if self.checked.elapsed() < RECHECK {
            return Ok(());
        }
        self.checked = Instant::now();
        let now = self.state.now().unix_timestamp();
        let charge = self.budget.charge(self.sent);
        match db::grants::heartbeat(&self.state.db, self.lease, charge, now).await {
            Ok(true) => {}
            Ok(false) => return Err("download lease expired".into()),
            Err(e) => tracing::warn!(error = %e, "download progress not recorded"),
        }
        let grant = db::grants::get(&self.state.db, &self.grant.grant_id)
            .await
            .map_err(|e| e.to_string())?;
        match grant {
            Some(g) if g.revoked_at.is_none() && g.expires_at > self.state.timestamp() => Ok(()),
            Some(g) if g.revoked_at.is_some() => Err("grant revoked during the download".into()),
            _ => Err("grant expired during the download".into()),
        }
    }

    fn read(&self, range: std::ops::Range<u64>) -> ReadAhead {
        let (state, kind, object) = (self.state.clone(), self.kind, self.object.clone());
        let key = object_key(&self.grant.case_id, &self.file_id);
        ReadAhead(tokio::spawn(async move {
            read_window(&state, &key, kind, &object, range).await
        }))
    }

    /// The window at `at`, and the read of the one after it started.
    async fn next_piece(&mut self) -> Result<Bytes, String> {
        let window = match self.kind {
            Kind::Sealed => SEALED_WINDOW,
            Kind::Plaintext => WINDOW,
        };
        let end = (self.at + window).min(self.span.end);
        let current = match self.ahead.take() {
            Some(ahead) => ahead,
            None => self.read(self.at..end),
        };
        if end < self.span.end {
            self.ahead = Some(self.read(end..(end + window).min(self.span.end)));
        }
        let bytes = current.wait().await?;
        if bytes.len() as u64 != end - self.at {
            return Err("stored object shorter than expected".into());
        }
        self.at = end;
        Ok(bytes)
    }

    async fn finish(&mut self, outcome: Outcome, reason: String) {
        self.done = true;
        let closing = Closing::of(self);
        closing.run(outcome, reason).await;
    }
}

/// What it takes to end a download after its body is gone: settle the
/// lease at the bytes sent and write the end (or cut) entry, in one
/// transaction.
struct Closing {
    state: AppState,
    ctx: RequestContext,
    entry: NewEntry,
    lease: i64,
    charge: i64,
    complete: bool,
}

impl Closing {
    fn of(s: &Streaming) -> Closing {
        Closing {
            state: s.state.clone(),
            ctx: s.ctx.clone(),
            entry: NewEntry::new(
                match s.kind {
                    Kind::Plaintext => "download.plaintext",
                    Kind::Sealed => "download.sealed",
                },
                Outcome::Allow,
            )
            .case(&s.grant.case_id)
            .centre(&s.centre.centre_id)
            .grant(&s.grant.grant_id)
            .file(&s.file_id),
            lease: s.lease,
            charge: s.budget.charge(s.sent),
            complete: s.at >= s.span.end && s.pending.is_empty(),
        }
    }

    async fn run(self, outcome: Outcome, reason: String) {
        let mut entry = self.entry.reason(reason);
        entry.outcome = outcome;
        let result = async {
            let mut tx = self.state.begin().await?;
            db::grants::settle(&mut tx, self.lease, self.charge, !self.complete)
                .await
                .map_err(super::error::ApiError::from)?;
            self.state.commit_audited(tx, &self.ctx, entry).await
        }
        .await;
        if let Err(e) = result {
            // The lease is settled later from its last heartbeat.
            tracing::error!(error = %e, "download end not recorded");
        }
    }
}

impl Drop for Streaming {
    /// A body dropped before its end (the client went away, the connection
    /// broke, the server shut down) still settles its lease and gets its
    /// audit entry.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let closing = Closing::of(self);
        let reason = format!("cut after {} bytes: the client went away", self.sent);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(closing.run(Outcome::Deny, reason));
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn stream_body(
    state: AppState,
    ctx: RequestContext,
    grant: GrantRow,
    centre: CentreRow,
    file_id: FileId,
    size: u64,
    span: std::ops::Range<u64>,
    kind: Kind,
    cipher: ChunkCipher,
    lease: i64,
    budget: Budget,
) -> Body {
    let at = span.start;
    let s = Streaming {
        state,
        ctx,
        grant,
        centre,
        file_id,
        span,
        at,
        kind,
        object: Arc::new(Decryptor::from_cipher(cipher, size)),
        ahead: None,
        checked: Instant::now(),
        done: false,
        pending: Bytes::new(),
        sent: 0,
        lease,
        budget,
    };
    let stream = futures_util::stream::unfold(s, |mut s| async move {
        if s.done {
            return None;
        }
        if s.pending.is_empty() && s.at >= s.span.end {
            let sent = s.sent;
            s.finish(Outcome::Allow, format!("end: {sent} bytes sent"))
                .await;
            return None;
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
                let sent = s.sent;
                s.finish(Outcome::Deny, format!("cut after {sent} bytes: {why}"))
                    .await;
                Some((Err(std::io::Error::other(why)), s))
            }
        }
    });
    Body::from_stream(stream)
}

/// A window read on another task; dropping it stops the read.
struct ReadAhead(tokio::task::JoinHandle<Result<Bytes, String>>);

impl ReadAhead {
    async fn wait(mut self) -> Result<Bytes, String> {
        (&mut self.0)
            .await
            .map_err(|e| format!("window read failed: {e}"))?
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
    range: std::ops::Range<u64>,
) -> Result<Bytes, String> {
    let bytes = match kind {
        Kind::Sealed => state
            .store
            .get_range(key, range)
            .await
            .map_err(|e| e.to_string())?,
        Kind::Plaintext => object
            .read_range(range, |r| state.store.get_range(key, r))
            .await
            .map_err(|e| match e {
                ReadError::Fetch(e) => e.to_string(),
                ReadError::Format(e) => format!("stored object does not decrypt: {e}"),
            })?,
    };
    Ok(Bytes::from(bytes))
}
