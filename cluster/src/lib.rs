//! doppel-cluster: where doppel's state lives, how it is replicated and made durable.
//!
//! - [`storage`]: the node's one RocksDB (twin state and Raft log/state);
//! - [`raft`]: one openraft group per data shard plus the meta group, with RocksDB
//!   log and state-machine stores ([`raft::store`]) and a network over the transport;
//! - [`transport`]: one QUIC connection per node pair, mutual TLS with the cluster's
//!   own CA ([`certs`]);
//! - [`node`]: a node's groups, membership (form / join), read barriers, status;
//! - [`leader_watch`]: who leads a group, as a stream of changes (what the layers above
//!   watch; they never see openraft's `Raft`);
//! - [`proposer`]: from a `Command` to a replicated, applied write set.

pub mod certs;
pub mod leader_watch;
pub mod node;
pub mod proposer;
pub mod raft;
pub mod rpc;
pub mod storage;
pub mod transport;

pub use proposer::{CommitStats, ProposeError, Proposer};
pub use storage::{Storage, StorageConfig, StorageError};
