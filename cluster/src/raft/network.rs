//! openraft's network for every group, over the node's one cluster [`Transport`]: each
//! RPC is tagged with its group id and travels as one [`Request`] on the shared QUIC
//! connection to the peer.

use super::{GroupId, NodeId, TypeConfig};
use crate::rpc::{self, Request, Response};
use crate::transport::{Transport, TransportError};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;

#[derive(Clone)]
pub struct Network {
    pub group: GroupId,
    /// `None` on a node without a cluster transport (a single node has no peers).
    pub transport: Option<Transport>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerLink;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerLink {
        PeerLink {
            group: self.group,
            target,
            node: node.clone(),
            transport: self.transport.clone(),
        }
    }
}

pub struct PeerLink {
    group: GroupId,
    target: NodeId,
    node: BasicNode,
    transport: Option<Transport>,
}

type RpcErr<E> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl PeerLink {
    async fn call<E: std::error::Error>(
        &self,
        req: &Request,
        option: &RPCOption,
    ) -> Result<Response, RpcErr<E>> {
        let payload =
            rpc::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&Msg(e))))?;
        let Some(transport) = &self.transport else {
            return Err(RPCError::Unreachable(Unreachable::new(&Msg(
                "this node runs without a cluster transport".into(),
            ))));
        };
        let bytes = transport
            .call(self.target, &self.node.addr, payload, option.hard_ttl())
            .await
            .map_err(|e| match e {
                // Unreachable makes openraft back off instead of retrying at once.
                TransportError::Isolated(_) | TransportError::Connect { .. } => {
                    RPCError::Unreachable(Unreachable::new(&e))
                }
                other => RPCError::Network(NetworkError::new(&other)),
            })?;
        rpc::decode(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&Msg(e))))
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
        match self.call(&req, &option).await? {
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
        match self.call(&req, &option).await? {
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
        match self.call(&req, &option).await? {
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
