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
use crate::crypto::format::{ChunkCipher, DEFAULT_CHUNK_SIZE, Layout, decrypt_planned, plan_range};
use crate::db::{self, centres::CentreRow, grants::GrantRow};
use crate::ids::FileId;
use crate::store::object_key;

/// Plaintext per store read while streaming: 16 chunks.
const WINDOW: u64 = 16 * 64 * 1024;
/// Object bytes per store read on the sealed route (passed through as
/// stored, so bigger reads cost no decryption latency).
const SEALED_WINDOW: u64 = 2 * WINDOW;
const RECHECK: Duration = Duration::from_secs(2);

#[derive(Clone, Copy)]
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
    size: u64,
    span: std::ops::Range<u64>,
    at: u64,
    kind: Kind,
    cipher: Arc<ChunkCipher>,
    /// The next window, read (and decrypted) while this one is sent.
    ahead: Option<ReadAhead>,
    checked: Instant,
    done: bool,
    /// The rest of the current window, handed out in small frames so the
    /// grant is re-checked even while a slow client drains a window.
    pending: Bytes,
    /// Bytes actually handed to the connection.
    sent: u64,
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
        let grant = db::grants::get(&self.state.db, &self.grant.grant_id)
            .await
            .map_err(|e| e.to_string())?;
        match grant {
            Some(g) if g.revoked_at.is_none() && g.expires_at > self.state.now_str() => Ok(()),
            Some(g) if g.revoked_at.is_some() => Err("grant revoked during the download".into()),
            _ => Err("grant expired during the download".into()),
        }
    }

    fn read(&self, range: std::ops::Range<u64>) -> ReadAhead {
        let (state, kind, cipher, size) = (
            self.state.clone(),
            self.kind,
            self.cipher.clone(),
            self.size,
        );
        let key = object_key(&self.grant.case_id, &self.file_id);
        ReadAhead(tokio::spawn(async move {
            read_window(&state, &key, kind, &cipher, size, range).await
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

    async fn finish(&self, outcome: Outcome, reason: String) {
        let entry = NewEntry::new(
            match self.kind {
                Kind::Plaintext => "download.plaintext",
                Kind::Sealed => "download.sealed",
            },
            outcome,
        )
        .case(&self.grant.case_id)
        .centre(&self.centre.centre_id)
        .grant(&self.grant.grant_id)
        .file(&self.file_id)
        .reason(reason);
        if let Err(e) = self.state.audit(&self.ctx, entry).await {
            tracing::error!(error = %e, "download end not audited");
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
) -> Body {
    let at = span.start;
    let s = Streaming {
        state,
        ctx,
        grant,
        centre,
        file_id,
        size,
        span,
        at,
        kind,
        cipher: Arc::new(cipher),
        ahead: None,
        checked: Instant::now(),
        done: false,
        pending: Bytes::new(),
        sent: 0,
    };
    let stream = futures_util::stream::unfold(s, |mut s| async move {
        if s.done {
            return None;
        }
        if s.pending.is_empty() && s.at >= s.span.end {
            s.done = true;
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
                s.done = true;
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
    cipher: &ChunkCipher,
    size: u64,
    range: std::ops::Range<u64>,
) -> Result<Bytes, String> {
    let bytes = match kind {
        Kind::Sealed => state
            .store
            .get_range(key, range)
            .await
            .map_err(|e| e.to_string())?,
        Kind::Plaintext => {
            let layout = Layout::new(DEFAULT_CHUNK_SIZE);
            let plan = plan_range(&layout, size, range);
            let mut fetched = state
                .store
                .get_range(key, plan.object_range.clone())
                .await
                .map_err(|e| e.to_string())?;
            decrypt_planned(cipher, &layout, size, &plan, &mut fetched)
                .map_err(|e| format!("stored object does not decrypt: {e}"))?
        }
    };
    Ok(Bytes::from(bytes))
}
