//! Who is connected, and how the application reaches them.
//!
//! [`ConnectionRegistry`] maps each connected [`DeviceKey`] to its connection:
//! a bounded queue of outbound messages, a kill switch, and the filters the
//! device subscribed to. The application holds a clone and calls
//! [`ConnectionRegistry::send`] (deliver a message to a device) and
//! [`ConnectionRegistry::disconnect`] (cut a device off at once, e.g. when it
//! is disabled).
//!
//! Contract:
//! - at most one connection per key; registering a second one kicks the first
//!   with [`DisconnectReason::SessionTakenOver`];
//! - `send` never blocks: a full queue is an error ([`SendError::QueueFull`]),
//!   so the application can never be stalled by a slow device;
//! - `send` only delivers to a topic the device subscribed to (MQTT forbids
//!   anything else), and says so when it is not;
//! - `disconnect` interrupts the connection even while it awaits the handler
//!   (a pending publish of a disabled device is abandoned unacknowledged);
//! - to disable a device: first make `authenticate` refuse it, then call
//!   `disconnect`, so that a reconnect racing the disconnect is refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::edge::{DeviceKey, DisconnectReason, Qos};

/// A message from the application to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    pub topic: String,
    pub payload: Bytes,
    pub qos: Qos,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("device {0} is not connected")]
    NotConnected(DeviceKey),
    #[error("device {device} has not subscribed to a filter matching {topic:?}")]
    NotSubscribed { device: DeviceKey, topic: String },
    #[error("outbound queue of device {0} is full")]
    QueueFull(DeviceKey),
}

pub(crate) struct Entry {
    pub(crate) connection_id: u64,
    pub(crate) outbound: mpsc::Sender<OutboundMessage>,
    pub(crate) kill: watch::Sender<Option<DisconnectReason>>,
    /// Granted filters and their QoS.
    pub(crate) subscriptions: Vec<(String, Qos)>,
}

#[derive(Default)]
struct Inner {
    connections: Mutex<HashMap<DeviceKey, Entry>>,
    next_connection_id: AtomicU64,
}

/// A cheap, cloneable handle on the connected devices.
#[derive(Clone, Default)]
pub struct ConnectionRegistry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ConnectionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionRegistry")
            .field("connected", &self.connected_count())
            .finish()
    }
}

impl ConnectionRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<DeviceKey, Entry>> {
        // A poisoned map is still a consistent map: every critical section
        // below is a single insert/remove/lookup.
        self.inner
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queue a message for a connected device. QoS is capped at the QoS the
    /// device was granted for the matching filter.
    pub fn send(
        &self,
        device: &DeviceKey,
        topic: &str,
        payload: Bytes,
        qos: Qos,
    ) -> Result<(), SendError> {
        let map = self.lock();
        let entry = map
            .get(device)
            .ok_or_else(|| SendError::NotConnected(device.clone()))?;
        let granted = entry
            .subscriptions
            .iter()
            .filter(|(filter, _)| topic_matches(topic, filter))
            .map(|(_, q)| *q)
            .max()
            .ok_or_else(|| SendError::NotSubscribed {
                device: device.clone(),
                topic: topic.to_string(),
            })?;
        let message = OutboundMessage {
            topic: topic.to_string(),
            payload,
            qos: qos.min(granted),
        };
        entry.outbound.try_send(message).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::QueueFull(device.clone()),
            mpsc::error::TrySendError::Closed(_) => SendError::NotConnected(device.clone()),
        })
    }

    /// Close the device's connection now. Returns whether it was connected.
    pub fn disconnect(&self, device: &DeviceKey, reason: DisconnectReason) -> bool {
        let map = self.lock();
        match map.get(device) {
            Some(entry) => {
                entry.kill.send_replace(Some(reason));
                true
            }
            None => false,
        }
    }

    pub fn is_connected(&self, device: &DeviceKey) -> bool {
        self.lock().contains_key(device)
    }

    pub fn connected_count(&self) -> usize {
        self.lock().len()
    }

    /// Kick every connection (server shutdown).
    pub(crate) fn disconnect_all(&self, reason: DisconnectReason) {
        for entry in self.lock().values() {
            entry.kill.send_replace(Some(reason));
        }
    }

    pub(crate) fn next_connection_id(&self) -> u64 {
        self.inner
            .next_connection_id
            .fetch_add(1, Ordering::Relaxed)
    }

    /// Register a connection, kicking any previous one for the same device.
    pub(crate) fn register(&self, device: DeviceKey, entry: Entry) {
        if let Some(old) = self.lock().insert(device, entry) {
            old.kill
                .send_replace(Some(DisconnectReason::SessionTakenOver));
        }
    }

    /// Remove a connection, unless it was already replaced by a newer one.
    pub(crate) fn unregister(&self, device: &DeviceKey, connection_id: u64) {
        let mut map = self.lock();
        if map
            .get(device)
            .is_some_and(|e| e.connection_id == connection_id)
        {
            map.remove(device);
        }
    }

    pub(crate) fn set_subscription(
        &self,
        device: &DeviceKey,
        connection_id: u64,
        filter: &str,
        qos: Qos,
    ) {
        let mut map = self.lock();
        if let Some(entry) = map
            .get_mut(device)
            .filter(|e| e.connection_id == connection_id)
        {
            entry.subscriptions.retain(|(f, _)| f != filter);
            entry.subscriptions.push((filter.to_string(), qos));
        }
    }

    pub(crate) fn remove_subscription(&self, device: &DeviceKey, connection_id: u64, filter: &str) {
        let mut map = self.lock();
        if let Some(entry) = map
            .get_mut(device)
            .filter(|e| e.connection_id == connection_id)
        {
            entry.subscriptions.retain(|(f, _)| f != filter);
        }
    }
}

/// Does `topic` match the subscription `filter` (MQTT 3.1.1 §4.7 / 5 §4.7)?
/// A topic starting with `$` is not matched by a filter whose first level is a
/// wildcard, but is matched by a literal one such as `$iothub/methods/POST/#`.
/// (rumqttc's `matches` refuses every `$` topic, which would cut off all of
/// IoT Hub's `$iothub/...` topics.)
pub fn topic_matches(topic: &str, filter: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('#') || filter.starts_with('+')) {
        return false;
    }
    let mut levels = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match levels.next() {
            Some(level) if f == "+" || f == level => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        id: u64,
    ) -> (
        Entry,
        mpsc::Receiver<OutboundMessage>,
        watch::Receiver<Option<DisconnectReason>>,
    ) {
        let (tx, rx) = mpsc::channel(2);
        let (kill, kill_rx) = watch::channel(None);
        (
            Entry {
                connection_id: id,
                outbound: tx,
                kill,
                subscriptions: Vec::new(),
            },
            rx,
            kill_rx,
        )
    }

    #[test]
    fn topic_matching_follows_the_spec_including_dollar_topics() {
        assert!(topic_matches(
            "$iothub/methods/POST/reboot/?$rid=1",
            "$iothub/methods/POST/#"
        ));
        assert!(!topic_matches("$iothub/methods/POST/x", "#"));
        assert!(!topic_matches("$iothub/methods/POST/x", "+/methods/#"));
        assert!(topic_matches("a/b/c", "a/+/c"));
        assert!(
            topic_matches("a/b", "a/b/#"),
            "# matches the parent level too"
        );
        assert!(topic_matches("a/b/c", "#"));
        assert!(!topic_matches("a/b/c", "a/b"));
        assert!(!topic_matches("a/b", "a/b/c"));
        assert!(topic_matches("é/x", "+/x"), "multibyte first character");
    }

    #[test]
    fn send_needs_a_connection_and_a_matching_subscription() {
        let reg = ConnectionRegistry::new();
        let dev = DeviceKey::new("t", "d");
        assert_eq!(
            reg.send(&dev, "a/b", Bytes::new(), Qos::AtMostOnce),
            Err(SendError::NotConnected(dev.clone()))
        );
        let (e, mut rx, _k) = entry(1);
        reg.register(dev.clone(), e);
        assert!(matches!(
            reg.send(&dev, "a/b", Bytes::new(), Qos::AtMostOnce),
            Err(SendError::NotSubscribed { .. })
        ));
        reg.set_subscription(&dev, 1, "a/#", Qos::AtMostOnce);
        reg.send(&dev, "a/b", Bytes::from_static(b"x"), Qos::AtLeastOnce)
            .expect("queued");
        let got = rx.try_recv().expect("delivered");
        assert_eq!(got.qos, Qos::AtMostOnce, "capped at the granted QoS");
        reg.send(&dev, "a/b", Bytes::new(), Qos::AtMostOnce)
            .expect("queued");
        reg.send(&dev, "a/b", Bytes::new(), Qos::AtMostOnce)
            .expect("queued");
        assert_eq!(
            reg.send(&dev, "a/b", Bytes::new(), Qos::AtMostOnce),
            Err(SendError::QueueFull(dev.clone()))
        );
    }

    #[test]
    fn a_second_connection_takes_over_and_the_first_cannot_unregister_it() {
        let reg = ConnectionRegistry::new();
        let dev = DeviceKey::new("t", "d");
        let (e1, _rx1, k1) = entry(1);
        let (e2, _rx2, k2) = entry(2);
        reg.register(dev.clone(), e1);
        reg.register(dev.clone(), e2);
        assert_eq!(*k1.borrow(), Some(DisconnectReason::SessionTakenOver));
        assert_eq!(*k2.borrow(), None);
        reg.unregister(&dev, 1);
        assert!(reg.is_connected(&dev));
        assert!(reg.disconnect(&dev, DisconnectReason::AdministrativeAction));
        assert_eq!(*k2.borrow(), Some(DisconnectReason::AdministrativeAction));
        reg.unregister(&dev, 2);
        assert!(!reg.is_connected(&dev));
    }
}
