//! doppel-node: one doppel node as a library — its assembly, its dispatch of commands to
//! the right shard leader, the coordination of changes that span shards, the twin
//! actors, and the edges (HTTP, devices) that call them.
//!
//! Layers, each importing only the ones below it (checked by `tests/layering.rs`):
//!
//! ```text
//!  start         Node::start: storage, Raft groups, actors, bootstrap, listeners (the one assembly)
//!  ─────────────────────────────────────────────────────────────────────────────────────────
//!  http  edge    edges: HTTP (parse, authenticate, call the node, map results); devices
//!                (the node as the CommandSink of doppel-protocols' IoT Hub adapters)
//!  ─────────────────────────────────────────────────────────────────────────────────────────
//!  coordination  changes that must agree with every shard (mark → check → finish | abort)
//!  dispatch      a Command to its shard's leader: the local twin actor / proposer, or forwarded
//!  bootstrap     first start: tenant `default` and its admin token
//!  ─────────────────────────────────────────────────────────────────────────────────────────
//!  node          the Node handle every layer above shares (storage, proposer, actors, config)
//!  actors  tokens  config  tls          building blocks with no knowledge of the layers above
//! ```
//!
//! Contract: state changes only through a `doppel_twins::Command` handed to
//! [`dispatch`]; reads only through `doppel_twins` (committed storage). Nothing here
//! names a RocksDB column family outside what `doppel_twins` exposes.

pub mod actors;
pub mod bootstrap;
pub mod config;
pub mod coordination;
pub mod dispatch;
pub mod edge;
pub mod forward;
pub mod http;
pub mod node;
pub mod start;
pub mod tls;
pub mod tokens;

pub use config::NodeConfig;
pub use node::Node;
pub use start::RunningNode;
