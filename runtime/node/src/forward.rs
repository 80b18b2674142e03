//! What one node forwards to another over the cluster transport: a whole HTTP request
//! (to the leader of the group it addresses) or a `Command` (to the leader of its
//! shard), and their answers. Encoded with `doppel_cluster::rpc` (versioned bincode).

use doppel_cluster::raft::NodeId;
use doppel_twins::{ErrorCode, ErrorKind, Outcome};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub enum Forwarded {
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
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// A forwarded command's result, as JSON.
#[derive(Debug, Serialize, Deserialize)]
pub enum CommandAnswer {
    Ok(Box<Outcome>),
    /// Rejected by the state machine (the request itself is wrong).
    Rejected {
        kind: ErrorKind,
        code: ErrorCode,
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
