//! DICOMweb on the centre listener, over the caller's grant: QIDO-RS
//! searches and WADO-RS metadata as `application/dicom+json`, WADO-RS
//! retrieval as a streamed `multipart/related; type="application/dicom"`
//! ([`multipart`]). What the grant holds and how retrievals count is
//! `service::dicomweb`; here the path's UIDs, the query, `Accept`, and the
//! answer's shape.

mod accept;
mod multipart;

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::error::ApiError;
use super::state::AppState;
use crate::audit::RequestContext;
use crate::service::dicomweb::{self, Level, Scope};
use crate::service::principal::{CentreRow, GrantRow, Principal};

pub use multipart::{frames, retrieve_instances};

const DICOM_JSON: &str = "application/dicom+json";

type Params = Path<HashMap<String, String>>;

fn centre(principal: &Principal) -> Result<(&GrantRow, &CentreRow), ApiError> {
    principal.centre_grant().ok_or(ApiError::Forbidden)
}

/// The UIDs of the request's path.
fn scope(Path(params): Params) -> Result<Scope, ApiError> {
    let get = |k: &str| params.get(k).cloned();
    Ok(Scope::new(get("study"), get("series"), get("instance"))?)
}

fn json_answer(body: Bytes, warning: Option<String>) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(DICOM_JSON));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(w) = warning.and_then(|w| HeaderValue::from_str(&w).ok()) {
        headers.insert(header::WARNING, w);
    }
    (StatusCode::OK, headers, body).into_response()
}

async fn search(
    state: AppState,
    (ctx, principal): (RequestContext, Principal),
    (level, scope): (Level, Scope),
    headers: &HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    accept::json(headers)?;
    let pairs = query
        .map_err(|_| ApiError::BadRequest("the query string does not parse".into()))?
        .0;
    let query = dicomweb::Query::parse(&pairs).map_err(ApiError::BadRequest)?;
    let grant = centre(&principal)?;
    let results = dicomweb::search(&state.services, &ctx, grant, (level, &scope), &query).await?;
    let body = serde_json::to_vec(&results).map_err(|_| ApiError::Internal)?;
    let warning = (!query.ignored.is_empty()).then(|| {
        format!(
            "299 casegate \"not supported as matching keys, ignored: {}\"",
            query.ignored.join(", ")
        )
    });
    Ok(json_answer(Bytes::from(body), warning))
}

macro_rules! search_handler {
    ($name:ident, $level:expr) => {
        pub async fn $name(
            State(state): State<AppState>,
            axum::Extension(ctx): axum::Extension<RequestContext>,
            axum::Extension(principal): axum::Extension<Principal>,
            params: Params,
            headers: HeaderMap,
            query: Result<Query<Vec<(String, String)>>, QueryRejection>,
        ) -> Result<Response, ApiError> {
            let scope = scope(params)?;
            search(state, (ctx, principal), ($level, scope), &headers, query).await
        }
    };
}

search_handler!(search_studies, Level::Studies);
search_handler!(search_series, Level::Series);
search_handler!(search_instances, Level::Instances);

/// WADO-RS metadata of a study, series or instance: a JSON array with one
/// object per instance, streamed (each instance's header is read from its
/// object as the answer goes out, so a large study is never held whole).
pub async fn metadata(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    axum::Extension(principal): axum::Extension<Principal>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    accept::json(&headers)?;
    let scope = scope(params)?;
    let (grant, centre) = centre(&principal)?;
    let granted = dicomweb::metadata(&state.services, &ctx, (grant, centre), &scope).await?;
    let (grant, centre) = (grant.clone(), centre.clone());
    let granted = std::sync::Arc::new(granted);
    let count = granted.instances.len();
    let items = futures_util::stream::unfold(0usize, move |n| {
        let (state, granted) = (state.clone(), granted.clone());
        let (grant, centre) = (grant.clone(), centre.clone());
        async move {
            if n > count {
                return None;
            }
            if n == count {
                return Some((Ok(Bytes::from_static(b"]")), n + 1));
            }
            let instance = &granted.instances[n];
            let key = &granted.case_key;
            let svc = &state.services;
            // Each header is patient data: none goes out once the grant
            // stops being live (revoked mid-answer: cut, as downloads are).
            let item = match crate::service::grants::still_live(svc, &grant.grant_id).await {
                Ok(Ok(())) => dicomweb::header_json(svc, key, (&grant, &centre), instance).await,
                Ok(Err(why)) => Err(crate::service::grants::GrantError::Internal(format!(
                    "grant no longer live ({why:?})"
                ))),
                Err(e) => Err(e.into()),
            };
            let prefix: &[u8] = if n == 0 { b"[" } else { b"," };
            Some((
                item.and_then(|json| {
                    let mut out = prefix.to_vec();
                    serde_json::to_writer(&mut out, &json)
                        .map_err(|e| crate::service::grants::GrantError::Internal(e.to_string()))?;
                    Ok(Bytes::from(out))
                })
                .map_err(|e| {
                    tracing::error!(error = %e, "metadata cut");
                    std::io::Error::other("metadata cut")
                }),
                n + 1,
            ))
        }
    });
    let mut response = json_answer(Bytes::new(), None);
    *response.body_mut() = Body::from_stream(items);
    Ok(response)
}
