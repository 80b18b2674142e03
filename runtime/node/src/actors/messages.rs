//! Every message the actors of [`crate::actors`] exchange, in one place.
//!
//! Replies travel on `tokio::sync::oneshot` channels carried in the message: a dropped
//! sender (the twin failed, or its host stopped, before answering) is how a caller
//! learns that its request died with it.

use super::committed::Change;
#[cfg(test)]
use super::committed::CommittedTwin;
use super::directory::{HostEntry, TenantEntry, TwinSlot};
use super::error::ActorError;
use doppel_cluster::ProposeError;
use doppel_twins::{Command, Outcome};
use std::sync::Arc;
use tokio::sync::oneshot;

/// The answer to an activation: the twin's slot (its gate) in the host's directory.
pub type ActivationReply = oneshot::Sender<Result<Arc<TwinSlot>, ActorError>>;

/// To the node supervisor (one per node).
pub enum NodeMsg {
    /// The tenant's supervisor, spawned on first use.
    Tenant {
        tenant: String,
        reply: oneshot::Sender<Result<TenantEntry, ActorError>>,
    },
}

/// To a tenant supervisor (one per tenant in use).
pub enum TenantMsg {
    /// The tenant's twin host for a data shard, spawned on first use.
    Host {
        shard: u32,
        reply: oneshot::Sender<Result<HostEntry, ActorError>>,
    },
}

/// To a twin host (one per tenant × data shard in use).
pub enum HostMsg {
    /// The twin, activated from durable state if it is not active.
    Activate {
        twin_id: String,
        reply: ActivationReply,
    },
    /// One of the twin's operations. The sender has been counted in by the slot's gate;
    /// whoever answers counts it out.
    Run { slot: Arc<TwinSlot>, op: TwinOp },
    /// The twin's running operation has finished (sent by the task that ran it).
    Finished { slot: Arc<TwinSlot>, end: OpEnd },
    /// The host's own sweep timer: passivate idle twins.
    Sweep,
    /// Some twins' gates were set draining (the node stopped leading this shard): drop
    /// each once what it had admitted has been answered (idle ones at once).
    DropDraining,
    /// Test-only: panic outside any twin's handling, as a bug in the host would.
    #[cfg(test)]
    CrashHost,
}

/// What a twin is asked to do; one runs at a time per twin, in arrival order.
pub enum TwinOp {
    /// Propose one of this twin's commands and answer with its outcome.
    Execute {
        /// Boxed: a `Command` is large, and every queue slot is as big as the largest op.
        cmd: Box<Command>,
        reply: oneshot::Sender<Result<Outcome, ProposeError>>,
    },
    /// Test-only: the in-memory copy of the twin.
    #[cfg(test)]
    Snapshot(oneshot::Sender<Option<CommittedTwin>>),
    /// Test-only: panic in the twin's handling, as a bug would. Sent through the gate
    /// like `Execute`; nothing outside the crate's unit tests can construct it.
    #[cfg(test)]
    Crash,
    /// Test-only: keep the twin busy until the sender is dropped or fires.
    #[cfg(test)]
    Hold(oneshot::Receiver<()>),
}

/// How a twin's running operation ended.
pub enum OpEnd {
    /// Answered; this is what it did to the durable twin.
    Done(Change),
    /// It panicked (its caller's reply was dropped): the twin has failed.
    Panicked(String),
}
