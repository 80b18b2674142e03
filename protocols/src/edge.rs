//! The boundary between the MQTT server and the rest of doppel.
//!
//! The server knows MQTT; the application knows devices, twins and durability.
//! [`EdgeHandler`] is the only thing the server calls, and it speaks doppel
//! types: [`ConnectInfo`] in, [`DeviceSession`] out, [`PublishRefusal`] /
//! [`SubscribeRefusal`] / [`ConnectRefusal`] as typed answers that the server
//! maps to MQTT 3.1.1 return codes and MQTT 5 reason codes in one place
//! ([`crate::codec`]). No codec type crosses this boundary.
//!
//! Contract:
//! - `authenticate` runs once per CONNECT, before CONNACK. An `Err` closes the
//!   connection after a refusing CONNACK.
//! - `publish_batch` (by default `publish`, one message at a time) is awaited before
//!   the PUBACKs of its QoS 1 messages are written, so an implementation that returns
//!   only once the changes are durable gives the device "PUBACK = durable" and
//!   back-pressure (the connection reads nothing else from that device meanwhile).
//!   A batch is the publishes the device sent back to back that the server had
//!   already read; a device with one message in flight gets batches of one.
//! - `authorize_subscribe` is asked for each filter of each SUBSCRIBE.
//! - `connected` / `disconnected` are notifications (sync, must not block):
//!   `connected` after CONNACK was sent, `disconnected` exactly once per
//!   `connected`, whatever ended the connection.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::Bytes;

/// A boxed future, so that [`EdgeHandler`] stays object safe without async-trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which MQTT the device speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5 (protocol level 5).
    V5,
}

/// Delivery guarantee of a message. QoS 2 is not offered (as in Azure IoT Hub):
/// a device that publishes with QoS 2 is disconnected, subscriptions are granted
/// at most QoS 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Qos {
    AtMostOnce,
    AtLeastOnce,
}

/// The identity of a device, scoped by tenant. One connection per key: a
/// second authenticated connection for the same key takes over the first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceKey {
    pub tenant: String,
    pub device_id: String,
}

impl DeviceKey {
    pub fn new(tenant: impl Into<String>, device_id: impl Into<String>) -> Self {
        Self {
            tenant: tenant.into(),
            device_id: device_id.into(),
        }
    }
}

impl std::fmt::Display for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.tenant, self.device_id)
    }
}

/// What a CONNECT says about the device, handed to [`EdgeHandler::authenticate`].
#[derive(Debug, Clone)]
pub struct ConnectInfo {
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub protocol: ProtocolVersion,
    pub keep_alive_secs: u16,
    pub peer_addr: SocketAddr,
    /// DER of the client's end-entity certificate, when the listener has TLS
    /// with client authentication and the device presented one.
    pub client_certificate: Option<Vec<u8>>,
}

/// An authenticated device, as the application decided at CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSession {
    pub key: DeviceKey,
    /// The twin this device is bound to.
    pub twin_id: String,
    pub client_id: String,
    pub protocol: ProtocolVersion,
}

/// Why a CONNECT is refused. Mapped to 3.1.1 return codes and 5 reason codes
/// by [`crate::codec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectRefusal {
    /// Unknown device or wrong key/token (3.1.1: 4, v5: 0x86).
    #[error("bad user name or password")]
    BadCredentials,
    /// Known device that may not connect, e.g. disabled (3.1.1: 5, v5: 0x87).
    #[error("not authorized")]
    NotAuthorized,
    /// Client id not acceptable (3.1.1: 2, v5: 0x85).
    #[error("client identifier not valid")]
    BadClientId,
    /// The server cannot take the device now (3.1.1: 3, v5: 0x88).
    #[error("server unavailable")]
    ServerUnavailable,
}

/// Why a PUBLISH is refused. In MQTT 5 the code goes back in the PUBACK
/// (QoS 1). MQTT 3.1.1 has no negative PUBACK, so the server applies the rule in
/// [`PublishReason::v311_action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublishReason {
    /// 0x80: not processed, cause unknown.
    UnspecifiedError,
    /// 0x83: not processed, the application refused it for its own reason.
    ImplementationSpecificError,
    /// 0x87: the device may not publish there (e.g. another device's topic).
    NotAuthorized,
    /// 0x90: the topic is not one this server understands.
    TopicNameInvalid,
    /// 0x97: overload / quota; try again later.
    QuotaExceeded,
    /// 0x99: the payload is invalid (e.g. it violates the twin's model).
    PayloadFormatInvalid,
}

/// What a 3.1.1 connection does with a refused QoS 1 publish, since 3.1.1 has
/// no negative PUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V311RefusalAction {
    /// PUBACK anyway: the message was consumed and rejected (logged, counted);
    /// redelivering it could only be rejected again.
    AckAndDrop,
    /// Close the connection without PUBACK: either the device misbehaves, or
    /// the message was not processed and must be redelivered after reconnect
    /// (at-least-once is kept because it was never acknowledged).
    Disconnect,
}

impl PublishReason {
    /// The rule for MQTT 3.1.1 (and for nothing else: MQTT 5 always answers
    /// with the reason code, and QoS 0 refusals are logged and dropped in both).
    pub fn v311_action(self) -> V311RefusalAction {
        match self {
            PublishReason::PayloadFormatInvalid => V311RefusalAction::AckAndDrop,
            PublishReason::NotAuthorized
            | PublishReason::TopicNameInvalid
            | PublishReason::QuotaExceeded
            | PublishReason::UnspecifiedError
            | PublishReason::ImplementationSpecificError => V311RefusalAction::Disconnect,
        }
    }
}

/// A refused publish, with a human-readable reason (sent as the MQTT 5
/// reason string, and logged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("publish refused ({reason_code:?}): {message}")]
pub struct PublishRefusal {
    pub reason_code: PublishReason,
    pub message: String,
}

impl PublishRefusal {
    pub fn new(reason_code: PublishReason, message: impl Into<String>) -> Self {
        Self {
            reason_code,
            message: message.into(),
        }
    }
}

impl PublishRefusal {
    /// Whether the server closes the connection after this refusal instead of
    /// answering it: only a QoS 1 publish over MQTT 3.1.1 whose reason has no
    /// acknowledge-and-drop rule (MQTT 5 answers every refusal in its PUBACK; QoS 0
    /// refusals are dropped).
    pub fn ends_connection(&self, protocol: ProtocolVersion, qos: Qos) -> bool {
        protocol == ProtocolVersion::V311
            && qos == Qos::AtLeastOnce
            && self.reason_code.v311_action() == V311RefusalAction::Disconnect
    }
}

/// One PUBLISH as handed to [`EdgeHandler::publish_batch`].
#[derive(Debug, Clone)]
pub struct InboundPublish {
    pub topic: String,
    pub payload: Bytes,
    pub qos: Qos,
}

/// Why a subscription filter is refused (3.1.1: 0x80, v5: the code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeRefusal {
    #[error("not authorized")]
    NotAuthorized,
    #[error("topic filter invalid")]
    TopicFilterInvalid,
}

/// Why the server ended a connection; given to [`EdgeHandler::disconnected`]
/// and, for the server-initiated ones, sent as the MQTT 5 DISCONNECT reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// The device sent DISCONNECT.
    ClientDisconnected,
    /// The socket closed or failed without DISCONNECT.
    ConnectionLost,
    /// No packet within 1.5 × keep-alive (v5: 0x8D).
    KeepAliveTimeout,
    /// Another connection authenticated as the same device (v5: 0x8E).
    SessionTakenOver,
    /// The application disconnected the device, e.g. it was disabled (v5: 0x98).
    AdministrativeAction,
    /// The device is no longer allowed, or misbehaved (v5: 0x87).
    NotAuthorized,
    /// A packet larger than the configured maximum (v5: 0x95).
    PacketTooLarge,
    /// Bytes that are not MQTT (v5: 0x81).
    MalformedPacket,
    /// MQTT, but not allowed here, e.g. a second CONNECT or QoS 2 (v5: 0x82).
    ProtocolError,
    /// A refused publish that 3.1.1 can only answer by closing (see
    /// [`PublishReason::v311_action`]).
    PublishRefused,
    /// The server is stopping (v5: 0x8B).
    ServerShuttingDown,
}

/// What the application provides to the MQTT server.
pub trait EdgeHandler: Send + Sync + 'static {
    /// Decide whether this CONNECT is a known, enabled device with valid credentials.
    fn authenticate<'a>(
        &'a self,
        info: &'a ConnectInfo,
    ) -> BoxFuture<'a, Result<DeviceSession, ConnectRefusal>>;

    /// Accept a publish from the device. Return only when the change is as
    /// durable as the PUBACK should promise.
    fn publish<'a>(
        &'a self,
        session: &'a DeviceSession,
        topic: &'a str,
        payload: Bytes,
        qos: Qos,
    ) -> BoxFuture<'a, Result<(), PublishRefusal>>;

    /// Accept several publishes of one device, received back to back, in order.
    ///
    /// The server hands over the PUBLISH packets it has already read from the device
    /// (at most [`crate::MqttServerConfig::max_publish_batch`]), so that an
    /// implementation can make them durable together, and writes their PUBACKs in one
    /// go, in order, once this returns. Each message must be treated as if it had
    /// come alone, in order: the result at index *i* is the answer to message *i*.
    ///
    /// The returned vector may be shorter than `messages` only after a refusal that
    /// ends the connection ([`PublishRefusal::ends_connection`]): later messages of
    /// the batch must then not be processed (the device will send them again).
    ///
    /// The default processes the messages one at a time with [`EdgeHandler::publish`].
    fn publish_batch<'a>(
        &'a self,
        session: &'a DeviceSession,
        messages: Vec<InboundPublish>,
    ) -> BoxFuture<'a, Vec<Result<(), PublishRefusal>>> {
        Box::pin(publish_one_by_one(self, session, messages))
    }

    /// May this device subscribe to this filter?
    fn authorize_subscribe<'a>(
        &'a self,
        session: &'a DeviceSession,
        filter: &'a str,
    ) -> BoxFuture<'a, Result<(), SubscribeRefusal>>;

    /// The device is connected (CONNACK sent). Notification only.
    fn connected(&self, _session: &DeviceSession) {}

    /// The device's connection ended. Notification only.
    fn disconnected(&self, _session: &DeviceSession, _reason: DisconnectReason) {}
}

/// [`EdgeHandler::publish_batch`] done with [`EdgeHandler::publish`], one message
/// after another, stopping after a refusal that ends the connection (the default).
pub async fn publish_one_by_one<H: EdgeHandler + ?Sized>(
    handler: &H,
    session: &DeviceSession,
    messages: Vec<InboundPublish>,
) -> Vec<Result<(), PublishRefusal>> {
    let mut results = Vec::with_capacity(messages.len());
    for m in messages {
        let r = handler.publish(session, &m.topic, m.payload, m.qos).await;
        let stop = matches!(&r, Err(refusal) if refusal.ends_connection(session.protocol, m.qos));
        results.push(r);
        if stop {
            break;
        }
    }
    results
}
