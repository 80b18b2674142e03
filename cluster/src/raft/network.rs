//! openraft's network for every group: each RPC is tagged with its group id and handed
//! to the node's [`RaftWire`], which carries it to the peer.
//!
//! ```text
//!  group g's Raft ─▶ PeerLink(g, target) ─▶ RaftWire::Quic      one `Request` frame on the
//!                                         │                     shared QUIC connection
//!                                         ├▶ RaftWire::InProcess a router in this process
//!                                         │                     (tests: drops, delays,
//!                                         │                     partitions by rule)
//!                                         └▶ RaftWire::Detached  no peers: unreachable
//! ```
//!
//! Contract:
//! - The wire is chosen once per node; a [`PeerLink`] only matches on it per RPC. The
//!   QUIC path encodes the [`Request`] once and sends the bytes, exactly as it did
//!   before the seam existed: no boxing and no extra allocation per message (the one
//!   boxed future per RPC is on the in-process path only).
//! - Every wire reports failures as a [`TransportError`], and they map to openraft's
//!   errors in one place: "not attempted" (`Isolated`, `Connect`) becomes
//!   `Unreachable`, so openraft backs off; anything else (`Timeout`, a lost connection)
//!   becomes a `NetworkError`, which openraft retries. The peer's own Raft errors come
//!   back inside the [`Response`] and become `RemoteError`s.

use super::{GroupId, NodeId, TypeConfig};
use crate::rpc::{self, Request, Response};
use crate::transport::{Transport, TransportError};
use futures_util::future::BoxFuture;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use std::sync::Arc;
use std::time::Duration;

/// What carries a node's Raft RPCs to its peers.
#[derive(Clone)]
pub enum RaftWire {
    /// A node without a cluster transport (a single node has no peers): every RPC
    /// fails as unreachable.
    Detached,
    /// The node's QUIC transport (every deployment).
    Quic(Transport),
    /// A carrier inside this process: the in-process test cluster's router
    /// (`cluster/tests/in_process_cluster`), which drops, delays and partitions
    /// messages by seeded rule.
    InProcess(Arc<dyn InProcessWire>),
}

impl From<Option<Transport>> for RaftWire {
    fn from(t: Option<Transport>) -> Self {
        t.map_or(RaftWire::Detached, RaftWire::Quic)
    }
}

/// An in-process carrier of one node's Raft RPCs ("send this RPC to node `to`"; the
/// group is in the [`Request`]). The request travels as a value, not as bytes.
pub trait InProcessWire: Send + Sync + 'static {
    /// Delivers `req` to node `to` and returns its answer, or fails the way the QUIC
    /// transport would (`Isolated` / `Connect` when the call was not attempted,
    /// `Timeout` when it or its answer was lost). `ttl` is openraft's deadline for the
    /// call.
    fn call(
        &self,
        to: NodeId,
        req: Request,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<Response, TransportError>>;
}

#[derive(Clone)]
pub struct Network {
    pub group: GroupId,
    pub wire: RaftWire,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerLink;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerLink {
        PeerLink {
            group: self.group,
            target,
            node: node.clone(),
            wire: self.wire.clone(),
        }
    }
}

pub struct PeerLink {
    group: GroupId,
    target: NodeId,
    node: BasicNode,
    wire: RaftWire,
}

type RpcErr<E> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

/// The one mapping from a wire's failure to openraft's error.
fn wire_error<E: std::error::Error>(e: TransportError) -> RpcErr<E> {
    match e {
        // Unreachable makes openraft back off instead of retrying at once.
        TransportError::Isolated(_) | TransportError::Connect { .. } => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        other => RPCError::Network(NetworkError::new(&other)),
    }
}

impl PeerLink {
    async fn call<E: std::error::Error>(
        &self,
        req: Request,
        option: &RPCOption,
    ) -> Result<Response, RpcErr<E>> {
        match &self.wire {
            RaftWire::Quic(transport) => {
                let payload =
                    rpc::encode(&req).map_err(|e| RPCError::Network(NetworkError::new(&Msg(e))))?;
                drop(req);
                let bytes = transport
                    .call(self.target, &self.node.addr, payload, option.hard_ttl())
                    .await
                    .map_err(wire_error)?;
                rpc::decode(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&Msg(e))))
            }
            RaftWire::InProcess(wire) => wire
                .call(self.target, req, option.hard_ttl())
                .await
                .map_err(wire_error),
            RaftWire::Detached => Err(RPCError::Unreachable(Unreachable::new(&Msg(
                "this node runs without a cluster transport".into(),
            )))),
        }
    }

    fn unexpected<E: std::error::Error>(&self, r: Response) -> RpcErr<E> {
        let text = match r {
            Response::Error(e) => e,
            other => format!("unexpected answer {other:?}"),
        };
        RPCError::Network(NetworkError::new(&Msg(format!(
            "node {} (group {}): {text}",
            self.target, self.group
        ))))
    }

    fn remote<E: std::error::Error>(&self, e: RaftError<NodeId, E>) -> RpcErr<E> {
        RPCError::RemoteError(RemoteError::new_with_node(
            self.target,
            self.node.clone(),
            e,
        ))
    }
}

impl RaftNetwork<TypeConfig> for PeerLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        let req = Request::AppendEntries {
            group: self.group,
            rpc,
        };
        match self.call(req, &option).await? {
            Response::AppendEntries(Ok(r)) => Ok(r),
            Response::AppendEntries(Err(e)) => Err(self.remote(e)),
            other => Err(self.unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        let req = Request::InstallSnapshot {
            group: self.group,
            rpc,
        };
        match self.call(req, &option).await? {
            Response::InstallSnapshot(Ok(r)) => Ok(r),
            Response::InstallSnapshot(Err(e)) => Err(self.remote(e)),
            other => Err(self.unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        let req = Request::Vote {
            group: self.group,
            rpc,
        };
        match self.call(req, &option).await? {
            Response::Vote(Ok(r)) => Ok(r),
            Response::Vote(Err(e)) => Err(self.remote(e)),
            other => Err(self.unexpected(other)),
        }
    }
}

/// A plain message as an error (openraft's error constructors take `&impl Error`).
#[derive(Debug)]
struct Msg(String);

impl std::fmt::Display for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Msg {}
