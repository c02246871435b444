//! WADO-RS retrieval of a study, series or instance: one streamed
//! `multipart/related; type="application/dicom"` answer whose parts are the
//! instances' files, each sent as a plaintext download of its own
//! (`service::downloads::start_as`, audited as `dicomweb.retrieve`): its
//! use counted and its bytes leased when its part begins, its body the
//! download stream that re-checks the grant every two seconds and settles
//! the lease when it ends or is cut. Between parts the grant is checked
//! again, so a revocation stops a long series at once. Nothing is held
//! beyond the window each download streams.

use std::collections::VecDeque;
use std::ops::Range;

use axum::body::{Body, BodyDataStream};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;

const DICOM: &str = "application/dicom";
const OCTETS: &str = "application/octet-stream";

use super::super::download_stream::stream_body;
use super::super::error::ApiError;
use super::super::state::AppState;
use super::{Params, accept, centre, scope};
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::ids::FileId;
use crate::service::dicomweb::{self, FRAMES, RETRIEVE};
use crate::service::downloads::{self, Kind, RangeSpec};
use crate::service::grants::{self, GrantError};
use crate::service::principal::{CentreRow, GrantRow, Principal};

/// A piece of a multipart answer.
enum Item {
    /// Bytes of the framing (the closing boundary).
    Bytes(Bytes),
    /// Bytes of a file, sent as a download (`range` `None`: all of it),
    /// after `head` once the download started, followed by CRLF when
    /// `last` of its part.
    File {
        head: Bytes,
        file_id: FileId,
        range: Option<Range<u64>>,
        action: &'static str,
        last: bool,
    },
}

/// A multipart answer under way: what is still to send and the download
/// being sent.
struct Sending {
    state: AppState,
    ctx: RequestContext,
    grant: GrantRow,
    centre: CentreRow,
    items: VecDeque<Item>,
    current: Option<(BodyDataStream, bool)>,
    done: bool,
}

impl Sending {
    /// Starts the next item: framing bytes, or a file's download (its head
    /// and its body). Files whose downloads were used up meanwhile are
    /// skipped with their part (the download service audited why).
    async fn next_item(
        &mut self,
    ) -> Result<Option<(Bytes, Option<BodyDataStream>, bool)>, GrantError> {
        while let Some(item) = self.items.pop_front() {
            let (head, file_id, range, action, last) = match item {
                Item::Bytes(bytes) => return Ok(Some((bytes, None, false))),
                Item::File {
                    head,
                    file_id,
                    range,
                    action,
                    last,
                } => (head, file_id, range, action, last),
            };
            let svc = &self.state.services;
            if let Err(why) = grants::still_live(svc, &self.grant.grant_id).await? {
                let reason = format!("stopped before {file_id}: grant {why:?}");
                let entry = NewEntry::new(action, Outcome::Deny)
                    .case(&self.grant.case_id)
                    .centre(&self.centre.centre_id)
                    .grant(&self.grant.grant_id)
                    .reason(reason);
                crate::service::audit::record(svc, &self.ctx, entry).await?;
                return Err(GrantError::Revoked);
            }
            let grant = (&self.grant, &self.centre);
            let kind = (Kind::Plaintext, action);
            let spec = range
                .as_ref()
                .map(|r| RangeSpec::FromTo(r.start, r.end.saturating_sub(1)));
            let started = downloads::start_as(svc, &self.ctx, grant, &file_id, kind, Ok(spec));
            let download = match started.await {
                Ok(d) => d,
                Err(GrantError::Exhausted) if range.is_none() => continue,
                Err(e) => return Err(e),
            };
            let (state, ctx) = (self.state.clone(), self.ctx.clone());
            let (g, c) = (self.grant.clone(), self.centre.clone());
            let body = stream_body(state, ctx, g, c, download);
            return Ok(Some((head, Some(body.into_data_stream()), last)));
        }
        Ok(None)
    }
}

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

fn cut(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("retrieval cut: {e}"))
}

/// The multipart body: part heads, the downloads' streams, the closing
/// boundary. A download that fails ends the answer there (the client sees
/// a broken body, never a short part passed off as whole).
fn body(sending: Sending) -> Body {
    let stream = futures_util::stream::unfold(sending, |mut s| async move {
        if let Some((current, last)) = &mut s.current {
            let last = *last;
            match current.next().await {
                Some(Ok(bytes)) => return Some((Ok(bytes), s)),
                Some(Err(e)) => {
                    s.done = true;
                    s.current = None;
                    return Some((Err(cut(e)), s));
                }
                None => {
                    s.current = None;
                    if last {
                        return Some((Ok(Bytes::from_static(b"\r\n")), s));
                    }
                }
            }
        }
        if s.done {
            return None;
        }
        match s.next_item().await {
            Ok(Some((head, body, last))) => {
                s.current = body.map(|b| (b, last));
                Some((Ok(head), s))
            }
            Ok(None) => None,
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
fn answer(sending: Sending, media: &str, boundary: &str) -> Response {
    let content_type = format!("multipart/related; type=\"{media}\"; boundary={boundary}");
    let mut out = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        out.insert(header::CONTENT_TYPE, v);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    (StatusCode::OK, out, body(sending)).into_response()
}

fn boundary() -> String {
    crate::hex::encode(&crate::random::array::<16>())
}

async fn retrieve(
    state: AppState,
    ctx: RequestContext,
    principal: Principal,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    accept::dicom_multipart(&headers)?;
    let scope = scope(params)?;
    let (grant, centre) = centre(&principal)?;
    let parts = dicomweb::retrieval(&state.services, &ctx, (grant, centre), &scope).await?;
    let boundary = boundary();
    let mut items: VecDeque<Item> = parts
        .into_iter()
        .map(|part| Item::File {
            head: part_head(&boundary, DICOM, &part.transfer_syntax_uid, part.size),
            file_id: part.file_id,
            range: None,
            action: RETRIEVE,
            last: true,
        })
        .collect();
    items.push_back(Item::Bytes(Bytes::from(format!("--{boundary}--\r\n"))));
    let sending = Sending {
        state,
        ctx,
        grant: grant.clone(),
        centre: centre.clone(),
        items,
        current: None,
        done: false,
    };
    Ok(answer(sending, DICOM, &boundary))
}

/// WADO-RS frames of an instance: one part per frame asked for, its bytes
/// sent as ranges of the file (for encapsulated pixel data, its fragments'
/// contents one after another), in the transfer syntax stored.
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
    let plan = dicomweb::frames(&state.services, &ctx, (grant, centre), &scope, &asked).await?;
    let boundary = boundary();
    let mut items = VecDeque::new();
    for spans in plan.frames {
        let size = spans.iter().map(|r| r.end - r.start).sum();
        let head = part_head(&boundary, OCTETS, &plan.transfer_syntax_uid, size);
        let count = spans.len();
        for (n, range) in spans.into_iter().enumerate() {
            items.push_back(Item::File {
                head: if n == 0 { head.clone() } else { Bytes::new() },
                file_id: plan.file_id.clone(),
                range: Some(range),
                action: FRAMES,
                last: n + 1 == count,
            });
        }
    }
    items.push_back(Item::Bytes(Bytes::from(format!("--{boundary}--\r\n"))));
    let sending = Sending {
        state,
        ctx,
        grant: grant.clone(),
        centre: centre.clone(),
        items,
        current: None,
        done: false,
    };
    Ok(answer(sending, OCTETS, &boundary))
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
    retrieve(state, ctx, principal, params, headers).await
}
