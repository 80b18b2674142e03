//! [`ActorError`]: why the actor runtime could not carry out a twin's command.
//!
//! Each variant names the tenant and twin. [`ActorError::code`] and
//! [`ActorError::disposition`] are what every edge maps from (HTTP status in
//! `http::api_error`; the device edge's MQTT reason and the external broker's retry
//! from the `CommandError` that `edge::command_sink` makes of it; the answer of a
//! forwarded command).

use doppel_cluster::ProposeError;
use doppel_twins::{Disposition, ErrorCode, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    /// The command reached the state machine (or the write queue) and this is its answer.
    #[error(transparent)]
    Propose(#[from] ProposeError),
    #[error(
        "tenant '{tenant}' is suspended for {retry_after_s} s: its twins failed more than \
         {max_restarts} times within {window_ms} ms; retry after the cool-off"
    )]
    TenantSuspended {
        tenant: String,
        retry_after_s: u32,
        max_restarts: u32,
        window_ms: u64,
    },
    #[error("digital twin '{twin}' already has {limit} requests in flight; retry shortly")]
    TwinOverloaded {
        tenant: String,
        twin: String,
        limit: u32,
    },
    #[error(
        "the actor of digital twin '{twin}' failed while this request was queued or running; \
         it was restarted from durable state, and the request may or may not have been applied"
    )]
    TwinFailed { tenant: String, twin: String },
    #[error("digital twin '{twin}' of tenant '{tenant}' could not be activated: {reason}")]
    ActivationFailed {
        tenant: String,
        twin: String,
        reason: String,
    },
    #[error("the actor runtime cannot take requests: {0}")]
    Unavailable(String),
    /// A bug in the caller: only twin commands are routed through twin actors.
    #[error("command for tenant '{tenant}' is not a twin command and has no twin actor")]
    NotATwinCommand { tenant: String },
}

impl ActorError {
    /// The stable code clients see.
    pub fn code(&self) -> ErrorCode {
        match self {
            ActorError::Propose(ProposeError::Rejected(e)) => e.code(),
            ActorError::Propose(ProposeError::NotLeader { .. }) => ErrorCode::NotLeader,
            ActorError::Propose(
                ProposeError::Overloaded
                | ProposeError::Unavailable(_)
                | ProposeError::StorageFailed(_),
            )
            | ActorError::Unavailable(_) => ErrorCode::ServiceUnavailable,
            ActorError::TenantSuspended { .. } => ErrorCode::TenantSuspended,
            ActorError::TwinOverloaded { .. } => ErrorCode::TooManyRequests,
            ActorError::TwinFailed { .. } => ErrorCode::TwinActorFailed,
            ActorError::ActivationFailed { .. } | ActorError::NotATwinCommand { .. } => {
                ErrorCode::InternalServerError
            }
        }
    }

    /// The class of a rejection ([`ErrorKind::Internal`] for anything else).
    pub fn kind(&self) -> ErrorKind {
        match self {
            ActorError::Propose(ProposeError::Rejected(e)) => e.kind(),
            _ => ErrorKind::Internal,
        }
    }

    /// What the caller may do now.
    pub fn disposition(&self) -> Disposition {
        match self {
            ActorError::Propose(ProposeError::Rejected(e)) if e.kind() == ErrorKind::Internal => {
                Disposition::Internal
            }
            ActorError::Propose(ProposeError::Rejected(_)) => Disposition::Rejected,
            ActorError::Propose(ProposeError::Overloaded | ProposeError::NotLeader { .. })
            | ActorError::TenantSuspended { .. }
            | ActorError::TwinOverloaded { .. } => Disposition::Retry,
            ActorError::Propose(ProposeError::Unavailable(_))
            | ActorError::Unavailable(_)
            | ActorError::TwinFailed { .. } => Disposition::Unknown,
            ActorError::Propose(ProposeError::StorageFailed(_))
            | ActorError::ActivationFailed { .. }
            | ActorError::NotATwinCommand { .. } => Disposition::Internal,
        }
    }
}
