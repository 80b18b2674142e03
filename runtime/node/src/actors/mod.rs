//! The actor runtime (ractor): every active twin is a lightweight entity multiplexed on
//! a twin host actor (one per tenant × data shard in use), supervised per tenant.
//!
//! ```text
//!                         NodeSupervisor              (one per node; spawns on first use)
//!                        /              \
//!          TenantSupervisor(acme)   TenantSupervisor(globex)   host failures, restart budget
//!            /        |                  |
//!     TwinHost(s3)  TwinHost(s17)     TwinHost(s3)      one ractor actor per tenant × shard
//!     {p1, p2, …}   {p9, …}           {m7, …}           twins: activated from storage on
//!                                                       first use, passivated when idle
//!
//!  handler ─▶ TwinActors::execute(cmd) ─▶ gate ─▶ TwinHost ─▶ (twin's turn) ─▶ Proposer
//!          ─▶ durable on a majority ─▶ Outcome
//! ```
//!
//! Why hosts and not one actor per twin: density. An idle active twin must cost at most
//! 2 KiB (`doppel bench density`); a ractor actor alone (task, channels, idle timer)
//! costs several. A host keeps per twin a small entity with the committed etag and
//! desired version (not the whole record), a slot with the twin's gate, a backlog only
//! while there is one — a few hundred bytes with the map entries — and one sweep timer
//! for all its twins; it still serializes each twin's operations, bounds each twin's
//! queue, and contains a twin's panic to that twin (see [`twin_host`]). Per shard,
//! because that is how commands are batched and how leadership moves
//! ([`TwinActors::passivate_shard`]); per tenant, because supervision, suspension and
//! isolation are per tenant.
//!
//! Key types: [`TwinActors`] (the handle handlers call), [`ActorSettings`],
//! [`ActorError`]. Layout (actors are thin shells, decisions live in plain structs
//! with their own tests):
//! - [`mailbox_gate`]: a twin's queue bound, and its passivation/draining latch;
//! - [`restart_intensity`]: restart or suspend the tenant;
//! - [`idle_clock`]: when to passivate (one sweep per host, no timer per twin);
//! - [`twin_entity`]: an active twin's compact state, its serialization and backlog;
//! - [`directory`]: what callers read without a hop (tenants, hosts, twins' gates,
//!   suspension) and the tenant's restart budget;
//! - [`messages`]: every message enum;
//! - [`node_supervisor`], [`tenant_supervisor`], [`twin_host`]: the actors.
//!
//! Correctness contract:
//! - all state changes still go through `Command` → [`Proposer`] → `StateMachine`; a
//!   twin's in-memory state is only ever what storage returned or a committed outcome;
//!   a twin is (re-)read from storage only while none of its commands is running (and a
//!   replacement host waits for the failed one's running commands), and a restarted
//!   twin re-reads storage;
//! - one operation of a twin runs at a time, in arrival order;
//! - a request is either refused up front (tenant suspended → 503, queue full → 429,
//!   both with `Retry-After`) or delivered to exactly one activation of its twin;
//!   nothing queues without bound;
//! - a panicking twin fails alone; one tenant's crash-looping twins suspend that tenant
//!   only.
//!
//! Routed through twins: twin PUT/PATCH/DELETE and telemetry over REST, and the device
//! edge. Relationships, models, tokens and devices still propose directly (they are not
//! a single twin's commands).

pub mod committed;
pub mod directory;
pub mod error;
pub mod idle_clock;
pub mod mailbox_gate;
pub mod messages;
pub mod node_supervisor;
pub mod restart_intensity;
pub mod tenant_supervisor;
pub mod twin_actors;
pub mod twin_entity;
pub mod twin_host;

#[cfg(test)]
mod tests;

pub use error::ActorError;
pub use restart_intensity::IntensityLimit;
pub use twin_actors::{twin_target, TwinActors};

use doppel_cluster::{Proposer, Storage};
use std::time::{Duration, Instant};

/// The actor runtime's knobs, in typed units (from `NodeConfig`'s `twin_*` and
/// `tenant_*` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActorSettings {
    /// A twin handling nothing for this long is passivated.
    pub idle_passivate: Duration,
    /// Requests in flight per twin (queued or running) before callers get 429.
    pub mailbox_limit: u32,
    pub intensity: IntensityLimit,
}

impl Default for ActorSettings {
    fn default() -> Self {
        ActorSettings {
            idle_passivate: Duration::from_secs(60),
            mailbox_limit: 1000,
            intensity: IntensityLimit {
                max_restarts: 10,
                window: Duration::from_secs(10),
                cool_off: Duration::from_secs(30),
            },
        }
    }
}

/// What every actor of the tree shares.
pub(crate) struct TwinEnv {
    pub storage: Storage,
    pub proposer: Proposer,
    pub shard_count: u32,
    pub settings: ActorSettings,
    /// Time origin of the suspension flags callers read.
    pub epoch: Instant,
}
