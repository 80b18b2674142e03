//! Why a transport operation failed. Every variant names what is needed to act on it:
//! the file, the peer and its address, the versions.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::NodeId;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A certificate or key file is missing, malformed, or not usable for this node.
    #[error("{}: {reason}", file.display())]
    Tls { file: PathBuf, reason: String },
    /// The transport was started with inconsistent settings.
    #[error("invalid cluster transport configuration: {0}")]
    Config(String),
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// No connection to the peer: unresolvable address, unreachable, or the handshake
    /// was refused (wrong CA, wrong node identity).
    #[error("cannot connect to node {peer} at {addr}: {reason}")]
    Connect {
        peer: NodeId,
        addr: String,
        reason: String,
    },
    /// The connection broke while the call was in flight; the call may or may not have
    /// been handled by the peer.
    #[error("connection to node {peer} lost during the call: {reason}")]
    ConnectionLost { peer: NodeId, reason: String },
    /// No answer within the caller's deadline.
    #[error("call to node {peer} timed out after {after:?}")]
    Timeout { peer: NodeId, after: Duration },
    /// This node isolates the peer (fault injection): the call was not attempted.
    #[error("node {0} is isolated from this node (fault injection)")]
    Isolated(NodeId),
    /// The peer reset the call's stream without handling it (it isolates this node, or
    /// is shutting down).
    #[error("node {peer} refused the call: {reason}")]
    Refused { peer: NodeId, reason: String },
    /// The peer speaks another cluster protocol version.
    #[error("node {peer} speaks cluster protocol v{theirs}, this node v{ours}")]
    Version { peer: NodeId, theirs: u8, ours: u8 },
    /// The peer received the call but could not hand it to its handler.
    #[error("node {peer} could not handle the call: {message}")]
    Remote { peer: NodeId, message: String },
    /// The payload is larger than one frame may carry.
    #[error("payload of {len} bytes exceeds the {max}-byte cluster frame limit")]
    FrameTooLarge { len: usize, max: usize },
    /// The peer's answer does not follow the frame format.
    #[error("node {peer} sent a malformed answer: {reason}")]
    Protocol { peer: NodeId, reason: String },
    /// This node's transport is shut down.
    #[error("the cluster transport is shut down")]
    Closed,
}
