//! doppel-cluster: where doppel's state lives and how it is made durable.
//!
//! Today: the node's RocksDB ([`storage`]) and the group-commit path that applies
//! `Command`s to it ([`group_commit`]). The cluster issue adds openraft groups and the
//! QUIC transport in front of the same state machine and storage layout.

pub mod group_commit;
pub mod raft;
pub mod storage;

pub use group_commit::{CommitStats, ProposeError, Proposer};
pub use storage::{Storage, StorageConfig, StorageError};
