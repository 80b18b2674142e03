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

mod device_edge;
pub mod device_twin;
pub mod external_broker;
pub mod methods;

pub use device_edge::{tenant_of_hub, DeviceEdge, EdgeStats};

use crate::server::AppState;
use bytes::Bytes;
use doppel_protocols::config::MqttServerConfig;
use doppel_protocols::edge::{DeviceKey, DisconnectReason, Qos};
use doppel_protocols::iothub;
use doppel_protocols::registry::{ConnectionRegistry, SendError};
use doppel_protocols::server::MqttServer;
use doppel_twins::events::{DEVICE_CONNECTED, DEVICE_DELETE, DEVICE_UPDATE, TWIN_UPDATE};
use doppel_twins::keys::shard_of;
use doppel_twins::{load_twin, ChangeEvent};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tokio::sync::broadcast::error::RecvError;

/// What the REST side needs of the device edge: the connected devices (once the
/// MQTT listener runs) and the direct-method calls waiting for answers.
#[derive(Clone, Default)]
pub struct DeviceLink {
    registry: Arc<OnceLock<ConnectionRegistry>>,
    pub calls: methods::MethodCalls,
}

impl DeviceLink {
    /// `None` when the node runs without its MQTT listener.
    pub fn registry(&self) -> Option<&ConnectionRegistry> {
        self.registry.get()
    }
}

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
    state: AppState,
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
    let _ = state.devices.registry.set(registry.clone());
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
    tokio::spawn(follow_changes(state, registry));
    Ok(Edge { plain, tls, stats })
}

/// Writes connection changes to the devices' twins, in the order they happened.
async fn record_connections(
    state: AppState,
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
        if let Err(e) = crate::routing::execute(&state, cmd).await {
            tracing::warn!(device = %c.key, error = %e, "connection state not recorded");
        }
    }
}

/// Sends `body` to `device` on the desired-properties topic.
fn push_desired(
    registry: &ConnectionRegistry,
    device: &DeviceKey,
    body: &serde_json::Value,
    version: u64,
) -> Result<(), SendError> {
    let payload = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    registry.send(
        device,
        &iothub::desired_update_topic(version),
        payload,
        Qos::AtLeastOnce,
    )
}

async fn follow_changes(state: AppState, registry: ConnectionRegistry) {
    let mut events = state.proposer.subscribe();
    // The newest desired version each connected device has been sent.
    let mut pushed: HashMap<DeviceKey, u64> = HashMap::new();
    loop {
        let event: Arc<ChangeEvent> = match events.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "device edge fell behind the change stream");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let device = DeviceKey::new(event.tenant.clone(), event.twin_id.clone());
        match event.kind {
            DEVICE_DELETE => {
                registry.disconnect(&device, DisconnectReason::AdministrativeAction);
            }
            DEVICE_UPDATE if event.data["status"] == "disabled" => {
                let was_connected =
                    registry.disconnect(&device, DisconnectReason::AdministrativeAction);
                tracing::info!(%device, was_connected, "device disabled");
            }
            // The device connected to another node: its connection here is an old
            // one (IoT Hub keeps one connection per device), taken over.
            DEVICE_CONNECTED if registry.is_connected(&device) => {
                let here = state.proposer.cluster().node_id();
                let shard = shard_of(&event.tenant, &event.twin_id, state.shard_count);
                let Ok(Some(twin)) =
                    load_twin(&state.storage, shard, &event.tenant, &event.twin_id)
                else {
                    continue;
                };
                let elsewhere = twin
                    .connection
                    .as_ref()
                    .filter(|c| c.connected)
                    .and_then(|c| c.node)
                    .filter(|n| *n != here);
                if let Some(node) = elsewhere {
                    tracing::info!(%device, node, "device connected to another node; its connection here is closed");
                    registry.disconnect(&device, DisconnectReason::SessionTakenOver);
                }
            }
            TWIN_UPDATE if registry.is_connected(&device) => {
                let shard = shard_of(&event.tenant, &event.twin_id, state.shard_count);
                let Ok(Some(twin)) =
                    load_twin(&state.storage, shard, &event.tenant, &event.twin_id)
                else {
                    continue;
                };
                let since = pushed.get(&device).copied();
                let body = match since {
                    Some(v) => device_twin::desired_patch(&twin, v),
                    // First change since (re)connect: everything still unacknowledged.
                    None => device_twin::unacknowledged_desired(&twin),
                };
                if let Some(body) = body {
                    match push_desired(&registry, &device, &body, twin.desired_version) {
                        Ok(()) => {
                            pushed.insert(device, twin.desired_version);
                        }
                        Err(e) => {
                            tracing::debug!(%device, error = %e, "desired update not delivered")
                        }
                    }
                }
            }
            _ => {}
        }
        pushed.retain(|d, _| registry.is_connected(d));
    }
}

/// Delivers the desired values `device` has not acknowledged, retrying briefly until
/// its subscription (just authorized) is in place. Used when a device subscribes to
/// the desired-properties topic: this is the "on reconnect" delivery.
pub(crate) fn deliver_pending_on_subscribe(
    state: AppState,
    registry: ConnectionRegistry,
    device: DeviceKey,
) {
    tokio::spawn(async move {
        let shard = shard_of(&device.tenant, &device.device_id, state.shard_count);
        let Ok(Some(twin)) = load_twin(&state.storage, shard, &device.tenant, &device.device_id)
        else {
            return;
        };
        let Some(body) = device_twin::unacknowledged_desired(&twin) else {
            return;
        };
        for _ in 0..50 {
            match push_desired(&registry, &device, &body, twin.desired_version) {
                Ok(()) => return,
                Err(SendError::NotSubscribed { .. }) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await
                }
                Err(_) => return,
            }
        }
    });
}
