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
//!
//! ## Testing with faults you can replay
//!
//! Besides the unit tests beside the code, `cluster/tests/in_process_cluster/` runs whole
//! clusters inside the test process: N nodes, each with a real RocksDB in a temp dir and
//! the real Raft stores, whose RPCs go through an in-memory router plugged in at
//! [`raft::network::RaftWire::InProcess`]. The router drops, delays and partitions
//! messages by rule, deciding the fate of the k-th message on each link from the seed
//! alone; nodes can be crashed and restarted from their disk; the tokio clock is paused,
//! so a schedule spanning virtual seconds runs in a fraction of a real one. Each test
//! prints its seed, and a failing one the end of the router's trace; replay it with
//!
//! ```sh
//! DOPPEL_SEED=<seed> cargo test --workspace -- <test name>
//! ```
//!
//! What a seed pins down (and what it cannot: the completion order of the stores'
//! blocking-pool work) is in that directory's `main.rs`.

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
