//! The device edge: the node's wiring of `doppel-protocols`' IoT Hub adapters — the
//! embedded MQTT server (3.1.1 and 5) and the external brokers tenants are attached
//! to. What a device's message means, how desired state reaches it and how a device
//! authenticates are the protocols crate's (`doppel_protocols::iothub`); the node
//! gives the adapters a [`CommandSink`] (itself, [`command_sink`]) and records
//! devices' connections on their twins.
//!
//! ```text
//!  device ──MQTT──▶ MqttServer ──▶ IotHubEdge ──▶ CommandSink (Node: dispatch ──▶ fsync) ──▶ PUBACK
//!                        ▲              └── ConnectionChange ──▶ record_connections ──▶ SetConnection
//!                        └── desired pusher ◀── change events (after commit)
//!  device ──MQTT──▶ external broker ──▶ external_broker::attach ──▶ CommandSink ──▶ PUBACK to the broker
//! ```
//!
//! Connects and disconnects are recorded on the twin (`$metadata.$connection`, with
//! this node's id) in the order they happened, and announced as
//! `doppel.Device.Connected` / `doppel.Device.Disconnected` events.

pub mod command_sink;

use crate::node::Node;
use doppel_protocols::config::{ExternalBroker, MqttServerConfig};
use doppel_protocols::iothub::desired;
use doppel_protocols::iothub::device_edge::{ConnectionChange, EdgeStats, IotHubEdge};
use doppel_protocols::iothub::external_broker::{self, ExternalStats};
use doppel_protocols::registry::ConnectionRegistry;
use doppel_protocols::server::MqttServer;
use doppel_protocols::CommandSink;
use std::net::SocketAddr;
use std::sync::Arc;

/// A running device edge: a plain MQTT listener, an MQTT-over-TLS one, or both,
/// sharing one handler and one registry of connected devices.
pub struct Edge {
    pub plain: Option<MqttServer>,
    pub tls: Option<MqttServer>,
    pub stats: Arc<EdgeStats>,
}

impl Edge {
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain.as_ref().map(MqttServer::local_addr)
    }

    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().map(MqttServer::local_addr)
    }

    /// Disconnects every device and stops listening.
    pub async fn shutdown(self) {
        for server in [self.plain, self.tls].into_iter().flatten() {
            server.shutdown().await;
        }
    }
}

/// Binds the MQTT listeners and starts following change events.
pub async fn start(
    state: Node,
    plain: Option<SocketAddr>,
    tls: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
) -> anyhow::Result<Edge> {
    let stats = Arc::new(EdgeStats::default());
    let (connections, changes) = tokio::sync::mpsc::channel(10_000);
    tokio::spawn(record_connections(state.clone(), changes));
    let registry = ConnectionRegistry::new();
    let sink: Arc<dyn CommandSink> = Arc::new(state.clone());
    let handler = Arc::new(IotHubEdge::new(
        sink.clone(),
        registry.clone(),
        state.devices.calls.clone(),
        connections,
        stats.clone(),
    ));
    state.devices.set_registry(registry.clone());
    let bind = |addr: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>| {
        let config = MqttServerConfig {
            bind_addr: addr,
            ..Default::default()
        };
        MqttServer::bind_with_registry(config, tls, handler.clone(), registry.clone())
    };
    let plain = match plain {
        Some(addr) => Some(
            bind(addr, None)
                .await
                .map_err(|e| anyhow::anyhow!("mqtt: {e}"))?,
        ),
        None => None,
    };
    let tls = match tls {
        Some((addr, config)) => Some(
            bind(addr, Some(config))
                .await
                .map_err(|e| anyhow::anyhow!("mqtts: {e}"))?,
        ),
        None => None,
    };
    tokio::spawn(desired::follow_changes(sink, Arc::new(registry)));
    Ok(Edge { plain, tls, stats })
}

/// Attaches `broker`'s tenant to it (see `doppel_protocols::iothub::external_broker`).
pub fn attach_external(state: Node, broker: ExternalBroker) -> Arc<ExternalStats> {
    external_broker::attach(Arc::new(state), broker)
}

/// Writes connection changes to the devices' twins, in the order they happened.
async fn record_connections(
    state: Node,
    mut changes: tokio::sync::mpsc::Receiver<ConnectionChange>,
) {
    while let Some(c) = changes.recv().await {
        let cmd = doppel_twins::Command::SetConnection {
            tenant: c.key.tenant.clone(),
            twin_id: c.key.device_id.clone(),
            connected: c.connected,
            last_activity: c.last_activity,
            node: Some(state.proposer.cluster().node_id()),
        };
        if let Err(e) = crate::dispatch::execute(&state, cmd).await {
            tracing::warn!(device = %c.key, error = %e, "connection state not recorded");
        }
    }
}
