//! Dispatch: a [`Command`] runs on the leader of the Raft group that owns it.
//!
//! ```text
//!  execute(cmd) ─▶ group = shard of (tenant, twin) | meta
//!     leader is here   ─▶ twin command: the twin's actor ─▶ Proposer
//!                         other:        Proposer (its bounded queue is the back-pressure)
//!     leader elsewhere ─▶ forwarded over QUIC (`Forwarded::Command`); the leader runs
//!                         `execute_forwarded` on it
//! ```
//!
//! Retries: a command is retried (against the newly elected leader) only when it cannot
//! have been applied: the transport could not deliver it, or the receiver answered
//! `NotLeader` before evaluating it. A command whose leader was replaced while it was
//! in flight is reported as unavailable (it may or may not have been applied) and never
//! replayed.

use crate::actors::ActorError;
use crate::forward::{CommandAnswer, Forwarded};
use crate::node::Node;
use doppel_cluster::node::ClusterNode;
use doppel_cluster::raft::{GroupId, NodeId};
use doppel_cluster::ProposeError;
use doppel_protocols::retry::Backoff;
use doppel_twins::{Command, ErrorCode, ErrorKind, Outcome, TwinError};
use std::time::{Duration, Instant};

/// How long a request waits for a leader to exist / to be reached before giving up.
pub(crate) const ROUTE_DEADLINE: Duration = Duration::from_secs(8);
/// How long a forwarded request or command may take on the leader.
pub(crate) const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);

/// Resolves once this node sees `group` led by someone other than `from` (or by no
/// one: an election started because `from` went silent).
pub(crate) async fn leader_moved(cluster: &ClusterNode, group: GroupId, from: NodeId) {
    let Some(mut leader) = cluster.leader_watch(group) else {
        return std::future::pending().await;
    };
    let mut current = leader.current();
    while current == Some(from) {
        match leader.changed().await {
            Ok(now) => current = now,
            Err(_) => return std::future::pending().await,
        }
    }
}

/// Runs a command where it belongs: through the local twin actor (twin commands) or
/// proposer when this node leads the command's group, else forwarded to the leader.
pub async fn execute(node: &Node, cmd: Command) -> Result<Outcome, ActorError> {
    let cluster = node.proposer.cluster().clone();
    let group = node.proposer.group_of(&cmd);
    let deadline = Instant::now() + ROUTE_DEADLINE;
    let mut backoff = Backoff::until(
        deadline,
        Duration::from_millis(50),
        Duration::from_millis(500),
    );
    loop {
        let leader = match cluster.leader_of(group) {
            Some(l) => l,
            None => cluster
                .wait_leader(group, deadline.saturating_duration_since(Instant::now()))
                .await
                .map_err(|e| ActorError::Propose(ProposeError::from(e)))?,
        };
        let result = if leader == cluster.node_id() {
            execute_here(node, cmd.clone()).await
        } else {
            tokio::select! {
                r = forward_command(node, leader, &cmd) => r,
                () = leader_moved(&cluster, group, leader) => Err(ActorError::Unavailable(format!(
                    "node {leader}, the leader of shard group {group}, was replaced while the \
                     command was in flight to it: it may or may not have been applied"
                ))),
            }
        };
        // Not the leader (any more): nothing was applied; try the new one.
        let not_leader = matches!(
            result,
            Err(ActorError::Propose(ProposeError::NotLeader { .. }))
        );
        if !not_leader || !backoff.wait().await {
            return result;
        }
    }
}

/// [`execute`] for several telemetry commands, in order (result *i* answers command
/// *i*). When this node leads their groups they are queued together, so one device's
/// back-to-back messages share a Raft entry; otherwise each goes the [`execute`] way.
pub async fn execute_telemetry(
    node: &Node,
    cmds: Vec<Command>,
) -> Vec<Result<Outcome, ActorError>> {
    debug_assert!(cmds
        .iter()
        .all(|c| matches!(c, Command::RecordTelemetry { .. })));
    let cluster = node.proposer.cluster();
    let here = cluster.node_id();
    let local = cmds
        .iter()
        .all(|c| cluster.leader_of(node.proposer.group_of(c)) == Some(here));
    let mut results = Vec::with_capacity(cmds.len());
    if !local {
        for cmd in cmds {
            results.push(execute(node, cmd).await);
        }
        return results;
    }
    // Copies only where leadership can move between the check and the evaluation.
    let copies = if cluster.is_single_voter() {
        Vec::new()
    } else {
        cmds.clone()
    };
    for (i, r) in node
        .proposer
        .propose_many(cmds)
        .await
        .into_iter()
        .enumerate()
    {
        results.push(match (r, copies.get(i)) {
            // The leader moved away meanwhile: nothing was applied; go the long way.
            (Err(ProposeError::NotLeader { .. }), Some(cmd)) => execute(node, cmd.clone()).await,
            (r, _) => r.map_err(ActorError::Propose),
        });
    }
    results
}

/// Runs a command on this node, which leads (or led a moment ago) its group.
pub async fn execute_here(node: &Node, cmd: Command) -> Result<Outcome, ActorError> {
    if cmd.twin().is_some() && !matches!(cmd, Command::RecordTelemetry { .. }) {
        node.twins.execute(cmd).await
    } else {
        // Telemetry never changes the twin record, so no actor copy can go stale: it
        // goes straight to the commit path (whose bounded queue is the back-pressure).
        node.proposer
            .propose(cmd)
            .await
            .map_err(ActorError::Propose)
    }
}

async fn forward_command(
    node: &Node,
    leader: NodeId,
    cmd: &Command,
) -> Result<Outcome, ActorError> {
    let json = serde_json::to_vec(cmd).map_err(|e| ActorError::Unavailable(e.to_string()))?;
    let payload =
        doppel_cluster::rpc::encode(&Forwarded::Command(json)).map_err(ActorError::Unavailable)?;
    let bytes = match node
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
                group: node.proposer.group_of(cmd),
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
            TwinError::remote(kind, code, message),
        ))),
        Ok(CommandAnswer::NotLeader { leader }) => {
            Err(ActorError::Propose(ProposeError::NotLeader {
                group: node.proposer.group_of(cmd),
                leader,
            }))
        }
        Ok(CommandAnswer::Failed { message }) => Err(ActorError::Unavailable(message)),
        Err(e) => Err(ActorError::Unavailable(format!(
            "unreadable answer from node {leader}: {e}"
        ))),
    }
}

/// Runs a command another node forwarded here (as JSON) and encodes its answer.
pub async fn execute_forwarded(node: &Node, json: &[u8]) -> Vec<u8> {
    let answer = match serde_json::from_slice::<Command>(json) {
        Err(e) => CommandAnswer::Rejected {
            kind: ErrorKind::Invalid,
            code: ErrorCode::InvalidArgument,
            message: format!("malformed forwarded command: {e}"),
        },
        Ok(cmd) => match execute_here(node, cmd).await {
            Ok(o) => CommandAnswer::Ok(Box::new(o)),
            Err(ActorError::Propose(ProposeError::Rejected(e))) => CommandAnswer::Rejected {
                kind: e.kind(),
                code: e.code(),
                message: e.to_string(),
            },
            Err(ActorError::Propose(ProposeError::NotLeader { leader, .. })) => {
                CommandAnswer::NotLeader { leader }
            }
            Err(e) => CommandAnswer::Failed {
                message: e.to_string(),
            },
        },
    };
    serde_json::to_vec(&answer).unwrap_or_default()
}
