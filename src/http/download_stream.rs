//! The body of a running download: object windows read from the store,
//! decrypted (plaintext route) or passed through (sealed route), with the
//! grant re-checked every two seconds so a revocation or expiry cuts it,
//! and an audit entry when it ends or is cut.

use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;

use super::state::AppState;
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::crypto::format::{ChunkCipher, DEFAULT_CHUNK_SIZE, Layout, decrypt_planned, plan_range};
use crate::db::{self, centres::CentreRow, grants::GrantRow};
use crate::ids::FileId;
use crate::store::object_key;

/// Plaintext (or object bytes) per store read while streaming: 16 chunks.
const WINDOW: u64 = 16 * 64 * 1024;
const RECHECK: Duration = Duration::from_secs(2);

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
    cipher: ChunkCipher,
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

    async fn next_piece(&mut self) -> Result<Bytes, String> {
        let layout = Layout::new(DEFAULT_CHUNK_SIZE);
        let key = object_key(&self.grant.case_id, &self.file_id);
        // Sealed bytes go out as stored: bigger reads, fewer store calls.
        let window = match self.kind {
            Kind::Sealed => 4 * WINDOW,
            Kind::Plaintext => WINDOW,
        };
        let end = (self.at + window).min(self.span.end);
        let bytes = match self.kind {
            Kind::Sealed => self
                .state
                .store
                .get_range(&key, self.at..end)
                .await
                .map_err(|e| e.to_string())?,
            Kind::Plaintext => {
                let plan = plan_range(&layout, self.size, self.at..end);
                let mut fetched = self
                    .state
                    .store
                    .get_range(&key, plan.object_range.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                decrypt_planned(&self.cipher, &layout, self.size, &plan, &mut fetched)
                    .map_err(|e| format!("stored object does not decrypt: {e}"))?
            }
        };
        if bytes.len() as u64 != end - self.at {
            return Err("stored object shorter than expected".into());
        }
        self.at = end;
        Ok(Bytes::from(bytes))
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
        cipher,
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
