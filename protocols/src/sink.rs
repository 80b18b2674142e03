//! [`CommandSink`]: what a protocol adapter may ask of doppel — the one way a device's
//! message becomes a twin change, and the reads the adapter needs to answer devices.
//!
//! ```text
//!  device message ──adapter (topic + payload → Command)──▶ CommandSink::submit ──▶ durable | CommandError
//!  desired pusher ◀── CommandSink::changes (committed ChangeEvents) + ::twin (committed record)
//! ```
//!
//! Adapters hand commands to a sink, never to storage: this crate knows no Raft group,
//! column family or actor. The node implements the trait (`doppel-node`'s
//! `edge::command_sink`); a test can implement it over a map.
//!
//! Contract:
//! - [`CommandSink::submit`] resolves only once the command is durable (on a majority
//!   of its shard's replicas) or refused; an adapter that acknowledges its device
//!   after it resolves gives the device "acknowledged = durable".
//! - A refusal carries its stable [`ErrorCode`], its [`ErrorKind`] and a
//!   [`Disposition`] that says whether sending the same command again can help
//!   ([`CommandError::is_final`]); adapters map from these and nothing else.
//! - [`CommandSink::changes`] yields committed changes in commit order as this node
//!   applies them; a slow reader lags (and is told so), it never blocks commits.

use crate::edge::BoxFuture;
use doppel_twins::{
    ChangeEvent, Command, DeviceRecord, Disposition, ErrorCode, ErrorKind, Outcome, TwinRecord,
};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Why a command was not carried out (or a read not answered), as every edge sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    /// The stable code clients see (`ValidationFailed`, `TooManyRequests`, …).
    pub code: ErrorCode,
    /// The class of a rejection ([`ErrorKind::Internal`] for anything that is not one).
    pub kind: ErrorKind,
    /// What the caller may do now.
    pub disposition: Disposition,
    /// The precise reason, for the device and the log.
    pub message: String,
}

impl CommandError {
    /// A refusal that sending the same command again cannot change (it breaks the
    /// model, names a missing twin, …).
    pub fn is_final(&self) -> bool {
        self.disposition == Disposition::Rejected
    }

    /// A failure of the server to read or write (no rejection of the request).
    pub fn internal(message: impl Into<String>) -> Self {
        CommandError {
            code: ErrorCode::InternalServerError,
            kind: ErrorKind::Internal,
            disposition: Disposition::Internal,
            message: message.into(),
        }
    }
}

/// Where protocol adapters hand their commands, and what they may read.
pub trait CommandSink: Send + Sync + 'static {
    /// Carries out `cmd` for its tenant; resolves once it is durable, or refused.
    fn submit(&self, cmd: Command) -> BoxFuture<'_, Result<Outcome, CommandError>>;

    /// Carries out a run of `RecordTelemetry` commands, made durable together where
    /// the node can (one device's back-to-back messages typically share one Raft
    /// entry). Answer *i* is the answer to command *i*, as if it had come alone.
    fn submit_telemetry(
        &self,
        cmds: Vec<Command>,
    ) -> BoxFuture<'_, Vec<Result<Outcome, CommandError>>>;

    /// Twin `id` of `tenant` as committed on this node; `None` when there is none.
    fn twin(&self, tenant: &str, id: &str) -> Result<Option<TwinRecord>, CommandError>;

    /// [`CommandSink::twin`] after this node has applied everything the twin's shard
    /// leader had committed when asked (linearizable, like a REST GET).
    fn twin_linearizable<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<TwinRecord>, CommandError>>;

    /// Device `id` of `tenant` in the device registry, as committed on this node.
    fn device(&self, tenant: &str, id: &str) -> Result<Option<DeviceRecord>, CommandError>;

    /// The committed changes, from now on, in commit order.
    fn changes(&self) -> broadcast::Receiver<Arc<ChangeEvent>>;

    /// This node's id, as a twin's `$connection.node` records it.
    fn node_id(&self) -> u64;
}
