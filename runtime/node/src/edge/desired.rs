//! The desired-state pusher: follows committed changes and sends each connected
//! device what it must know — new desired values (`$iothub/twin/PATCH/properties/
//! desired/?$version=N`), everything still unacknowledged when it (re)subscribes — and
//! cuts the connection of a device that is disabled, deleted or taken over by another
//! node.

use super::device_twin;
use crate::node::Node;
use bytes::Bytes;
use doppel_protocols::edge::{DeviceKey, DisconnectReason, Qos};
use doppel_protocols::iothub;
use doppel_protocols::registry::{ConnectionRegistry, SendError};
use doppel_twins::events::{DEVICE_CONNECTED, DEVICE_DELETE, DEVICE_UPDATE, TWIN_UPDATE};
use doppel_twins::keys::shard_of;
use doppel_twins::{load_twin, ChangeEvent};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

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

pub(super) async fn follow_changes(state: Node, registry: ConnectionRegistry) {
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
    state: Node,
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
        // The subscription is being put in place as this runs: about 2 s of tries.
        let ms = std::time::Duration::from_millis;
        let mut backoff = crate::retry::Backoff::attempts(12, ms(10), ms(250));
        loop {
            match push_desired(&registry, &device, &body, twin.desired_version) {
                Err(SendError::NotSubscribed { .. }) if backoff.wait().await => {}
                _ => return,
            }
        }
    });
}
