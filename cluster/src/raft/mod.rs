//! Raft replication of doppel's shards (openraft 0.9, `storage-v2`).
//!
//! Why openraft 0.9 and not 0.10: 0.10 is still an alpha whose traits are moving
//! (`RaftNetworkV2`, a second type parameter); 0.9.25 is the stable line and its storage
//! test suite is what our RocksDB stores are checked against. 0.9 has no multi-raft
//! helper, so doppel runs one `Raft` per group and its transport tags every RPC with
//! the group id (see `network`).
//!
//! ## What a log entry carries
//!
//! Leader-evaluated write sets, not commands. The shard leader evaluates each
//! [`doppel_twins::Command`] with the deterministic `StateMachine` against its own,
//! fully applied state (it reads models and other shards' twins, which a follower could
//! see at a different point), and replicates the resulting [`ShardRequest`]: the writes
//! plus the change events they produce. Every replica applies the writes, together with
//! the applied log id, in one RocksDB write batch. Applying therefore needs neither the
//! clock, nor randomness, nor any other group's state, and replicas stay byte-identical.
//!
//! Every key a group's entries write starts with that group's shard prefix
//! (`shard u32 BE`; the meta group is [`doppel_twins::keys::META_SHARD`]), so a shard's
//! snapshot is exactly the key range of that prefix.

pub mod network;
pub mod store;

use doppel_twins::{WireEvent, Write};
use serde::{Deserialize, Serialize};
use std::io::Cursor;

/// A Raft group: a data shard `0..shard_count`, or the meta group ([`META_GROUP`]).
pub type GroupId = u32;
/// The meta group holds tenants, models, tokens and the cluster map.
pub const META_GROUP: GroupId = doppel_twins::keys::META_SHARD;
pub type NodeId = u64;

/// The application data of one log entry: what one evaluated group of commands writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRequest {
    /// Every key starts with the group's shard prefix.
    pub writes: Vec<Write>,
    /// Published on every replica once the entry is applied, in log order.
    pub events: Vec<WireEvent>,
}

/// Applying an entry has no result beyond "applied": the proposer already has each
/// command's outcome from evaluating it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardResponse {}

impl std::fmt::Display for ShardRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ShardRequest({} writes, {} events)",
            self.writes.len(),
            self.events.len()
        )
    }
}

openraft::declare_raft_types!(
    /// doppel's openraft type configuration (shared by every group).
    pub TypeConfig:
        D = ShardRequest,
        R = ShardResponse,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;

/// The shard prefix of every key group `group` owns.
pub fn group_prefix(group: GroupId) -> [u8; 4] {
    group.to_be_bytes()
}
