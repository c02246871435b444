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

use axum::body::{Body, BodyDataStream};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;

use super::super::download_stream::stream_body;
use super::super::error::ApiError;
use super::super::state::AppState;
use super::{Params, accept, centre, scope};
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::service::dicomweb::{self, Part, RETRIEVE};
use crate::service::downloads::{self, Kind};
use crate::service::grants::{self, GrantError};
use crate::service::principal::{CentreRow, GrantRow, Principal};

/// A retrieval under way: the parts still to send and the one being sent.
struct Sending {
    state: AppState,
    ctx: RequestContext,
    grant: GrantRow,
    centre: CentreRow,
    parts: VecDeque<Part>,
    current: Option<BodyDataStream>,
    boundary: String,
    done: bool,
}

impl Sending {
    /// Starts the next part's download: its multipart head and its body.
    /// Parts whose downloads were used up meanwhile are skipped (their
    /// refusal is audited by the download service).
    async fn next_part(&mut self) -> Result<Option<(Bytes, BodyDataStream)>, GrantError> {
        while let Some(part) = self.parts.pop_front() {
            let svc = &self.state.services;
            if let Err(why) = grants::still_live(svc, &self.grant.grant_id).await? {
                let reason = format!("stopped before {}: grant {why:?}", part.file_id);
                let entry = NewEntry::new(RETRIEVE, Outcome::Deny)
                    .case(&self.grant.case_id)
                    .centre(&self.centre.centre_id)
                    .grant(&self.grant.grant_id)
                    .reason(reason);
                crate::service::audit::record(svc, &self.ctx, entry).await?;
                return Err(GrantError::Revoked);
            }
            let grant = (&self.grant, &self.centre);
            let kind = (Kind::Plaintext, RETRIEVE);
            let started = downloads::start_as(svc, &self.ctx, grant, &part.file_id, kind, Ok(None));
            let download = match started.await {
                Ok(d) => d,
                Err(GrantError::Exhausted) => continue,
                Err(e) => return Err(e),
            };
            let head = part_head(&self.boundary, &part, download.size);
            let (state, ctx) = (self.state.clone(), self.ctx.clone());
            let (g, c) = (self.grant.clone(), self.centre.clone());
            let body = stream_body(state, ctx, g, c, download);
            return Ok(Some((head, body.into_data_stream())));
        }
        Ok(None)
    }
}

/// A part's head: the boundary line and the part's headers.
fn part_head(boundary: &str, part: &Part, size: u64) -> Bytes {
    let syntax = &part.transfer_syntax_uid;
    let content_type = if dicomweb::valid_uid(syntax) {
        format!("application/dicom; transfer-syntax={syntax}")
    } else {
        "application/dicom".to_owned()
    };
    Bytes::from(format!(
        "--{boundary}\r\nContent-Type: {content_type}\r\nContent-Length: {size}\r\n\r\n"
    ))
}

fn cut(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("retrieval cut: {e}"))
}

/// The multipart body: part heads, the parts' download streams, the
/// closing boundary. A part's stream that fails ends the answer there (the
/// client sees a broken body, never a short part passed off as whole).
fn body(sending: Sending) -> Body {
    let stream = futures_util::stream::unfold(sending, |mut s| async move {
        if let Some(current) = &mut s.current {
            match current.next().await {
                Some(Ok(bytes)) => return Some((Ok(bytes), s)),
                Some(Err(e)) => {
                    s.done = true;
                    s.current = None;
                    return Some((Err(cut(e)), s));
                }
                None => {
                    s.current = None;
                    return Some((Ok(Bytes::from_static(b"\r\n")), s));
                }
            }
        }
        if s.done {
            return None;
        }
        match s.next_part().await {
            Ok(Some((head, body))) => {
                s.current = Some(body);
                Some((Ok(head), s))
            }
            Ok(None) => {
                s.done = true;
                let end = format!("--{}--\r\n", s.boundary);
                Some((Ok(Bytes::from(end)), s))
            }
            Err(e) => {
                s.done = true;
                Some((Err(cut(e)), s))
            }
        }
    });
    Body::from_stream(stream)
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
    let boundary = crate::hex::encode(&crate::random::array::<16>());
    let content_type =
        format!("multipart/related; type=\"application/dicom\"; boundary={boundary}");
    let mut out = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        out.insert(header::CONTENT_TYPE, v);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let sending = Sending {
        state,
        ctx,
        grant: grant.clone(),
        centre: centre.clone(),
        parts: parts.into(),
        current: None,
        boundary,
        done: false,
    };
    Ok((StatusCode::OK, out, body(sending)).into_response())
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
