//! WADO-RS answers as streamed `multipart/related`.
//!
//! A retrieval of a study, series or instance: one part per instance, each
//! its file sent as a plaintext download of its own (counted, leased and
//! audited as `dicomweb.retrieve`; its body the download stream that
//! re-checks the grant every two seconds and settles the lease when it
//! ends or is cut). The files and case key are listed once per request;
//! the next part's download is started while one streams (its lease
//! beaten while it waits, as long as the part before it makes progress:
//! a client that stopped reading does not hold the next file's budget for
//! good), and a finished
//! part's end is recorded beside the next one, so parts follow each other
//! without a pause. Between parts the grant is checked again, so a
//! revocation stops a long series at once.
//!
//! Frames: one download of the file's pieces with the part framing
//! between them (`download_stream::Piece`), started before the answer, so
//! a budget that cannot cover them is a 403 and not a cut body.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::super::download_stream::{Piece, stream_body, stream_pieces};
use super::super::error::ApiError;
use super::super::state::AppState;
use super::{Params, accept, centre, scope};
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::service::Services;
use crate::service::dicomweb::{self, Granted, RETRIEVE};
use crate::service::downloads::{LEASE_TTL_SECS, Lease};
use crate::service::grants::{self, GrantError};
use crate::service::principal::{CentreRow, GrantRow, Principal};

const DICOM: &str = "application/dicom";
const OCTETS: &str = "application/octet-stream";

/// A part's head: the boundary line and the part's headers.
fn part_head(boundary: &str, media: &str, syntax: &str, size: u64) -> Bytes {
    let content_type = if dicomweb::valid_uid(syntax) {
        format!("{media}; transfer-syntax={syntax}")
    } else {
        media.to_owned()
    };
    Bytes::from(format!(
        "--{boundary}\r\nContent-Type: {content_type}\r\nContent-Length: {size}\r\n\r\n"
    ))
}

fn closing(boundary: &str) -> Bytes {
    Bytes::from(format!("--{boundary}--\r\n"))
}

fn cut(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("retrieval cut: {e}"))
}

/// The request a retrieval's parts are started for.
#[derive(Clone)]
struct Request {
    state: AppState,
    ctx: RequestContext,
    grant: GrantRow,
    centre: CentreRow,
    granted: Arc<Granted>,
    progress: Progress,
}

/// When the part being sent last handed bytes on (the service clock's
/// seconds), shared with the heartbeat of the part waiting behind it.
#[derive(Clone, Default)]
struct Progress(Arc<AtomicI64>);

impl Progress {
    fn mark(&self, svc: &Services) {
        let now = svc.timestamp().unix_seconds();
        self.0.store(now, Ordering::Relaxed);
    }

    /// Whether the part being sent moved within a lease's lifetime.
    fn recent(&self, svc: &Services) -> bool {
        let now = svc.timestamp().unix_seconds();
        now - self.0.load(Ordering::Relaxed) <= LEASE_TTL_SECS
    }
}

/// A part whose download has started: which instance, its body, and
/// the heartbeat of its lease while it waits for its turn.
struct Started {
    at: usize,
    body: Body,
    /// Dropped when the part's body starts streaming (its own re-checks
    /// then beat) or is dropped unsent (its lease is then settled).
    _waiting: Waiting,
}

/// How often a part started ahead beats its lease while it waits: as
/// often as a streaming download re-checks, far inside the lease's TTL.
const WAITING_BEAT: Duration = Duration::from_secs(2);

/// Beats a waiting part's lease until dropped: the part before it may
/// stream for longer than a lease lives without a heartbeat, and another
/// request for the file would then settle this one as a dead gateway's,
/// cutting the part when its turn comes. It beats only while the part
/// before it makes progress: a client that stopped reading (response
/// bodies have no write timeout) would otherwise hold this file's budget
/// for good, and cost a write every beat. After a lease's lifetime
/// without progress the lease is left to go stale; if the client reads
/// on and nobody settled it meanwhile, the beats resume.
struct Waiting(JoinHandle<()>);

impl Waiting {
    fn start(state: AppState, lease: Lease, progress: Progress) -> Waiting {
        Waiting(tokio::spawn(async move {
            loop {
                tokio::time::sleep(WAITING_BEAT).await;
                if !progress.recent(&state.services) {
                    continue;
                }
                if !lease.keep_alive(&state.services).await {
                    break;
                }
            }
        }))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Request {
    /// Whether the grant is still live; if not, the stop is audited.
    async fn live(&self, at: usize) -> Result<(), GrantError> {
        let svc = &self.state.services;
        let Err(why) = grants::still_live(svc, &self.grant.grant_id).await? else {
            return Ok(());
        };
        let file = self.granted.instances.get(at).map(|i| &i.file.file_id);
        let what = file.map_or("the end".to_owned(), |f| f.to_string());
        let entry = NewEntry::new(RETRIEVE, Outcome::Deny)
            .case(&self.grant.case_id)
            .centre(&self.centre.centre_id)
            .grant(&self.grant.grant_id)
            .reason(format!("stopped before {what}: grant {why:?}"));
        crate::service::audit::record(svc, &self.ctx, entry).await?;
        Err(GrantError::Revoked)
    }

    /// Starts the first part at or after `from` whose file can still be
    /// downloaded (one used up meanwhile is skipped; the download service
    /// audited why); `None` when no part is left. The body exists as soon
    /// as the lease does, so a part started but never sent (the client
    /// went away) still settles its lease and gives its use back.
    async fn start(self, from: usize) -> Result<Option<Started>, GrantError> {
        let svc = &self.state.services;
        let grant = (&self.grant, &self.centre);
        for (at, instance) in self.granted.instances.iter().enumerate().skip(from) {
            self.live(at).await?;
            match dicomweb::start_part(svc, &self.ctx, grant, &self.granted, instance).await {
                Ok(download) => {
                    let (state, ctx) = (self.state.clone(), self.ctx.clone());
                    let lease = download.lease.clone();
                    let waiting = Waiting::start(state.clone(), lease, self.progress.clone());
                    let (g, c) = (self.grant.clone(), self.centre.clone());
                    let body = stream_body(state, ctx, g, c, download);
                    return Ok(Some(Started {
                        at,
                        body,
                        _waiting: waiting,
                    }));
                }
                Err(GrantError::Exhausted) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

/// A part being sent: its body and the bytes it still owes.
struct Current {
    stream: BodyDataStream,
    left: u64,
}

/// A retrieval under way.
struct Sending {
    request: Request,
    boundary: String,
    current: Option<Current>,
    /// The next part's start, running while the current part streams.
    next: Option<JoinHandle<Result<Option<Started>, GrantError>>>,
    /// Finished parts whose download's end is still being recorded.
    endings: Vec<JoinHandle<()>>,
    done: bool,
}

impl Sending {
    fn prepare(&mut self, from: usize) {
        let request = self.request.clone();
        self.next = Some(tokio::spawn(request.start(from)));
    }

    /// The next part: its head, once its download started (and the grant
    /// was found live again); `None` after the last, once every part's end
    /// is recorded.
    async fn next_part(&mut self) -> Result<Option<Bytes>, GrantError> {
        let started = match self.next.take() {
            Some(task) => task
                .await
                .map_err(|e| GrantError::Internal(format!("part start failed: {e}")))??,
            None => self.request.clone().start(0).await?,
        };
        let Some(Started { at, body, .. }) = started else {
            for ending in self.endings.drain(..) {
                let _ = ending.await;
            }
            return Ok(None);
        };
        if at > 0 {
            // Started ahead, while the part before streamed: the grant
            // may have stopped since.
            self.request.live(at).await?;
        }
        let instance = &self.request.granted.instances[at];
        let (size, syntax) = (instance.file.size, &instance.index.transfer_syntax_uid);
        let head = part_head(&self.boundary, DICOM, syntax, size);
        self.request.progress.mark(&self.request.state.services);
        self.current = Some(Current {
            stream: body.into_data_stream(),
            left: size,
        });
        self.prepare(at + 1);
        Ok(Some(head))
    }

    /// The current part's next bytes; its closing CRLF once all its bytes
    /// came. Its download's end (an audited transaction) is then recorded
    /// beside the next part; the answer ends after every part's end.
    async fn part_bytes(&mut self, mut current: Current) -> Result<Bytes, std::io::Error> {
        if current.left == 0 {
            let ending = async move { while current.stream.next().await.is_some() {} };
            self.endings.push(tokio::spawn(ending));
            return Ok(Bytes::from_static(b"\r\n"));
        }
        match current.stream.next().await {
            Some(Ok(bytes)) => {
                self.request.progress.mark(&self.request.state.services);
                current.left = current.left.saturating_sub(bytes.len() as u64);
                self.current = Some(current);
                Ok(bytes)
            }
            Some(Err(e)) => Err(cut(e)),
            None => Err(cut("a part ended short")),
        }
    }
}

/// The multipart body: part heads, the downloads' streams, the closing
/// boundary. A download that fails ends the answer there (the client sees
/// a broken body, never a short part passed off as whole).
fn body(sending: Sending) -> Body {
    let stream = futures_util::stream::unfold(sending, |mut s| async move {
        if s.done {
            return None;
        }
        if let Some(current) = s.current.take() {
            let piece = s.part_bytes(current).await;
            s.done = piece.is_err();
            return Some((piece, s));
        }
        match s.next_part().await {
            Ok(Some(head)) => Some((Ok(head), s)),
            Ok(None) => {
                s.done = true;
                Some((Ok(closing(&s.boundary)), s))
            }
            Err(e) => {
                s.done = true;
                Some((Err(cut(e)), s))
            }
        }
    });
    // An empty chunk would end a chunked HTTP/1.1 body early.
    let stream =
        stream.filter(|piece| std::future::ready(!matches!(piece, Ok(bytes) if bytes.is_empty())));
    Body::from_stream(stream)
}

/// The answer: 200, the multipart type, the body.
fn answer(body: Body, media: &str, boundary: &str) -> Response {
    let content_type = format!("multipart/related; type=\"{media}\"; boundary={boundary}");
    let mut out = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        out.insert(header::CONTENT_TYPE, v);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    (StatusCode::OK, out, body).into_response()
}

fn boundary() -> String {
    crate::hex::encode(&crate::random::array::<16>())
}

/// WADO-RS retrieval of a study, a series or an instance (the path says
/// which).
pub async fn retrieve_instances(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    axum::Extension(principal): axum::Extension<Principal>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    accept::dicom_multipart(&headers)?;
    let scope = scope(params)?;
    let (grant, centre) = centre(&principal)?;
    let granted = dicomweb::retrieval(&state.services, &ctx, (grant, centre), &scope).await?;
    let boundary = boundary();
    let request = Request {
        state,
        ctx,
        grant: grant.clone(),
        centre: centre.clone(),
        granted: Arc::new(granted),
        progress: Progress::default(),
    };
    let sending = Sending {
        request,
        boundary: boundary.clone(),
        current: None,
        next: None,
        endings: Vec::new(),
        done: false,
    };
    Ok(answer(body(sending), DICOM, &boundary))
}

/// WADO-RS frames of an instance: one part per frame asked for, its bytes
/// sent as pieces of the file (for encapsulated pixel data, its fragments'
/// contents one after another), in the transfer syntax stored; all of
/// them one download, leased and audited once.
pub async fn frames(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    axum::Extension(principal): axum::Extension<Principal>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    accept::frames(&headers)?;
    let asked = dicomweb::frame_list(params.0.get("frames").map_or("", |f| f.as_str()))?;
    let scope = scope(params)?;
    let (grant, centre) = centre(&principal)?;
    let svc = &state.services;
    let plan = dicomweb::frames(svc, &ctx, (grant, centre), &scope, &asked).await?;
    let download = dicomweb::start_frames(svc, &ctx, (grant, centre), &plan).await?;
    let boundary = boundary();
    let mut pieces = Vec::new();
    for spans in plan.frames {
        let size = spans.iter().map(|r| r.end - r.start).sum();
        let head = part_head(&boundary, OCTETS, &plan.transfer_syntax_uid, size);
        pieces.push(Piece::Framing(head));
        pieces.extend(spans.into_iter().map(Piece::File));
        pieces.push(Piece::Framing(Bytes::from_static(b"\r\n")));
    }
    pieces.push(Piece::Framing(closing(&boundary)));
    let grant = (grant.clone(), centre.clone());
    let body = stream_pieces(state, ctx, grant, download, pieces);
    Ok(answer(body, OCTETS, &boundary))
}
