//! The one assembly of a node: [`Node::start`] opens storage and the Raft groups,
//! starts the actor tree, answers what other nodes forward, creates tenant `default`
//! and its admin token on first start, binds the REST listener, starts the device edge
//! and attaches external brokers. `doppel serve`, the demo, the benches and the tests
//! all start a node this way.
//!
//! ```text
//!  Node::start(config) ─▶ Node::open (storage, Raft, actors) ─▶ forward handler ─▶ bootstrap
//!                      ─▶ bind HTTP ─▶ device edge (MQTT, MQTTS) ─▶ external brokers ─▶ RunningNode
//!  RunningNode::serve_until(signal) ─▶ serve HTTP … signal ─▶ stop edge ─▶ flush storage
//! ```

use crate::config::NodeConfig;
use crate::edge::Edge;
use crate::forward::{Forwarded, HttpAnswer};
use crate::node::Node;
use axum::Router;
use doppel_cluster::node::ForwardHandler;
use doppel_cluster::raft::NodeId;
use doppel_protocols::config::ExternalBroker;
use doppel_protocols::iothub::external_broker::ExternalStats;
use futures_util::future::BoxFuture;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

/// A started node: open, reachable by its peers, its device edge running, its REST
/// listener bound but not yet serving (see [`RunningNode::serve_until`]).
pub struct RunningNode {
    pub node: Node,
    /// The admin token, when this start created it (first start of a cluster's first node).
    pub created_admin_token: Option<String>,
    /// Where the admin token of tenant `default` is kept (`<data-dir>/admin.token`).
    pub admin_token_path: PathBuf,
    /// `http(s)://<bound address>` of the REST API.
    pub url: String,
    pub http_addr: SocketAddr,
    /// The device edge, when an MQTT listener is configured.
    pub edge: Option<Edge>,
    /// The external brokers attached, with their counters.
    pub external_brokers: Vec<(ExternalBroker, Arc<ExternalStats>)>,
    router: Router,
    listener: TcpListener,
}

impl Node {
    /// Starts a node from its configuration (validated here; errors name the key).
    pub async fn start(config: NodeConfig) -> anyhow::Result<RunningNode> {
        #[cfg(feature = "failpoints")]
        failpoints_from_env();
        let addr = config.validate()?;
        let data_dir = config.data_dir.clone();
        let scheme = if config.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        let node = Node::open(config).await?;
        let router = crate::http::router(node.clone());
        node.proposer
            .cluster()
            .set_forward_handler(Arc::new(Forwarder {
                node: node.clone(),
                router: router.clone(),
            }));
        // A joining node gets tenants and tokens from the cluster it joins.
        let created_admin_token = if node.config.join.is_empty() {
            crate::bootstrap::first_start(&node).await?
        } else {
            None
        };
        let listener =
            TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        let http_addr = listener.local_addr()?;
        let config = node.config.clone();
        let plain = config.mqtt_addr()?;
        let tls = match (config.mqtts_addr()?, &config.tls_cert, &config.tls_key) {
            (Some(addr), Some(cert), Some(key)) => {
                Some((addr, crate::tls::mqtt_server_config(cert, key)?))
            }
            _ => None,
        };
        let edge = if plain.is_some() || tls.is_some() {
            Some(crate::edge::start(node.clone(), plain, tls).await?)
        } else {
            None
        };
        let external_brokers = config
            .external_brokers
            .iter()
            .map(|b| {
                (
                    b.clone(),
                    crate::edge::attach_external(node.clone(), b.clone()),
                )
            })
            .collect();
        Ok(RunningNode {
            created_admin_token,
            admin_token_path: data_dir.join(crate::bootstrap::ADMIN_TOKEN_FILE),
            url: format!("{scheme}://{http_addr}"),
            http_addr,
            edge,
            external_brokers,
            router,
            listener,
            node,
        })
    }
}

impl RunningNode {
    /// The plain MQTT listener's bound address, when it runs.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.edge.as_ref().and_then(Edge::plain_addr)
    }

    /// The MQTT-over-TLS listener's bound address, when it runs.
    pub fn mqtts_addr(&self) -> Option<SocketAddr> {
        self.edge.as_ref().and_then(Edge::tls_addr)
    }

    /// The REST API's router (for serving it elsewhere, or calling it in-process).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves the REST API until `shutdown` resolves, then stops the device edge and
    /// flushes storage.
    pub async fn serve_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        crate::http::serve(&self.node, self.router, self.listener, shutdown).await?;
        if let Some(edge) = self.edge {
            edge.shutdown().await;
        }
        self.node.storage.flush()?;
        Ok(())
    }
}

/// Answers what other nodes forward here: HTTP requests through this node's router,
/// commands through [`crate::dispatch`].
struct Forwarder {
    node: Node,
    router: Router,
}

impl ForwardHandler for Forwarder {
    fn handle(&self, from: NodeId, payload: Vec<u8>) -> BoxFuture<'static, Vec<u8>> {
        let node = self.node.clone();
        let router = self.router.clone();
        Box::pin(async move {
            match doppel_cluster::rpc::decode::<Forwarded>(&payload) {
                Ok(Forwarded::Http {
                    method,
                    uri,
                    headers,
                    body,
                }) => {
                    let answer = crate::http::routing::serve_forwarded(
                        router, from, method, uri, headers, body,
                    )
                    .await;
                    doppel_cluster::rpc::encode(&answer).unwrap_or_default()
                }
                Ok(Forwarded::Command(json)) => {
                    crate::dispatch::execute_forwarded(&node, &json).await
                }
                Err(e) => doppel_cluster::rpc::encode(&HttpAnswer {
                    status: 400,
                    headers: Vec::new(),
                    body: e.into_bytes(),
                })
                .unwrap_or_default(),
            }
        })
    }
}

/// Configures the failpoints named in `FAILPOINTS` (`name=actions;…`), once per process
/// however many nodes it starts. The scenario is kept for the process's whole life:
/// ending it would reset every failpoint (and a second scenario would wait for the
/// first to end).
#[cfg(feature = "failpoints")]
fn failpoints_from_env() {
    static SETUP: std::sync::Once = std::sync::Once::new();
    SETUP.call_once(|| std::mem::forget(fail::FailScenario::setup()));
}
