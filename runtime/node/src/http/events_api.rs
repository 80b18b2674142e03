//! Watching twins: Server-Sent Events streams of committed changes.
//!
//! - `GET /digitaltwins/{id}/events`: changes of one twin (and of its outgoing
//!   relationships, and its telemetry);
//! - `GET /events[?twin=ID][&model=DTMI][&type=Microsoft.DigitalTwins.Twin.Update]`:
//!   the tenant's changes, filtered.
//!
//! Each SSE message has `event: <type>` and `data: <JSON>` with `type`, `twinId`,
//! `model` (creates and updates), `time`, `data` (the twin / relationship / telemetry
//! as committed) and `patch` (updates by JSON Patch). Events are published only after
//! the change is durable. A watcher that falls behind by more than the server's buffer
//! gets an `event: lagged` message with the number of events it missed, then goes on.

use super::api_error::ApiResult;
use super::auth::Caller;
use super::extract::{Path, Query};
use crate::node::Node;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use doppel_twins::{ChangeEvent, Role};
use futures_util::stream::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::broadcast::{error::RecvError, Receiver};

pub fn routes() -> Router<Node> {
    Router::new()
        .route("/events", get(tenant_events))
        .route("/digitaltwins/{id}/events", get(twin_events))
}

#[derive(Debug, Default, Deserialize, Clone)]
pub struct Filter {
    twin: Option<String>,
    model: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

impl Filter {
    fn matches(&self, tenant: &str, e: &ChangeEvent) -> bool {
        e.tenant == tenant
            && self.twin.as_deref().is_none_or(|t| t == e.twin_id)
            && self
                .model
                .as_deref()
                .is_none_or(|m| e.model.as_deref() == Some(m))
            && self.kind.as_deref().is_none_or(|k| k == e.kind)
    }
}

async fn tenant_events(
    State(st): State<Node>,
    caller: Caller,
    Query(filter): Query<Filter>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    caller.require(Role::Reader)?;
    Ok(stream(
        st.proposer.subscribe(),
        st.stopping.subscribe(),
        caller.tenant().to_owned(),
        filter,
    ))
}

async fn twin_events(
    State(st): State<Node>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    caller.require(Role::Reader)?;
    let filter = Filter {
        twin: Some(id),
        ..Default::default()
    };
    Ok(stream(
        st.proposer.subscribe(),
        st.stopping.subscribe(),
        caller.tenant().to_owned(),
        filter,
    ))
}

fn stream(
    rx: Receiver<Arc<ChangeEvent>>,
    stop: tokio::sync::watch::Receiver<bool>,
    tenant: String,
    filter: Filter,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = futures_util::stream::unfold((rx, stop), move |(mut rx, mut stop)| {
        let (tenant, filter) = (tenant.clone(), filter.clone());
        async move {
            loop {
                let next = tokio::select! {
                    next = rx.recv() => next,
                    // The server is stopping: end the stream (and the response).
                    _ = stop.wait_for(|stopping| *stopping) => return None,
                };
                match next {
                    Ok(e) if filter.matches(&tenant, &e) => {
                        let data = serde_json::to_string(&*e).unwrap_or_else(|_| "{}".into());
                        return Some((Ok(Event::default().event(e.kind).data(data)), (rx, stop)));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => {
                        let data = format!("{{\"missed\":{n}}}");
                        return Some((Ok(Event::default().event("lagged").data(data)), (rx, stop)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    // A comment line every 15 s keeps proxies from closing an idle stream.
    Sse::new(events).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
}
