//! A centre's reply stops when its grant does: the body of a PATCH on the
//! centre listener re-checks the grant (expired, revoked, centre disabled,
//! case deleted) every [`RECHECK`] while bytes arrive, as a running
//! download does, and breaks off when it is no longer live. What arrived
//! before is kept up to the last durable point; the next request is
//! refused by the grant rule.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::state::AppState;
use crate::ids::GrantId;
use crate::service::grants;

/// How often a running reply re-checks its grant.
pub const RECHECK: Duration = Duration::from_secs(2);

/// `body`, ending with an error once `grant` (if any) is no longer live.
pub fn gated<S, E>(
    body: S,
    state: AppState,
    grant: Option<GrantId>,
) -> impl Stream<Item = Result<Bytes, String>> + Unpin + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let checked = Arc::new(Mutex::new(Instant::now()));
    Box::pin(body.then(move |frame| {
        let (state, grant, checked) = (state.clone(), grant.clone(), checked.clone());
        async move {
            let frame = frame.map_err(|e| e.to_string())?;
            let Some(grant) = grant else {
                return Ok(frame);
            };
            let due = checked
                .lock()
                .map(|mut at| {
                    let due = at.elapsed() >= RECHECK;
                    if due {
                        *at = Instant::now();
                    }
                    due
                })
                .unwrap_or(true);
            if due {
                match grants::still_live(&state.services, &grant).await {
                    Ok(Ok(())) => {}
                    Ok(Err(why)) => return Err(format!("the grant is no longer live ({why:?})")),
                    Err(e) => return Err(format!("the grant could not be re-checked: {e}")),
                }
            }
            Ok(frame)
        }
    }))
}
