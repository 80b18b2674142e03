//! [`DeviceEdge`]: doppel's answer to everything a device says over MQTT.
//!
//! - CONNECT: the user name is IoT Hub's `{hub}/{deviceId}/?api-version=…`; the first
//!   DNS label of `{hub}` names the tenant (`default.doppel.local` → `default`); the
//!   password is a SAS token signed with one of the device's two keys, or, over TLS,
//!   the device presents the X.509 certificate whose SHA-256 thumbprint it was
//!   registered with; the client id must be the device id. Unknown device or bad token → "bad credentials"; a
//!   disabled device → "not authorized".
//! - PUBLISH telemetry (`devices/{id}/messages/events/…`) → `RecordTelemetry`;
//!   reported properties (`$iothub/twin/PATCH/properties/reported/?$rid=`) →
//!   `ReportProperties`; twin GET → the device twin document. The PUBACK goes out only
//!   after the command is durable (on a majority of its shard's replicas), which is the device's
//!   back-pressure. A payload that breaks the model is refused with its reason
//!   (MQTT 5: PUBACK 0x99 + reason string) and counted; the connection survives.
//! - SUBSCRIBE: only the device's own IoT Hub topics.

use super::device_twin::device_twin;
use crate::actors::ActorError;
use crate::node::Node;
use bytes::Bytes;
use doppel_cluster::ProposeError;
use doppel_protocols::edge::{
    BoxFuture, ConnectInfo, ConnectRefusal, DeviceKey, DeviceSession, DisconnectReason,
    EdgeHandler, InboundPublish, PublishReason, PublishRefusal, Qos, SubscribeRefusal,
};
use doppel_protocols::iothub::{self, DeviceTopic, IotHubUsername};
use doppel_protocols::registry::ConnectionRegistry;
use doppel_protocols::sas;
use doppel_twins::keys::shard_of;
use doppel_twins::{
    load_device, load_twin, Command, DeviceStatus, Disposition, ErrorKind, Outcome,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Counters for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct EdgeStats {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub refused_connects: AtomicU64,
}

/// A change of a device's connection, recorded on its twin in arrival order.
pub(super) struct ConnectionChange {
    pub key: DeviceKey,
    pub connected: bool,
    pub last_activity: Option<String>,
}

pub struct DeviceEdge {
    pub(super) state: Node,
    /// Connection changes, applied one after another by a single task (so a quick
    /// connect/disconnect pair can never land in the wrong order).
    pub(super) connections: tokio::sync::mpsc::Sender<ConnectionChange>,
    /// When each connected device was last heard from (kept in memory; written to the
    /// twin when it disconnects, so telemetry costs no extra write).
    pub(super) last_activity: std::sync::Mutex<std::collections::HashMap<DeviceKey, String>>,
    /// Set once the server is bound (the server needs the handler first).
    pub(super) registry: OnceLock<ConnectionRegistry>,
    pub stats: Arc<EdgeStats>,
}

/// The tenant a hub host name stands for: its first DNS label.
pub fn tenant_of_hub(hub: &str) -> &str {
    hub.split('.').next().unwrap_or(hub)
}

/// The device's telemetry message as a command; its source time is IoT Hub's
/// `iothub-creation-time-utc` topic property, when given.
fn record_telemetry(
    session: &DeviceSession,
    properties: Vec<(String, String)>,
    body: serde_json::Value,
) -> Command {
    let source_time = properties
        .into_iter()
        .find(|(k, _)| k == "iothub-creation-time-utc")
        .map(|(_, v)| v);
    Command::RecordTelemetry {
        tenant: session.key.tenant.clone(),
        twin_id: session.twin_id.clone(),
        body,
        source_time,
    }
}

/// The MQTT answer to a command that failed, from its disposition: a rejection is
/// the device's fault (0x99 for a payload that breaks the model), a refusal that may
/// pass later is a quota (0x97), anything else unspecified (0x80).
fn actor_refusal(e: ActorError) -> PublishRefusal {
    let reason = match e.disposition() {
        Disposition::Rejected if e.kind() == ErrorKind::Invalid => {
            PublishReason::PayloadFormatInvalid
        }
        Disposition::Rejected => PublishReason::ImplementationSpecificError,
        Disposition::Retry => PublishReason::QuotaExceeded,
        Disposition::Unknown | Disposition::Internal => PublishReason::UnspecifiedError,
    };
    PublishRefusal::new(reason, e.to_string())
}

impl DeviceEdge {
    fn now_unix() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
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
        let shard = shard_of(tenant, id, self.state.shard_count);
        let device = load_device(&self.state.storage, shard, tenant, id)
            .map_err(|_| ConnectRefusal::ServerUnavailable)?
            .ok_or(ConnectRefusal::BadCredentials)?;
        // A registered X.509 certificate (its SHA-256 thumbprint) or a SAS token.
        let by_certificate = match (&info.client_certificate, &device.x509_thumbprint) {
            (Some(der), Some(thumb)) => crate::tokens::sha256_hex(der) == *thumb,
            _ => false,
        };
        let now = Self::now_unix();
        let by_token = || {
            info.password.as_deref().is_some_and(|token| {
                [&device.primary_key, &device.secondary_key]
                    .iter()
                    .any(|key| sas::verify_device_token(token, id, key, now).is_ok())
            })
        };
        let valid = by_certificate || by_token();
        if !valid {
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
        let Some(registry) = self.registry.get() else {
            return;
        };
        let payload = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        if let Err(e) = registry.send(&session.key, &topic, payload, Qos::AtMostOnce) {
            tracing::debug!(device = %session.key, error = %e, "twin response not delivered");
        }
    }

    fn now_rfc3339() -> String {
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
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
        if let Ok(mut seen) = self.last_activity.lock() {
            seen.insert(session.key.clone(), Self::now_rfc3339());
        }
        let tenant = session.key.tenant.clone();
        let twin_id = session.twin_id.clone();
        let parsed = iothub::parse_device_topic(&session.key.device_id, topic).map_err(|e| {
            let code = match e {
                iothub::TopicError::OtherDevice { .. } => PublishReason::NotAuthorized,
                _ => PublishReason::TopicNameInvalid,
            };
            PublishRefusal::new(code, e.to_string())
        })?;
        let json = |payload: &Bytes| -> Result<serde_json::Value, PublishRefusal> {
            serde_json::from_slice(payload).map_err(|e| {
                PublishRefusal::new(
                    PublishReason::PayloadFormatInvalid,
                    format!("the payload is not JSON: {e}"),
                )
            })
        };
        match parsed {
            DeviceTopic::Telemetry { properties } => {
                let cmd = record_telemetry(session, properties, json(&payload)?);
                // Telemetry goes straight to the commit path of its shard's leader
                // (see `routing::execute`).
                crate::dispatch::execute(&self.state, cmd)
                    .await
                    .map_err(actor_refusal)?;
            }
            DeviceTopic::TwinPatchReported { rid } => {
                let reported = json(&payload)?;
                let cmd = Command::ReportProperties {
                    tenant,
                    twin_id,
                    reported,
                };
                match crate::dispatch::execute(&self.state, cmd).await {
                    Ok(Outcome::Twin { twin, .. }) => self.reply(
                        session,
                        iothub::twin_response_topic(204, &rid, Some(twin.desired_version)),
                        &serde_json::Value::Null,
                    ),
                    Ok(_) => {}
                    Err(ActorError::Propose(ProposeError::Rejected(e)))
                        if e.kind() == ErrorKind::Invalid =>
                    {
                        // IoT Hub answers on the response topic; the publish itself was
                        // taken (and is counted as rejected).
                        self.reply(
                            session,
                            iothub::twin_response_topic(400, &rid, None),
                            &serde_json::json!({"code": e.code(), "message": e.to_string()}),
                        );
                        return Err(PublishRefusal::new(
                            PublishReason::PayloadFormatInvalid,
                            e.to_string(),
                        ));
                    }
                    Err(e) => return Err(actor_refusal(e)),
                }
            }
            DeviceTopic::TwinGet { rid } => {
                let shard = shard_of(&tenant, &twin_id, self.state.shard_count);
                // Linearizable like a REST GET: this node applies everything its
                // shard's leader had committed before answering.
                let cluster = self.state.proposer.cluster();
                if !cluster.is_single_voter() {
                    cluster.read_barrier(&[shard]).await.map_err(|e| {
                        PublishRefusal::new(PublishReason::UnspecifiedError, e.to_string())
                    })?;
                }
                let twin =
                    load_twin(&self.state.storage, shard, &tenant, &twin_id).map_err(|e| {
                        PublishRefusal::new(PublishReason::UnspecifiedError, e.to_string())
                    })?;
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
                    json(&payload)?
                };
                if !self
                    .state
                    .devices
                    .calls
                    .complete(&session.key, &rid, status, body)
                {
                    tracing::debug!(device = %session.key, status, rid, "method response with no pending call");
                }
            }
        }
        Ok(())
    }
}

impl DeviceEdge {
    /// The `RecordTelemetry` a publish stands for, when it is well-formed telemetry of
    /// the device's own twin (anything else goes the one-at-a-time way, which also
    /// gives the precise refusal).
    fn telemetry_command(session: &DeviceSession, topic: &str, payload: &Bytes) -> Option<Command> {
        let DeviceTopic::Telemetry { properties } =
            iothub::parse_device_topic(&session.key.device_id, topic).ok()?
        else {
            return None;
        };
        let body = serde_json::from_slice(payload).ok()?;
        Some(record_telemetry(session, properties, body))
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
        if let Ok(mut seen) = self.last_activity.lock() {
            seen.insert(session.key.clone(), Self::now_rfc3339());
        }
        let (cmds, qos): (Vec<Command>, Vec<Qos>) = run.drain(..).unzip();
        let answers = crate::dispatch::execute_telemetry(&self.state, cmds).await;
        for (answer, qos) in answers.into_iter().zip(qos) {
            let r = answer.map(|_| ()).map_err(actor_refusal);
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

impl EdgeHandler for DeviceEdge {
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
        _qos: Qos,
    ) -> BoxFuture<'a, Result<(), PublishRefusal>> {
        Box::pin(async move {
            let r = self.handle_publish(session, topic, payload).await;
            self.count(session, topic, &r, _qos);
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
            if iothub::subscription_allowed(&session.key.device_id, filter) {
                let desired = iothub::desired_update_topic(1);
                if doppel_protocols::registry::topic_matches(&desired, filter) {
                    if let Some(registry) = self.registry.get() {
                        super::desired::deliver_pending_on_subscribe(
                            self.state.clone(),
                            registry.clone(),
                            session.key.clone(),
                        );
                    }
                }
                Ok(())
            } else {
                Err(SubscribeRefusal::NotAuthorized)
            }
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
        let still_connected = self
            .registry
            .get()
            .is_some_and(|r| r.is_connected(&session.key));
        if !still_connected {
            self.record_connection(&session.key, false, last);
        }
    }
}
