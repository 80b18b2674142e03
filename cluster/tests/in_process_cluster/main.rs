//! Fault schedules you can replay: a cluster of in-process nodes whose Raft messages go
//! through an in-memory router that drops, delays and partitions them by seeded rule.
//!
//! - `fixture`: [`fixture::TestCluster`], N nodes with real RocksDB stores in temp dirs
//!   (the real log store and state machine), write and read helpers, leader lookup,
//!   `partition` / `isolate` / `heal`, `crash` / `restart` (reopen the store from disk),
//!   loss and delay rules;
//! - `router`: the in-memory network ([`router::Router`]) and its rules and trace;
//! - one file per behaviour under test.
//!
//! The nodes plug into the production code at one seam, the Raft network's
//! `RaftWire::InProcess` (`doppel_cluster::raft::network`): everything above it (openraft,
//! the stores, RocksDB) is what a deployment runs; the QUIC transport is not used (its
//! own tests and the real-process tests in `tests/` cover it).
//!
//! ## Replaying a seed
//!
//! Each test prints its seed; a failing one prints it again with the end of the router's
//! trace and the command to replay it:
//!
//! ```sh
//! DOPPEL_SEED=1234 cargo test --workspace -- acked_writes_survive_random_faults
//! ```
//!
//! Without `DOPPEL_SEED` (or with `DOPPEL_SEED=random`) each run draws a new seed.
//!
//! ## What a seed pins down, and what it does not
//!
//! Under the seed:
//! - the fate of the k-th message on each link a→b (delivered, delayed by how much,
//!   lost, answer lost): a pure function of (seed, a, b, k) and the rules in force;
//! - the tests' fault schedules (which node is isolated at which step);
//! - each node's election timeout (openraft draws it from an unseeded thread RNG in
//!   `min..max`; the fixture sets `max = min + 1` and picks `min` from the seed).
//!
//! Every test runs on a current-thread tokio runtime with a paused clock
//! (`start_paused`), so timers (heartbeats, elections, delays, deadlines) run in
//! virtual time: a schedule that spans tens of virtual seconds takes well under one
//! real second, and timer order does not depend on machine load.
//!
//! Not under the seed: when a store's blocking work (vote saves and log truncations
//! go to tokio's blocking pool) completes relative to the other tasks of the runtime.
//! The paused clock waits for it (no timer fires while it runs), but the task it wakes
//! rejoins the run queue at a point that depends on thread timing. So which message
//! is the k-th on a link can differ between two runs of one seed, and the two traces
//! can then diverge. `fault_schedule_replays_from_seed` measures this: it runs one
//! seed several times and reports how long the traces stay identical; what it asserts is
//! the part that holds by construction (per link, the k-th decision is the same).
//! A failing seed therefore replays the same schedule and the same per-message fates,
//! which in practice reproduces the failure; it is not a bit-for-bit replay of every
//! interleaving.

mod fixture;
mod router;

mod acked_writes_survive_random_faults;
mod crashed_node_catches_up_from_disk;
mod fault_schedule_replays_from_seed;
mod minority_partition_cannot_commit;
