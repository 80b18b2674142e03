//! [`ActorError`]: why the actor runtime could not carry out a twin's command.
//!
//! Each variant names the tenant and twin; the HTTP mapping (status, stable code,
//! `Retry-After`) lives with all others in `server::api_error`.

use doppel_cluster::ProposeError;

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
