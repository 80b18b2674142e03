//! HTTP routing in a cluster: every REST request reaches the leader of the Raft group
//! that owns what it touches (commands from other edges: [`crate::dispatch`]).
//!
//! ```text
//!  REST request ─▶ route_to_leader (middleware)
//!     group = shard_of(tenant, twin/device id) | meta (models, tokens) | none (lists, streams)
//!     none              ─▶ handled here, on local state
//!     leader is here    ─▶ GET: read barrier (read index, a quorum heartbeat) ─▶ handler
//!                          write: handler ─▶ twin actor ─▶ Proposer ─▶ Raft
//!     leader elsewhere  ─▶ forwarded whole over QUIC; the leader runs the same router
//! ```
//!
//! Retries: a forward is retried (against the newly elected leader) only when it cannot
//! have been applied: the transport could not deliver it, or the receiver answered
//! `NotLeader` before evaluating it. A write that timed out waiting for a quorum is
//! reported as 503 and never replayed.

use super::api_error::ApiError;
use super::headers::{CONSISTENCY, DEVICE_OFFLINE_HEADER, FORWARDED, NOT_LEADER_HEADER};
use crate::dispatch::{leader_moved, FORWARD_TIMEOUT, ROUTE_DEADLINE};
use crate::forward::{Forwarded, HttpAnswer};
use crate::node::Node;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use doppel_cluster::raft::{GroupId, NodeId, META_GROUP};
use doppel_protocols::retry::Backoff;
use doppel_twins::keys::shard_of;
use doppel_twins::ErrorCode;
use std::time::{Duration, Instant};

/// The group a REST request belongs to, if it addresses one twin, device, model or token.
fn group_of(st: &Node, tenant: &str, path: &str) -> Option<GroupId> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .ok()
    };
    let n = st.shard_count;
    match segs.as_slice() {
        ["models", ..] | ["tokens", ..] => Some(META_GROUP),
        // Lists over every shard and streams are served from local state.
        ["digitaltwins", _, "incomingrelationships", ..]
        | ["digitaltwins", _, "events", ..]
        // A command goes to the device, which may be connected to any node.
        | ["digitaltwins", _, "commands", ..] => None,
        ["digitaltwins", id, ..] => decode(id).map(|id| shard_of(tenant, &id, n)),
        ["devices", id, ..] => decode(id).map(|id| shard_of(tenant, &id, n)),
        _ => None,
    }
}

/// The middleware: see the module docs.
pub async fn route_to_leader(State(st): State<Node>, req: Request, next: Next) -> Response {
    let cluster = st.proposer.cluster().clone();
    if cluster.is_single_voter() {
        // A lone node leads every group and is the only replica: nothing to route,
        // and its applied state is the committed state.
        return next.run(req).await;
    }
    let forwarded = req.headers().contains_key(FORWARDED);
    // Who is asking decides the tenant; an unauthenticated request is answered by the
    // handler (401) wherever it arrives.
    let caller = match req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(h) => match super::auth::authenticate(&st.storage, Some(h)) {
            Ok(c) => c,
            Err(_) => return next.run(req).await,
        },
        None => return next.run(req).await,
    };
    let tenant = caller.tenant().to_owned();
    // The handler takes the caller from here instead of looking the token up again.
    let mut req = req;
    req.extensions_mut().insert(caller);
    let Some(group) = group_of(&st, &tenant, req.uri().path()) else {
        if !forwarded && is_command_call(req.uri().path()) {
            return command_anywhere(&st, req, next).await;
        }
        return next.run(req).await;
    };
    let me = cluster.node_id();
    let local_read = req
        .headers()
        .get(CONSISTENCY)
        .is_some_and(|v| v.as_bytes() == b"local");
    let is_read = req.method() == Method::GET;
    let deadline = Instant::now() + ROUTE_DEADLINE;
    let mut backoff = Backoff::until(
        deadline,
        Duration::from_millis(50),
        Duration::from_millis(500),
    );
    let (parts, body) = req.into_parts();
    let body = match read_body(&st, body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    loop {
        let leader = match cluster.leader_of(group) {
            Some(l) => l,
            None => match cluster
                .wait_leader(group, deadline.saturating_duration_since(Instant::now()))
                .await
            {
                Ok(l) => l,
                Err(e) => return unavailable(e.to_string()),
            },
        };
        if leader == me || forwarded {
            if is_read && !local_read {
                if let Err(e) = cluster.read_barrier(&[group]).await {
                    return unavailable(format!("linearizable read: {e}"));
                }
            }
            let resp = next.clone().run(same_request(&parts, &body)).await;
            // Leadership moved between the lookup and the evaluation: nothing was
            // applied (the proposer refused it before evaluating), so it goes to the
            // new leader. A forwarded request is answered as is: its sender retries.
            let moved = resp.status() == StatusCode::SERVICE_UNAVAILABLE
                && resp.headers().contains_key(NOT_LEADER_HEADER);
            if moved && !forwarded && backoff.wait().await {
                continue;
            }
            return resp;
        }
        let outcome = tokio::select! {
            r = forward_http(&st, leader, &parts, &body) => r,
            () = leader_moved(&cluster, group, leader) => {
                if is_read {
                    continue;
                }
                return unavailable(format!(
                    "node {leader}, the leader of shard group {group}, was replaced while this \
                     request was in flight to it: the request may or may not have been applied; \
                     retry it (with If-Match to make the retry safe)"
                ));
            }
        };
        match outcome {
            Ok(resp) => {
                let retry = resp.status() == StatusCode::SERVICE_UNAVAILABLE
                    && resp.headers().contains_key(NOT_LEADER_HEADER);
                if !retry || !backoff.wait().await {
                    return resp;
                }
            }
            Err(Undelivered(e)) => {
                if !backoff.wait().await {
                    return unavailable(format!(
                        "the leader of shard group {group} (node {leader}) cannot be reached: {e}"
                    ));
                }
            }
        }
    }
}

fn is_command_call(path: &str) -> bool {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(segs.as_slice(), ["digitaltwins", _, "commands", _])
}

/// A direct-method call goes to the device, which is connected to one node (or none):
/// this node first, then each other member until one has the device online.
/// The same request again (with the route's extensions: its path parameters).
fn same_request(parts: &axum::http::request::Parts, body: &bytes::Bytes) -> Request {
    let mut req = Request::new(Body::from(body.clone()));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    *req.extensions_mut() = parts.extensions.clone();
    req
}

async fn command_anywhere(st: &Node, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let body = match read_body(st, body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let resp = next.run(same_request(&parts, &body)).await;
    if !is_offline(&resp) {
        return resp;
    }
    let cluster = st.proposer.cluster().clone();
    for (peer, _) in cluster.members() {
        if peer == cluster.node_id() {
            continue;
        }
        match forward_http(st, peer, &parts, &body).await {
            Ok(r) if !is_offline(&r) => return r,
            Ok(_) => {}
            Err(Undelivered(e)) => {
                tracing::debug!(peer, error = %e, "asking a peer for a device failed")
            }
        }
    }
    resp
}

/// Whether a response is `404 DeviceNotOnline` (the commands API marks it).
fn is_offline(resp: &Response) -> bool {
    resp.status() == StatusCode::NOT_FOUND && resp.headers().contains_key(DEVICE_OFFLINE_HEADER)
}

/// The whole request body, which forwarding needs in hand; over the node's limit: 413.
async fn read_body(st: &Node, body: Body) -> Result<bytes::Bytes, Response> {
    axum::body::to_bytes(body, st.config.max_body_bytes)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the request body exceeds {} bytes",
                    st.config.max_body_bytes
                ),
            )
            .into_response()
        })
}

fn unavailable(message: String) -> Response {
    ApiError {
        retry_after_s: Some(1),
        ..ApiError::new(ErrorCode::ServiceUnavailable, message)
    }
    .into_response()
}

/// A forward that certainly did not reach the leader's handler.
struct Undelivered(String);

async fn forward_http(
    st: &Node,
    leader: NodeId,
    parts: &axum::http::request::Parts,
    body: &bytes::Bytes,
) -> Result<Response, Undelivered> {
    let msg = Forwarded::Http {
        method: parts.method.to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "/".into()),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect(),
        body: body.to_vec(),
    };
    let payload = doppel_cluster::rpc::encode(&msg).map_err(Undelivered)?;
    let cluster = st.proposer.cluster();
    let bytes = cluster
        .forward(leader, payload, FORWARD_TIMEOUT)
        .await
        // A timeout after delivery is ambiguous; the transport reports it distinctly,
        // and it is not retried (see the module docs) because it is a Timeout text.
        .map_err(Undelivered)?;
    let answer: HttpAnswer = doppel_cluster::rpc::decode(&bytes).map_err(Undelivered)?;
    let mut resp = Response::new(Body::from(answer.body));
    *resp.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in answer.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::from_bytes(&v)) {
            resp.headers_mut().append(k, v);
        }
    }
    Ok(resp)
}

/// Serves an HTTP request another node forwarded here through this node's router.
pub async fn serve_forwarded(
    router: axum::Router,
    from: NodeId,
    method: String,
    uri: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
) -> HttpAnswer {
    use tower::ServiceExt;
    let mut builder = axum::http::Request::builder()
        .method(method.as_str())
        .uri(uri);
    for (k, v) in headers {
        builder = builder.header(k, v);
    }
    builder = builder.header(FORWARDED, from.to_string());
    let resp = match builder.body(Body::from(body)) {
        Ok(req) => match router.oneshot(req).await {
            Ok(r) => r,
            Err(e) => match e {},
        },
        Err(e) => {
            return HttpAnswer {
                status: 400,
                headers: Vec::new(),
                body: format!("malformed forwarded request: {e}").into_bytes(),
            }
        }
    };
    let (parts, body) = resp.into_parts();
    let body = axum::body::to_bytes(body, 256 * 1024 * 1024)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    HttpAnswer {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect(),
        body,
    }
}
