//! The desired-state pusher: follows committed changes and sends each device what it
//! must know — new desired values with their `$version`, everything still
//! unacknowledged when it (re)subscribes — and cuts the connection of a device that is
//! disabled, deleted or taken over by another node, where the transport holds one.
//!
//! ```text
//!  CommandSink::changes ──▶ follow_changes ──TWIN_UPDATE──▶ device_twin::desired_patch ──▶ DesiredLink::send
//!                                 ├──DEVICE_UPDATE (disabled) / DEVICE_DELETE──▶ DesiredLink::cut
//!                                 └──DEVICE_CONNECTED elsewhere──▶ DesiredLink::cut (taken over)
//!  device subscribes ──▶ deliver_pending_on_subscribe ──▶ device_twin::unacknowledged_desired ──▶ send
//! ```
//!
//! One pusher serves both transports; a [`DesiredLink`] is how it reaches devices:
//! the embedded broker's [`ConnectionRegistry`] (IoT Hub's
//! `$iothub/twin/PATCH/properties/desired/?$version=N`, only to connected,
//! subscribed devices), or an external broker's client
//! (`devices/{id}/twin/desired`, published for any device of its tenant: the broker
//! holds the subscriptions, so doppel cannot see a device (re)subscribe or cut it).
//!
//! Contract: the first desired state a device is sent after doppel starts following
//! it (it connected, or the pusher started) is everything it has not acknowledged;
//! after that, only values newer than the last version it was sent. A push that
//! cannot be delivered is logged and dropped; the device gets the values when it
//! (re)subscribes (embedded) or with the next change.

use super::device_twin;
use super::topics;
use crate::edge::{BoxFuture, DeviceKey, DisconnectReason, Qos};
use crate::registry::{ConnectionRegistry, SendError};
use crate::retry::Backoff;
use crate::sink::CommandSink;
use bytes::Bytes;
use doppel_twins::events::{DEVICE_CONNECTED, DEVICE_DELETE, DEVICE_UPDATE, TWIN_UPDATE};
use doppel_twins::ChangeEvent;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Why a desired update did not reach its device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undelivered {
    /// Connected, but not (yet) subscribed to its desired-properties topic.
    #[error("device '{0}' has not subscribed to its desired properties")]
    NotSubscribed(DeviceKey),
    #[error("{0}")]
    Failed(String),
}

/// How the pusher reaches devices of one transport.
pub trait DesiredLink: Send + Sync + 'static {
    /// Whether `device` is one this transport can send to now.
    fn reaches(&self, device: &DeviceKey) -> bool;

    /// Sends `body`, the desired values at desired version `version`, to `device`.
    fn send<'a>(
        &'a self,
        device: &'a DeviceKey,
        version: u64,
        body: &'a Value,
    ) -> BoxFuture<'a, Result<(), Undelivered>>;

    /// Whether this transport holds `device`'s connection here (so it can be cut).
    fn holds_connection(&self, device: &DeviceKey) -> bool;

    /// Ends `device`'s connection; `false` when there was none to end here.
    fn cut(&self, device: &DeviceKey, reason: DisconnectReason) -> bool;
}

/// The embedded broker: connected devices, IoT Hub's desired-properties topic.
impl DesiredLink for ConnectionRegistry {
    fn reaches(&self, device: &DeviceKey) -> bool {
        self.is_connected(device)
    }

    fn send<'a>(
        &'a self,
        device: &'a DeviceKey,
        version: u64,
        body: &'a Value,
    ) -> BoxFuture<'a, Result<(), Undelivered>> {
        let payload = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        let sent = ConnectionRegistry::send(
            self,
            device,
            &topics::desired_update_topic(version),
            payload,
            Qos::AtLeastOnce,
        );
        Box::pin(async move {
            sent.map_err(|e| match e {
                SendError::NotSubscribed { .. } => Undelivered::NotSubscribed(device.clone()),
                e => Undelivered::Failed(e.to_string()),
            })
        })
    }

    fn holds_connection(&self, device: &DeviceKey) -> bool {
        self.is_connected(device)
    }

    fn cut(&self, device: &DeviceKey, reason: DisconnectReason) -> bool {
        self.disconnect(device, reason)
    }
}

/// What the pusher does about one committed change.
#[derive(Debug, PartialEq)]
enum Step {
    Nothing,
    /// Send the twin's desired state to the device.
    Push,
    Cut(DisconnectReason),
    /// Cut the connection if the twin says the device connected to another node.
    CutIfElsewhere,
}

fn step_for(event: &ChangeEvent, link: &dyn DesiredLink, device: &DeviceKey) -> Step {
    match event.kind {
        DEVICE_DELETE => Step::Cut(DisconnectReason::AdministrativeAction),
        DEVICE_UPDATE if event.data["status"] == "disabled" => {
            Step::Cut(DisconnectReason::AdministrativeAction)
        }
        // IoT Hub keeps one connection per device: one here is an old one, taken over.
        DEVICE_CONNECTED if link.holds_connection(device) => Step::CutIfElsewhere,
        TWIN_UPDATE if link.reaches(device) => Step::Push,
        _ => Step::Nothing,
    }
}

/// Follows committed changes until the change stream closes (see the module docs).
pub async fn follow_changes<L: DesiredLink>(sink: Arc<dyn CommandSink>, link: Arc<L>) {
    let mut events = sink.changes();
    // The newest desired version each device has been sent.
    let mut pushed: HashMap<DeviceKey, u64> = HashMap::new();
    loop {
        let event: Arc<ChangeEvent> = match events.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "desired-state pusher fell behind the change stream"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let device = DeviceKey::new(event.tenant.clone(), event.twin_id.clone());
        match step_for(&event, link.as_ref(), &device) {
            Step::Nothing => {}
            Step::Cut(reason) => {
                let was_connected = link.cut(&device, reason);
                tracing::info!(%device, kind = event.kind, was_connected, "device disabled or deleted");
            }
            Step::CutIfElsewhere => {
                let Ok(Some(twin)) = sink.twin(&event.tenant, &event.twin_id) else {
                    continue;
                };
                let here = sink.node_id();
                let elsewhere = twin
                    .connection
                    .as_ref()
                    .filter(|c| c.connected)
                    .and_then(|c| c.node)
                    .filter(|n| *n != here);
                if let Some(node) = elsewhere {
                    tracing::info!(%device, node, "device connected to another node; its connection here is closed");
                    link.cut(&device, DisconnectReason::SessionTakenOver);
                }
            }
            Step::Push => {
                let Ok(Some(twin)) = sink.twin(&event.tenant, &event.twin_id) else {
                    continue;
                };
                let body = match pushed.get(&device) {
                    Some(&since) => device_twin::desired_patch(&twin, since),
                    // First change since (re)connect: everything still unacknowledged.
                    None => device_twin::unacknowledged_desired(&twin),
                };
                if let Some(body) = body {
                    match link.send(&device, twin.desired_version, &body).await {
                        Ok(()) => {
                            pushed.insert(device, twin.desired_version);
                        }
                        Err(e) => {
                            tracing::debug!(%device, error = %e, "desired update not delivered")
                        }
                    }
                }
            }
        }
        pushed.retain(|d, _| link.reaches(d));
    }
}

/// Delivers the desired values `device` has not acknowledged, retrying briefly until
/// its subscription (just authorized) is in place: the "on (re)subscribe" delivery.
pub fn deliver_pending_on_subscribe<L: DesiredLink>(
    sink: Arc<dyn CommandSink>,
    link: Arc<L>,
    device: DeviceKey,
) {
    tokio::spawn(async move {
        let Ok(Some(twin)) = sink.twin(&device.tenant, &device.device_id) else {
            return;
        };
        let Some(body) = device_twin::unacknowledged_desired(&twin) else {
            return;
        };
        // The subscription is being put in place as this runs: about 2 s of tries.
        let ms = Duration::from_millis;
        let mut backoff = Backoff::attempts(12, ms(10), ms(250));
        loop {
            match link.send(&device, twin.desired_version, &body).await {
                Err(Undelivered::NotSubscribed(_)) if backoff.wait().await => {}
                _ => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::CommandError;
    use doppel_twins::{Command, DeviceRecord, Outcome, PropertyBag, PropertyMeta, TwinRecord};
    use serde_json::json;
    use std::sync::Mutex;
    use tokio::sync::broadcast;

    /// Twins in a map and a change stream the test feeds.
    struct Twins {
        twins: Mutex<HashMap<String, TwinRecord>>,
        changes: broadcast::Sender<Arc<ChangeEvent>>,
    }

    impl CommandSink for Twins {
        fn submit(&self, _: Command) -> BoxFuture<'_, Result<Outcome, CommandError>> {
            Box::pin(async { Err(CommandError::internal("read-only")) })
        }
        fn submit_telemetry(
            &self,
            cmds: Vec<Command>,
        ) -> BoxFuture<'_, Vec<Result<Outcome, CommandError>>> {
            Box::pin(async move {
                cmds.iter()
                    .map(|_| Err(CommandError::internal("read-only")))
                    .collect()
            })
        }
        fn twin(&self, _: &str, id: &str) -> Result<Option<TwinRecord>, CommandError> {
            Ok(self.twins.lock().unwrap().get(id).cloned())
        }
        fn twin_linearizable<'a>(
            &'a self,
            tenant: &'a str,
            id: &'a str,
        ) -> BoxFuture<'a, Result<Option<TwinRecord>, CommandError>> {
            Box::pin(async move { self.twin(tenant, id) })
        }
        fn device(&self, _: &str, _: &str) -> Result<Option<DeviceRecord>, CommandError> {
            Ok(None)
        }
        fn changes(&self) -> broadcast::Receiver<Arc<ChangeEvent>> {
            self.changes.subscribe()
        }
        fn node_id(&self) -> u64 {
            1
        }
    }

    /// A transport that records what it was asked to do.
    #[derive(Default)]
    struct Recorder {
        connected: Mutex<Vec<DeviceKey>>,
        sent: Mutex<Vec<(String, u64, Value)>>,
        cut: Mutex<Vec<(String, DisconnectReason)>>,
    }

    impl DesiredLink for Recorder {
        fn reaches(&self, device: &DeviceKey) -> bool {
            self.connected.lock().unwrap().contains(device)
        }
        fn send<'a>(
            &'a self,
            device: &'a DeviceKey,
            version: u64,
            body: &'a Value,
        ) -> BoxFuture<'a, Result<(), Undelivered>> {
            self.sent
                .lock()
                .unwrap()
                .push((device.device_id.clone(), version, body.clone()));
            Box::pin(async { Ok(()) })
        }
        fn holds_connection(&self, device: &DeviceKey) -> bool {
            self.reaches(device)
        }
        fn cut(&self, device: &DeviceKey, reason: DisconnectReason) -> bool {
            self.cut
                .lock()
                .unwrap()
                .push((device.device_id.clone(), reason));
            self.connected.lock().unwrap().retain(|d| d != device);
            true
        }
    }

    fn twin(set_point: (f64, u64), acked: Option<u64>) -> TwinRecord {
        let mut root = PropertyBag::default();
        root.meta.insert(
            "setPoint".into(),
            PropertyMeta {
                desired_value: Some(json!(set_point.0)),
                desired_version: Some(set_point.1),
                ack_version: acked,
                ..Default::default()
            },
        );
        TwinRecord {
            id: "d".into(),
            etag: "e".into(),
            model: "m".into(),
            last_update_time: "t".into(),
            root,
            components: Default::default(),
            desired_version: set_point.1,
            connection: None,
        }
    }

    fn event(kind: &'static str, data: Value) -> Arc<ChangeEvent> {
        Arc::new(ChangeEvent {
            tenant: "t".into(),
            kind,
            twin_id: "d".into(),
            model: None,
            time: "t".into(),
            data,
            patch: None,
        })
    }

    /// Waits (with a deadline) until `done` holds of the recorder.
    async fn until(link: &Recorder, done: impl Fn(&Recorder) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !done(link) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the pusher did not act"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn new_desired_values_follow_with_their_version_and_a_disabled_device_is_cut() {
        let sink = Arc::new(Twins {
            twins: Mutex::new(HashMap::new()),
            changes: broadcast::channel(16).0,
        });
        let link = Arc::new(Recorder::default());
        link.connected
            .lock()
            .unwrap()
            .push(DeviceKey::new("t", "d"));
        tokio::spawn(follow_changes(sink.clone(), link.clone()));
        while sink.changes.receiver_count() < 1 {
            tokio::task::yield_now().await;
        }
        // v1 was acknowledged, v2 was not: the first push is what is unacknowledged.
        sink.twins
            .lock()
            .unwrap()
            .insert("d".into(), twin((21.5, 2), Some(1)));
        sink.changes.send(event(TWIN_UPDATE, json!({}))).unwrap();
        until(&link, |l| l.sent.lock().unwrap().len() == 1).await;
        assert_eq!(
            link.sent.lock().unwrap()[0],
            ("d".into(), 2, json!({"setPoint": 21.5, "$version": 2}))
        );
        // A change that sets nothing newer sends nothing; a newer value is sent.
        sink.changes.send(event(TWIN_UPDATE, json!({}))).unwrap();
        sink.twins
            .lock()
            .unwrap()
            .insert("d".into(), twin((30.0, 3), Some(2)));
        sink.changes.send(event(TWIN_UPDATE, json!({}))).unwrap();
        until(&link, |l| l.sent.lock().unwrap().len() == 2).await;
        assert_eq!(
            link.sent.lock().unwrap()[1],
            ("d".into(), 3, json!({"setPoint": 30.0, "$version": 3}))
        );
        sink.changes
            .send(event(DEVICE_UPDATE, json!({"status": "disabled"})))
            .unwrap();
        until(&link, |l| !l.cut.lock().unwrap().is_empty()).await;
        assert_eq!(
            link.cut.lock().unwrap()[0],
            ("d".into(), DisconnectReason::AdministrativeAction)
        );
    }
}
