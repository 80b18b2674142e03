//! Every message the actors of [`crate::actors`] exchange, in one place.
//!
//! Replies travel on `tokio::sync::oneshot` channels carried in the message: a dropped
//! sender (the actor failed or stopped before answering) is how a caller learns that
//! its request died with the actor.

use super::directory::{TenantEntry, TwinHandle};
use super::error::ActorError;
use doppel_cluster::ProposeError;
use doppel_twins::{Command, Outcome};
use tokio::sync::oneshot;

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
    /// The twin's actor, activated from durable state if it is not active.
    Activate {
        twin_id: String,
        reply: oneshot::Sender<Result<TwinHandle, ActorError>>,
    },
}

/// To a twin actor (one per active twin).
pub enum TwinMsg {
    /// Propose one of this twin's commands and answer with its outcome. The sender has
    /// been counted in by the twin's mailbox gate; the actor counts it out.
    Execute {
        /// Boxed: a `Command` is large, and every mailbox slot is as big as the largest
        /// message.
        cmd: Box<Command>,
        reply: oneshot::Sender<Result<Outcome, ProposeError>>,
    },
    /// The actor's own idle timer: passivate, or look again later.
    IdleCheck,
    /// Test-only: the in-memory copy of the twin.
    #[cfg(test)]
    Snapshot(oneshot::Sender<Option<doppel_twins::TwinRecord>>),
    /// Test-only: panic in the handler, as a bug would. Sent through the gate like
    /// `Execute`; nothing outside the crate's unit tests can construct it.
    #[cfg(test)]
    Crash,
    /// Test-only: keep the actor busy until the sender is dropped or fires.
    #[cfg(test)]
    Hold(oneshot::Receiver<()>),
}
