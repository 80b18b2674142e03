//! The actor runtime (ractor): every active twin is an actor, supervised per tenant.
//!
//! ```text
//!                         NodeSupervisor            (one per node; spawns on first use)
//!                        /              \
//!          TenantSupervisor(acme)   TenantSupervisor(globex)   restart + intensity limit
//!            /        |                  |
//!     TwinActor(p1) TwinActor(p2)    TwinActor(m7)     activated from storage on first use,
//!                                                      passivated when idle
//!
//!  handler ─▶ TwinActors::execute(cmd) ─▶ gate ─▶ TwinActor ─▶ Proposer ─▶ fsync ─▶ Outcome
//! ```
//!
//! Key types: [`TwinActors`] (the handle handlers call), [`ActorSettings`],
//! [`ActorError`]. Layout (actors are thin shells, decisions live in plain structs
//! with their own tests):
//! - [`mailbox_gate`]: the mailbox bound (ractor's are unbounded) and passivation latch;
//! - [`restart_intensity`]: restart or suspend the tenant;
//! - [`idle_clock`]: when to passivate;
//! - [`directory`]: what callers read without a hop (active actors, suspension);
//! - [`messages`]: every message enum;
//! - [`node_supervisor`], [`tenant_supervisor`], [`twin_actor`]: the actors.
//!
//! Correctness contract:
//! - all state changes still go through `Command` → [`Proposer`] → `StateMachine`; an
//!   actor's in-memory twin is only ever what storage returned or a committed outcome,
//!   and a restarted actor re-reads storage;
//! - a request is either refused up front (tenant suspended → 503, mailbox full → 429,
//!   both with `Retry-After`) or delivered to exactly one actor; nothing queues without
//!   bound;
//! - one tenant's crash-looping twins suspend that tenant only.
//!
//! Routed through actors today: twin PUT/PATCH/DELETE and telemetry over REST.
//! Relationships, models, tokens and devices still propose directly (they are not a
//! single twin's commands); so does the device edge until it moves onto
//! [`TwinActors::execute`] — until then a twin changed there is not reflected in an
//! active actor's copy (nothing reads that copy yet).

pub mod directory;
pub mod error;
pub mod idle_clock;
pub mod mailbox_gate;
pub mod messages;
pub mod node_supervisor;
pub mod restart_intensity;
pub mod tenant_supervisor;
pub mod twin_actor;
pub mod twin_actors;

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
    /// A twin actor handling nothing for this long is passivated.
    pub idle_passivate: Duration,
    /// Requests in flight per twin actor before callers get 429.
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
