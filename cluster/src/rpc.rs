//! The messages nodes exchange over the cluster transport (one QUIC stream per call).
//!
//! Encoding: bincode 2 (serde) of [`Request`] / [`Response`]; the transport frames them
//! with its protocol version byte. Application payloads that hold JSON (forwarded HTTP
//! requests) travel as opaque bytes, because bincode cannot decode self-describing
//! `serde_json::Value`s.

use crate::raft::{GroupId, NodeId, TypeConfig};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    AppendEntries {
        group: GroupId,
        rpc: AppendEntriesRequest<TypeConfig>,
    },
    Vote {
        group: GroupId,
        rpc: VoteRequest<NodeId>,
    },
    InstallSnapshot {
        group: GroupId,
        rpc: InstallSnapshotRequest<TypeConfig>,
    },
    /// "Confirm you lead these groups and tell me the log index a linearizable read
    /// must wait for" (the Raft read-index protocol, answered by each group's leader).
    ReadIndex { groups: Vec<GroupId> },
    /// A new node asks to become a replica of every group.
    Join { node_id: NodeId, addr: String },
    /// Make `node_id` a voter of `group` (sent to that group's leader).
    AddVoter {
        group: GroupId,
        node_id: NodeId,
        addr: String,
    },
    /// An application request for this node to handle as if it had arrived here (a
    /// REST call routed to the leader of its shard). Opaque to the cluster crate.
    Forward(Vec<u8>),
    /// This node's view of every group, for `doppel cluster status`.
    Status,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    ReadIndex(Vec<(GroupId, Result<u64, ReadIndexError>)>),
    Done,
    Forward(Vec<u8>),
    Status(NodeStatus),
    /// The request could not be handled at all (unknown group, malformed, shutting down).
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ReadIndexError {
    #[error("node {node} does not lead group {group} (leader: {leader:?})")]
    NotLeader {
        node: NodeId,
        group: GroupId,
        leader: Option<NodeId>,
    },
    #[error("group {group}: {reason}")]
    Unavailable { group: GroupId, reason: String },
}

/// One node's view of the cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub addr: String,
    pub groups: Vec<GroupStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupStatus {
    pub group: GroupId,
    /// "Leader", "Follower", "Candidate" or "Learner".
    pub role: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    pub snapshot: Option<u64>,
    /// Log entries up to here were purged (covered by the snapshot).
    pub purged: Option<u64>,
    /// On the leader: each replica's matched log index (lag = last_log_index − matched).
    pub replication: Vec<(NodeId, Option<u64>)>,
}

pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).map_err(|e| e.to_string())
}

pub fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    bincode::serde::decode_from_slice(b, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| format!("malformed cluster message: {e}"))
}
