//! Direct methods: an app invokes a DTDL Command of a twin; the embedded broker
//! delivers it to the connected device as an IoT Hub direct method and waits for its
//! answer (the device edge hands each `$iothub/methods/res/…` to [`MethodCalls::complete`]).
//!
//! ```text
//!  POST /digitaltwins/{id}/commands/{name} ─▶ MethodCalls::call ─▶ $iothub/methods/POST/{name}/?$rid=R
//!            ▲                                                          │ device
//!            └──────── oneshot ◀── complete(R) ◀── $iothub/methods/res/{status}/?$rid=R
//! ```
//!
//! Contract: every call ends — with the device's status and payload, or with
//! `Offline` / `NotListening` at once, or with `Timeout` after the caller's deadline
//! (its pending entry is removed then, so a late answer is dropped, not leaked).

use super::topics;
use crate::edge::{DeviceKey, Qos};
use crate::registry::{ConnectionRegistry, SendError};
use bytes::Bytes;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MethodError {
    #[error("device '{0}' is not connected")]
    Offline(String),
    #[error("device '{0}' is connected but has not subscribed to $iothub/methods/POST/#")]
    NotListening(String),
    #[error("device '{0}' is not taking messages now (its queue is full); retry")]
    Busy(String),
    #[error("device '{device}' did not answer within {secs} s")]
    Timeout { device: String, secs: u64 },
}

type Pending = HashMap<u64, (DeviceKey, oneshot::Sender<(u16, Value)>)>;

/// Calls waiting for their device's answer.
#[derive(Clone, Default)]
pub struct MethodCalls {
    pending: Arc<Mutex<Pending>>,
    next_rid: Arc<AtomicU64>,
}

impl MethodCalls {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Invokes `method` on `device` with `payload` and waits up to `timeout`.
    pub async fn call(
        &self,
        registry: &ConnectionRegistry,
        device: &DeviceKey,
        method: &str,
        payload: &Value,
        timeout: Duration,
    ) -> Result<(u16, Value), MethodError> {
        let rid = self.next_rid.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        self.lock().insert(rid, (device.clone(), tx));
        let body = Bytes::from(serde_json::to_vec(payload).unwrap_or_default());
        let topic = topics::method_request_topic(method, &rid.to_string());
        if let Err(e) = registry.send(device, &topic, body, Qos::AtMostOnce) {
            self.lock().remove(&rid);
            let id = device.device_id.clone();
            return Err(match e {
                SendError::NotConnected(_) => MethodError::Offline(id),
                SendError::NotSubscribed { .. } => MethodError::NotListening(id),
                SendError::QueueFull(_) => MethodError::Busy(id),
            });
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            _ => {
                self.lock().remove(&rid);
                Err(MethodError::Timeout {
                    device: device.device_id.clone(),
                    secs: timeout.as_secs(),
                })
            }
        }
    }

    /// A device answered request `rid`. Answers from another device than the one
    /// called, or for unknown/expired requests, are ignored (returns false).
    pub fn complete(&self, device: &DeviceKey, rid: &str, status: u16, payload: Value) -> bool {
        let Ok(rid) = rid.parse::<u64>() else {
            return false;
        };
        let mut pending = self.lock();
        match pending.get(&rid) {
            Some((owner, _)) if owner == device => {}
            _ => return false,
        }
        match pending.remove(&rid) {
            Some((_, tx)) => tx.send((status, payload)).is_ok(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_offline_device_fails_at_once() {
        let calls = MethodCalls::default();
        let reg = ConnectionRegistry::new();
        let dev = DeviceKey::new("t", "d");
        let e = calls
            .call(&reg, &dev, "reboot", &Value::Null, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(e, MethodError::Offline("d".into()));
        assert!(calls.lock().is_empty(), "no pending entry left behind");
    }

    #[test]
    fn answers_are_matched_to_the_calling_device_only() {
        let calls = MethodCalls::default();
        let (tx, _rx) = oneshot::channel();
        calls.lock().insert(7, (DeviceKey::new("t", "d"), tx));
        assert!(!calls.complete(&DeviceKey::new("t", "other"), "7", 200, Value::Null));
        assert!(!calls.complete(&DeviceKey::new("t", "d"), "x", 200, Value::Null));
        assert!(calls.complete(&DeviceKey::new("t", "d"), "7", 200, Value::Null));
        assert!(calls.lock().is_empty());
    }
}
