//! The device edge: devices bind to their twins over MQTT (3.1.1 and 5), speaking
//! Azure IoT Hub's MQTT conventions, on doppel's own MQTT server (`doppel-protocols`).
//!
//! ```text
//!  device ──MQTT──▶ MqttServer ──▶ DeviceEdge (auth, topic → Command) ──▶ Proposer ──▶ fsync ──▶ PUBACK
//!                        ▲
//!                        └── desired-state pusher ◀── change events (after commit)
//! ```
//!
//! The pusher follows committed changes: when an app sets a writable property, the
//! new desired values go to the connected device on
//! `$iothub/twin/PATCH/properties/desired/?$version=N`; when a device (re)subscribes
//! there, every desired value it has not acknowledged yet is delivered; when a device
//! is disabled or deleted, its connection is cut at once. Connects and disconnects
//! are recorded on the twin (`$metadata.$connection`) and announced as
//! `doppel.Device.Connected` / `doppel.Device.Disconnected` events.

mod desired;
mod device_edge;
pub mod device_twin;
pub mod external_broker;

pub use device_edge::{tenant_of_hub, DeviceEdge, EdgeStats};

use crate::node::Node;
use doppel_protocols::config::MqttServerConfig;
use doppel_protocols::registry::ConnectionRegistry;
use doppel_protocols::server::MqttServer;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

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
    let handler = Arc::new(DeviceEdge {
        state: state.clone(),
        connections,
        last_activity: Default::default(),
        registry: OnceLock::new(),
        stats: stats.clone(),
    });
    let _ = handler.registry.set(registry.clone());
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
    tokio::spawn(desired::follow_changes(state, registry));
    Ok(Edge { plain, tls, stats })
}

/// Writes connection changes to the devices' twins, in the order they happened.
async fn record_connections(
    state: Node,
    mut changes: tokio::sync::mpsc::Receiver<device_edge::ConnectionChange>,
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
