//! Routing in a cluster: every request and device message reaches the leader of the
//! Raft group that owns what it touches.
//!
//! ```text
//!  REST request ─▶ route_to_leader (middleware)
//!     group = shard_of(tenant, twin/device id) | meta (models, tokens) | none (lists, streams)
//!     none              ─▶ handled here, on local state
//!     leader is here    ─▶ GET: read barrier (read index, a quorum heartbeat) ─▶ handler
//!                          write: handler ─▶ twin actor ─▶ Proposer ─▶ Raft
//!     leader elsewhere  ─▶ forwarded whole over QUIC; the leader runs the same router
//!  device message / internal command ─▶ execute(): local twin actor or forwarded Command
//! ```
//!
//! Retries: a forward is retried (against the newly elected leader) only when it cannot
//! have been applied: the transport could not deliver it, or the receiver answered
//! `NotLeader` before evaluating it. A write that timed out waiting for a quorum is
//! reported as 503 and never replayed.

use crate::actors::ActorError;
use crate::server::api_error::ApiError;
use crate::server::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use doppel_cluster::node::ForwardHandler;
use doppel_cluster::raft::{GroupId, NodeId, META_GROUP};
use doppel_cluster::ProposeError;
use doppel_twins::keys::shard_of;
use doppel_twins::{Command, ErrorKind, Outcome, TwinError};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Set on a request another node forwarded here: it is never forwarded again.
pub const FORWARDED: &str = "x-doppel-forwarded";
/// Marks a 503 whose request was not evaluated (the node no longer leads the group).
pub const NOT_LEADER_HEADER: &str = "x-doppel-not-leader";
/// `local` skips the read barrier of a GET (reads this node's applied state as is).
pub const CONSISTENCY: &str = "x-doppel-consistency";

/// How long a request waits for a leader to exist / to be reached before 503.
const ROUTE_DEADLINE: Duration = Duration::from_secs(8);
const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Serialize, Deserialize)]
enum Forwarded {
    Http {
        method: String,
        uri: String,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    },
    /// A command as JSON (commands hold JSON values, which only JSON carries faithfully).
    Command(Vec<u8>),
}

#[derive(Debug, Serialize, Deserialize)]
struct HttpAnswer {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// A forwarded command's result, as JSON.
#[derive(Debug, Serialize, Deserialize)]
enum CommandAnswer {
    Ok(Box<Outcome>),
    /// Rejected by the state machine (the request itself is wrong).
    Rejected {
        kind: ErrorKind,
        code: String,
        message: String,
    },
    /// The leader changed before the command was evaluated: safe to retry.
    NotLeader {
        leader: Option<NodeId>,
    },
    /// Anything else (overload, suspension, no quorum): the caller may retry later.
    Failed {
        message: String,
    },
}

/// The group a REST request belongs to, if it addresses one twin, device, model or token.
fn group_of(st: &AppState, tenant: &str, path: &str) -> Option<GroupId> {
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
pub async fn route_to_leader(State(st): State<AppState>, req: Request, next: Next) -> Response {
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
        Some(h) => match crate::server::auth::authenticate(&st.storage, Some(h)) {
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
            if moved && !forwarded && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
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
                if !retry || Instant::now() > deadline {
                    return resp;
                }
            }
            Err(Undelivered(e)) => {
                if Instant::now() > deadline {
                    return unavailable(format!(
                        "the leader of shard group {group} (node {leader}) cannot be reached: {e}"
                    ));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Resolves once this node sees `group` led by someone other than `from` (or by no
/// one: an election started because `from` went silent).
async fn leader_moved(cluster: &doppel_cluster::node::ClusterNode, group: GroupId, from: NodeId) {
    let Some(raft) = cluster.raft(group) else {
        return std::future::pending().await;
    };
    let mut rx = raft.metrics();
    loop {
        if rx.borrow_and_update().current_leader != Some(from) {
            return;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
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

async fn command_anywhere(st: &AppState, req: Request, next: Next) -> Response {
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

/// Set by the commands API on `404 DeviceNotOnline`, so routing can ask other nodes.
pub const DEVICE_OFFLINE_HEADER: &str = "x-doppel-device-offline";

/// The whole request body, which forwarding needs in hand; over the node's limit: 413.
async fn read_body(st: &AppState, body: Body) -> Result<bytes::Bytes, Response> {
    axum::body::to_bytes(body, st.config.max_body_bytes)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
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
        ..ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        )
    }
    .into_response()
}

/// A forward that certainly did not reach the leader's handler.
struct Undelivered(String);

async fn forward_http(
    st: &AppState,
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

/// Runs a command where it belongs: through the local twin actor (twin commands) or
/// proposer when this node leads the command's group, else forwarded to the leader.
pub async fn execute(st: &AppState, cmd: Command) -> Result<Outcome, ActorError> {
    let cluster = st.proposer.cluster().clone();
    let group = st.proposer.group_of(&cmd);
    let deadline = Instant::now() + ROUTE_DEADLINE;
    loop {
        let leader = match cluster.leader_of(group) {
            Some(l) => l,
            None => cluster
                .wait_leader(group, deadline.saturating_duration_since(Instant::now()))
                .await
                .map_err(|e| ActorError::Propose(ProposeError::from(e)))?,
        };
        let result = if leader == cluster.node_id() {
            execute_here(st, cmd.clone()).await
        } else {
            tokio::select! {
                r = forward_command(st, leader, &cmd) => r,
                () = leader_moved(&cluster, group, leader) => Err(ActorError::Unavailable(format!(
                    "node {leader}, the leader of shard group {group}, was replaced while the \
                     command was in flight to it: it may or may not have been applied"
                ))),
            }
        };
        match result {
            Err(ActorError::Propose(ProposeError::NotLeader { .. }))
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// [`execute`] for several telemetry commands, in order (result *i* answers command
/// *i*). When this node leads their groups they are queued together, so one device's
/// back-to-back messages share a Raft entry; otherwise each goes the [`execute`] way.
pub async fn execute_telemetry(
    st: &AppState,
    cmds: Vec<Command>,
) -> Vec<Result<Outcome, ActorError>> {
    debug_assert!(cmds
        .iter()
        .all(|c| matches!(c, Command::RecordTelemetry { .. })));
    let cluster = st.proposer.cluster();
    let here = cluster.node_id();
    let local = cmds
        .iter()
        .all(|c| cluster.leader_of(st.proposer.group_of(c)) == Some(here));
    let mut results = Vec::with_capacity(cmds.len());
    if !local {
        for cmd in cmds {
            results.push(execute(st, cmd).await);
        }
        return results;
    }
    // Copies only where leadership can move between the check and the evaluation.
    let copies = if cluster.is_single_voter() {
        Vec::new()
    } else {
        cmds.clone()
    };
    for (i, r) in st.proposer.propose_many(cmds).await.into_iter().enumerate() {
        results.push(match (r, copies.get(i)) {
            // The leader moved away meanwhile: nothing was applied; go the long way.
            (Err(ProposeError::NotLeader { .. }), Some(cmd)) => execute(st, cmd.clone()).await,
            (r, _) => r.map_err(ActorError::Propose),
        });
    }
    results
}

async fn execute_here(st: &AppState, cmd: Command) -> Result<Outcome, ActorError> {
    if cmd.twin().is_some() && !matches!(cmd, Command::RecordTelemetry { .. }) {
        st.twins.execute(cmd).await
    } else {
        // Telemetry never changes the twin record, so no actor copy can go stale: it
        // goes straight to the commit path (whose bounded queue is the back-pressure).
        st.proposer.propose(cmd).await.map_err(ActorError::Propose)
    }
}

async fn forward_command(
    st: &AppState,
    leader: NodeId,
    cmd: &Command,
) -> Result<Outcome, ActorError> {
    let json = serde_json::to_vec(cmd).map_err(|e| ActorError::Unavailable(e.to_string()))?;
    let payload =
        doppel_cluster::rpc::encode(&Forwarded::Command(json)).map_err(ActorError::Unavailable)?;
    let bytes = match st
        .proposer
        .cluster()
        .forward(leader, payload, FORWARD_TIMEOUT)
        .await
    {
        Ok(b) => b,
        // Not delivered: as good as "not the leader" (retried while the deadline lasts).
        Err(e) => {
            tracing::debug!(leader, error = %e, "forwarding a command failed");
            return Err(ActorError::Propose(ProposeError::NotLeader {
                group: st.proposer.group_of(cmd),
                leader: None,
            }));
        }
    };
    match serde_json::from_slice::<CommandAnswer>(&bytes) {
        Ok(CommandAnswer::Ok(o)) => Ok(*o),
        Ok(CommandAnswer::Rejected {
            kind,
            code,
            message,
        }) => Err(ActorError::Propose(ProposeError::Rejected(
            TwinError::remote(kind, &code, message),
        ))),
        Ok(CommandAnswer::NotLeader { leader }) => {
            Err(ActorError::Propose(ProposeError::NotLeader {
                group: st.proposer.group_of(cmd),
                leader,
            }))
        }
        Ok(CommandAnswer::Failed { message }) => Err(ActorError::Unavailable(message)),
        Err(e) => Err(ActorError::Unavailable(format!(
            "unreadable answer from node {leader}: {e}"
        ))),
    }
}

/// Handles what other nodes forward here.
pub struct Forwarder {
    pub state: AppState,
    pub router: axum::Router,
}

impl ForwardHandler for Forwarder {
    fn handle(&self, from: NodeId, payload: Vec<u8>) -> BoxFuture<'static, Vec<u8>> {
        let state = self.state.clone();
        let router = self.router.clone();
        Box::pin(async move {
            match doppel_cluster::rpc::decode::<Forwarded>(&payload) {
                Ok(Forwarded::Http {
                    method,
                    uri,
                    headers,
                    body,
                }) => {
                    let answer = handle_http(router, from, method, uri, headers, body).await;
                    doppel_cluster::rpc::encode(&answer).unwrap_or_default()
                }
                Ok(Forwarded::Command(json)) => {
                    let answer = match serde_json::from_slice::<Command>(&json) {
                        Err(e) => CommandAnswer::Rejected {
                            kind: ErrorKind::Invalid,
                            code: "InvalidArgument".into(),
                            message: format!("malformed forwarded command: {e}"),
                        },
                        Ok(cmd) => match execute_here(&state, cmd).await {
                            Ok(o) => CommandAnswer::Ok(Box::new(o)),
                            Err(ActorError::Propose(ProposeError::Rejected(e))) => {
                                CommandAnswer::Rejected {
                                    kind: e.kind(),
                                    code: e.code().to_owned(),
                                    message: e.to_string(),
                                }
                            }
                            Err(ActorError::Propose(ProposeError::NotLeader {
                                leader, ..
                            })) => CommandAnswer::NotLeader { leader },
                            Err(e) => CommandAnswer::Failed {
                                message: e.to_string(),
                            },
                        },
                    };
                    serde_json::to_vec(&answer).unwrap_or_default()
                }
                Err(e) => doppel_cluster::rpc::encode(&HttpAnswer {
                    status: 400,
                    headers: Vec::new(),
                    body: e.into_bytes(),
                })
                .unwrap_or_default(),
            }
        })
    }
}

async fn handle_http(
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
