//! `/cluster`: the cluster's shape and health (operators), and fault injection for tests.
//!
//! `GET /cluster/status` asks every member for its view (over the cluster transport) and
//! returns the nodes, and per group its leader, voters, and each replica's lag behind
//! the leader's log. A member that does not answer is listed as unreachable.
//!
//! `POST /cluster/fault` `{"isolate": [2, 3]}` makes this node drop all cluster traffic
//! to and from those nodes (`[]` heals). It exists only when the node was started with
//! `fault_injection = true` (`--fault-injection`), for partition tests.

use super::api_error::{ApiError, ApiResult};
use super::auth::Caller;
use super::body::JsonBody;
use crate::node::Node;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use doppel_cluster::raft::META_GROUP;
use doppel_cluster::rpc::{NodeStatus, Request, Response};
use doppel_twins::ErrorCode;
use doppel_twins::Role;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

pub fn routes() -> Router<Node> {
    Router::new()
        .route("/cluster/status", get(status))
        .route("/cluster/fault", post(fault))
}

fn group_name(g: u32) -> String {
    if g == META_GROUP {
        "meta".into()
    } else {
        g.to_string()
    }
}

async fn status(State(st): State<Node>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(Role::Operator)?;
    let cluster = st.proposer.cluster().clone();
    let me = cluster.node_id();
    let mine = cluster.status();
    let mut views: Vec<(u64, String, Option<NodeStatus>, Option<String>)> = Vec::new();
    let mut members = cluster.members();
    if members.is_empty() {
        members.push((me, "local".into()));
    }
    for (id, addr) in members {
        if id == me {
            views.push((id, addr, Some(mine.clone()), None));
            continue;
        }
        match cluster
            .call(id, &Request::Status, Duration::from_secs(2))
            .await
        {
            Ok(Response::Status(s)) => views.push((id, addr, Some(s), None)),
            Ok(other) => views.push((id, addr, None, Some(format!("{other:?}")))),
            Err(e) => views.push((id, addr, None, Some(e))),
        }
    }
    let nodes: Vec<Value> = views
        .iter()
        .map(|(id, addr, s, err)| {
            let leads = s
                .as_ref()
                .map(|s| s.groups.iter().filter(|g| g.leader == Some(*id)).count());
            json!({
                "nodeId": id,
                "addr": addr,
                "reachable": s.is_some(),
                "error": err,
                "leaderOf": leads,
            })
        })
        .collect();
    // Each group as its leader reports it (the leader knows every replica's progress).
    let mut groups = Vec::new();
    for g in &mine.groups {
        let leader_view = g.leader.and_then(|l| {
            views
                .iter()
                .find(|(id, _, _, _)| *id == l)
                .and_then(|(_, _, s, _)| s.as_ref())
                .and_then(|s| s.groups.iter().find(|x| x.group == g.group))
        });
        let replicas: Vec<Value> = g
            .voters
            .iter()
            .map(|v| {
                let matched = leader_view
                    .and_then(|lv| lv.replication.iter().find(|(n, _)| n == v))
                    .and_then(|(_, m)| *m);
                let lag = match (leader_view.and_then(|lv| lv.last_log_index), matched) {
                    (Some(last), Some(m)) => Some(last.saturating_sub(m)),
                    _ => None,
                };
                json!({ "node": v, "matched": matched, "lag": lag })
            })
            .collect();
        groups.push(json!({
            "group": group_name(g.group),
            "leader": g.leader,
            "term": g.term,
            "voters": g.voters,
            "learners": g.learners,
            "lastLogIndex": leader_view.and_then(|lv| lv.last_log_index).or(g.last_log_index),
            "snapshot": leader_view.and_then(|lv| lv.snapshot),
            "purged": leader_view.and_then(|lv| lv.purged),
            "replicas": replicas,
        }));
    }
    let leaderless = mine.groups.iter().filter(|g| g.leader.is_none()).count();
    Ok(Json(json!({
        "nodeId": me,
        "shards": st.shard_count,
        "healthy": leaderless == 0 && views.iter().all(|v| v.2.is_some()),
        "groupsWithoutLeader": leaderless,
        "nodes": nodes,
        "groups": groups,
    })))
}

async fn fault(
    State(st): State<Node>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    caller.require(Role::Operator)?;
    if !st.config.fault_injection {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "fault injection is off on this node (start it with --fault-injection)",
        ));
    }
    let ids = body
        .get("isolate")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_request("isolate: an array of node ids is required"))?;
    let mut set = HashSet::new();
    for (i, v) in ids.iter().enumerate() {
        let id = v.as_u64().ok_or_else(|| {
            ApiError::bad_request(format!(
                "isolate[{i}]: a node id (positive integer) is required"
            ))
        })?;
        set.insert(id);
    }
    let transport =
        st.proposer.cluster().transport().ok_or_else(|| {
            ApiError::bad_request("this node has no cluster transport to isolate")
        })?;
    transport.set_isolated(set.clone());
    tracing::warn!(isolated = ?set, "fault injection: cluster traffic to/from these nodes is dropped");
    Ok(Json(json!({ "isolated": set })))
}
