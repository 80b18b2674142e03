//! [`IotHubEdge`]: the embedded broker's answer to everything an IoT Hub device says
//! over MQTT — the [`EdgeHandler`] that turns its messages into commands for a
//! [`CommandSink`].
//!
//! - CONNECT: the user name is IoT Hub's `{hub}/{deviceId}/?api-version=…`; the first
//!   DNS label of `{hub}` names the tenant (`default.doppel.local` → `default`); the
//!   password is a SAS token signed with one of the device's two keys, or, over TLS,
//!   the device presents the X.509 certificate whose SHA-256 thumbprint it was
//!   registered with; the client id must be the device id. Unknown device or bad
//!   token → "bad credentials"; a disabled device → "not authorized".
//! - PUBLISH telemetry and reported properties → the command of [`super::inbound`];
//!   twin GET → the device twin document ([`super::device_twin`]); a direct-method
//!   response → [`MethodCalls::complete`]. The PUBACK goes out only after
//!   [`CommandSink::submit`] resolved, i.e. once the command is durable, which is the
//!   device's back-pressure. A payload that breaks the model is refused with its
//!   reason (MQTT 5: PUBACK 0x99 + reason string) and counted; the connection survives.
//! - SUBSCRIBE: only the device's own IoT Hub topics; subscribing to desired
//!   properties delivers what the device has not acknowledged
//!   ([`super::desired::deliver_pending_on_subscribe`]).
//! - Connects and disconnects are handed, in order, to a channel of
//!   [`ConnectionChange`]s (the application records them on the twin).

use super::desired;
use super::device_twin::device_twin;
use super::inbound;
use super::methods::MethodCalls;
use super::topics::{self as iothub, DeviceTopic, IotHubUsername};
use crate::edge::{
    BoxFuture, ConnectInfo, ConnectRefusal, DeviceKey, DeviceSession, DisconnectReason,
    EdgeHandler, InboundPublish, PublishReason, PublishRefusal, Qos, SubscribeRefusal,
};
use crate::registry::{topic_matches, ConnectionRegistry};
use crate::sas;
use crate::sink::CommandSink;
use bytes::Bytes;
use doppel_twins::{Command, DeviceStatus, ErrorKind, Outcome};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counters for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct EdgeStats {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub refused_connects: AtomicU64,
}

/// A change of a device's connection, to be recorded on its twin in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionChange {
    pub key: DeviceKey,
    pub connected: bool,
    /// When the device was last heard from (on disconnect).
    pub last_activity: Option<String>,
}

pub struct IotHubEdge {
    sink: Arc<dyn CommandSink>,
    registry: Arc<ConnectionRegistry>,
    calls: MethodCalls,
    /// Connection changes, applied one after another by a single task (so a quick
    /// connect/disconnect pair can never land in the wrong order).
    connections: tokio::sync::mpsc::Sender<ConnectionChange>,
    /// When each connected device was last heard from (kept in memory; recorded when
    /// it disconnects, so telemetry costs no extra write).
    last_activity: Mutex<HashMap<DeviceKey, String>>,
    stats: Arc<EdgeStats>,
}

/// The tenant a hub host name stands for: its first DNS label.
pub fn tenant_of_hub(hub: &str) -> &str {
    hub.split('.').next().unwrap_or(hub)
}

/// Lower-case hex SHA-256, as a device's X.509 thumbprint is registered.
fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl IotHubEdge {
    /// The handler of the devices in `registry` (the one its server is bound with).
    pub fn new(
        sink: Arc<dyn CommandSink>,
        registry: ConnectionRegistry,
        calls: MethodCalls,
        connections: tokio::sync::mpsc::Sender<ConnectionChange>,
        stats: Arc<EdgeStats>,
    ) -> Self {
        IotHubEdge {
            sink,
            registry: Arc::new(registry),
            calls,
            connections,
            last_activity: Mutex::default(),
            stats,
        }
    }

    fn authenticate_sync(&self, info: &ConnectInfo) -> Result<DeviceSession, ConnectRefusal> {
        let username = info
            .username
            .as_deref()
            .and_then(IotHubUsername::parse)
            .ok_or(ConnectRefusal::BadCredentials)?;
        if username.module_id.is_some() {
            return Err(ConnectRefusal::BadCredentials);
        }
        if info.client_id != username.device_id {
            return Err(ConnectRefusal::BadClientId);
        }
        let tenant = tenant_of_hub(&username.hub);
        if doppel_twins::ids::check_tenant(tenant).is_err() {
            return Err(ConnectRefusal::BadCredentials);
        }
        let id = &username.device_id;
        let device = self
            .sink
            .device(tenant, id)
            .map_err(|_| ConnectRefusal::ServerUnavailable)?
            .ok_or(ConnectRefusal::BadCredentials)?;
        // A registered X.509 certificate (its SHA-256 thumbprint) or a SAS token.
        let by_certificate = match (&info.client_certificate, &device.x509_thumbprint) {
            (Some(der), Some(thumb)) => sha256_hex(der) == *thumb,
            _ => false,
        };
        let now = now_unix();
        let by_token = || {
            info.password.as_deref().is_some_and(|token| {
                [&device.primary_key, &device.secondary_key]
                    .iter()
                    .any(|key| sas::verify_device_token(token, id, key, now).is_ok())
            })
        };
        if !(by_certificate || by_token()) {
            return Err(ConnectRefusal::BadCredentials);
        }
        // Checked after the credentials, so a stranger learns nothing about the device.
        if device.status == DeviceStatus::Disabled {
            return Err(ConnectRefusal::NotAuthorized);
        }
        Ok(DeviceSession {
            key: DeviceKey::new(tenant, id.clone()),
            twin_id: id.clone(),
            client_id: info.client_id.clone(),
            protocol: info.protocol,
        })
    }

    fn reply(&self, session: &DeviceSession, topic: String, body: &serde_json::Value) {
        let payload = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        if let Err(e) = self
            .registry
            .send(&session.key, &topic, payload, Qos::AtMostOnce)
        {
            tracing::debug!(device = %session.key, error = %e, "twin response not delivered");
        }
    }

    fn heard_from(&self, key: &DeviceKey) {
        if let Ok(mut seen) = self.last_activity.lock() {
            seen.insert(key.clone(), now_rfc3339());
        }
    }

    fn record_connection(&self, key: &DeviceKey, connected: bool, last_activity: Option<String>) {
        let change = ConnectionChange {
            key: key.clone(),
            connected,
            last_activity,
        };
        if self.connections.try_send(change).is_err() {
            tracing::warn!(device = %key, connected, "connection-state queue full; change not recorded");
        }
    }

    async fn handle_publish(
        &self,
        session: &DeviceSession,
        topic: &str,
        payload: Bytes,
    ) -> Result<(), PublishRefusal> {
        self.heard_from(&session.key);
        let tenant = &session.key.tenant;
        let twin_id = &session.twin_id;
        let parsed = iothub::parse_device_topic(&session.key.device_id, topic)
            .map_err(|e| inbound::topic_refusal(&e))?;
        match parsed {
            DeviceTopic::Telemetry { properties } => {
                let cmd = inbound::telemetry(tenant, twin_id, &properties, &payload)?;
                self.sink
                    .submit(cmd)
                    .await
                    .map_err(|e| inbound::refusal(&e))?;
            }
            DeviceTopic::TwinPatchReported { rid } => {
                let cmd = inbound::reported(tenant, twin_id, &payload)?;
                match self.sink.submit(cmd).await {
                    Ok(Outcome::Twin { twin, .. }) => self.reply(
                        session,
                        iothub::twin_response_topic(204, &rid, Some(twin.desired_version)),
                        &serde_json::Value::Null,
                    ),
                    Ok(_) => {}
                    Err(e) if e.is_final() && e.kind == ErrorKind::Invalid => {
                        // IoT Hub answers on the response topic; the publish itself was
                        // taken (and is counted as rejected).
                        self.reply(
                            session,
                            iothub::twin_response_topic(400, &rid, None),
                            &serde_json::json!({"code": e.code, "message": e.message}),
                        );
                        return Err(inbound::refusal(&e));
                    }
                    Err(e) => return Err(inbound::refusal(&e)),
                }
            }
            DeviceTopic::TwinGet { rid } => {
                let twin = self
                    .sink
                    .twin_linearizable(tenant, twin_id)
                    .await
                    .map_err(|e| PublishRefusal::new(PublishReason::UnspecifiedError, e.message))?;
                match twin {
                    Some(t) => self.reply(
                        session,
                        iothub::twin_response_topic(200, &rid, Some(t.desired_version)),
                        &device_twin(&t),
                    ),
                    None => self.reply(
                        session,
                        iothub::twin_response_topic(404, &rid, None),
                        &serde_json::json!({"code": "DigitalTwinNotFound"}),
                    ),
                }
            }
            DeviceTopic::MethodResponse { status, rid } => {
                let body = if payload.is_empty() {
                    serde_json::Value::Null
                } else {
                    inbound::json(&payload)?
                };
                if !self.calls.complete(&session.key, &rid, status, body) {
                    tracing::debug!(device = %session.key, status, rid, "method response with no pending call");
                }
            }
        }
        Ok(())
    }

    /// The `RecordTelemetry` a publish stands for, when it is well-formed telemetry of
    /// the device's own twin (anything else goes the one-at-a-time way, which also
    /// gives the precise refusal).
    fn telemetry_command(session: &DeviceSession, topic: &str, payload: &Bytes) -> Option<Command> {
        let DeviceTopic::Telemetry { properties } =
            iothub::parse_device_topic(&session.key.device_id, topic).ok()?
        else {
            return None;
        };
        inbound::telemetry(&session.key.tenant, &session.twin_id, &properties, payload).ok()
    }

    /// Commits a run of telemetry together and answers each message; `true` when a
    /// refusal ends the connection (later messages must not be processed).
    async fn commit_telemetry(
        &self,
        session: &DeviceSession,
        run: &mut Vec<(Command, Qos)>,
        results: &mut Vec<Result<(), PublishRefusal>>,
    ) -> bool {
        if run.is_empty() {
            return false;
        }
        self.heard_from(&session.key);
        let (cmds, qos): (Vec<Command>, Vec<Qos>) = run.drain(..).unzip();
        let answers = self.sink.submit_telemetry(cmds).await;
        for (answer, qos) in answers.into_iter().zip(qos) {
            let r = answer.map(|_| ()).map_err(|e| inbound::refusal(&e));
            let stop = self.count(session, "telemetry", &r, qos);
            results.push(r);
            if stop {
                return true;
            }
        }
        false
    }

    /// Counts and logs one answer; `true` when it ends the connection.
    fn count(
        &self,
        session: &DeviceSession,
        topic: &str,
        r: &Result<(), PublishRefusal>,
        qos: Qos,
    ) -> bool {
        match r {
            Ok(()) => {
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(e) => {
                tracing::info!(device = %session.key, topic, reason = %e.message, "device message rejected");
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                e.ends_connection(session.protocol, qos)
            }
        }
    }
}

impl EdgeHandler for IotHubEdge {
    fn authenticate<'a>(
        &'a self,
        info: &'a ConnectInfo,
    ) -> BoxFuture<'a, Result<DeviceSession, ConnectRefusal>> {
        Box::pin(async move {
            let r = self.authenticate_sync(info);
            if let Err(e) = &r {
                self.stats.refused_connects.fetch_add(1, Ordering::Relaxed);
                tracing::info!(client_id = %info.client_id, peer = %info.peer_addr, reason = %e, "device connection refused");
            }
            r
        })
    }

    fn publish<'a>(
        &'a self,
        session: &'a DeviceSession,
        topic: &'a str,
        payload: Bytes,
        qos: Qos,
    ) -> BoxFuture<'a, Result<(), PublishRefusal>> {
        Box::pin(async move {
            let r = self.handle_publish(session, topic, payload).await;
            self.count(session, topic, &r, qos);
            r
        })
    }

    /// Back-to-back telemetry of the device is committed together (typically one
    /// Raft entry); every other message is handled alone, in order.
    fn publish_batch<'a>(
        &'a self,
        session: &'a DeviceSession,
        messages: Vec<InboundPublish>,
    ) -> BoxFuture<'a, Vec<Result<(), PublishRefusal>>> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(messages.len());
            let mut run = Vec::new();
            for m in messages {
                if let Some(cmd) = Self::telemetry_command(session, &m.topic, &m.payload) {
                    run.push((cmd, m.qos));
                    continue;
                }
                if self.commit_telemetry(session, &mut run, &mut results).await {
                    return results;
                }
                let r = self.handle_publish(session, &m.topic, m.payload).await;
                let stop = self.count(session, &m.topic, &r, m.qos);
                results.push(r);
                if stop {
                    return results;
                }
            }
            self.commit_telemetry(session, &mut run, &mut results).await;
            results
        })
    }

    fn authorize_subscribe<'a>(
        &'a self,
        session: &'a DeviceSession,
        filter: &'a str,
    ) -> BoxFuture<'a, Result<(), SubscribeRefusal>> {
        Box::pin(async move {
            if !iothub::subscription_allowed(&session.key.device_id, filter) {
                return Err(SubscribeRefusal::NotAuthorized);
            }
            if topic_matches(&iothub::desired_update_topic(1), filter) {
                desired::deliver_pending_on_subscribe(
                    self.sink.clone(),
                    self.registry.clone(),
                    session.key.clone(),
                );
            }
            Ok(())
        })
    }

    fn connected(&self, session: &DeviceSession) {
        tracing::info!(device = %session.key, protocol = ?session.protocol, "device connected");
        self.record_connection(&session.key, true, None);
    }

    fn disconnected(&self, session: &DeviceSession, reason: DisconnectReason) {
        tracing::info!(device = %session.key, ?reason, "device disconnected");
        let last = self
            .last_activity
            .lock()
            .ok()
            .and_then(|mut seen| seen.remove(&session.key));
        // A session taken over by a newer connection of the same device: the device
        // is still connected, so there is nothing to record.
        if !self.registry.is_connected(&session.key) {
            self.record_connection(&session.key, false, last);
        }
    }
}
