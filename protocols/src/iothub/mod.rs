//! IoT Hub semantics, whichever way a device comes in: doppel's own MQTT server (the
//! embedded broker) or an external broker a tenant is attached to. Devices written
//! for Azure IoT Hub / IoT Plug and Play work against doppel unchanged.
//!
//! ```text
//!  device ──MQTT──▶ MqttServer ──▶ IotHubEdge ─(SAS / X.509 auth, parse_device_topic)─┐
//!                        ▲                                                           ├─▶ inbound (payload → Command) ──▶ CommandSink::submit ──▶ PUBACK after durable
//!  device ──MQTT──▶ external broker ──▶ external_broker ─(parse_broker_topic)────────┘
//!                        ▲
//!  ConnectionRegistry ◀──┴── BrokerLink ◀── desired::follow_changes ◀── CommandSink::changes (committed)
//! ```
//!
//! # Modules
//! - [`topics`]: IoT Hub's topics and user names, and those of devices behind an
//!   external broker (parse and format; pure).
//! - [`inbound`]: the one mapping from a device message to a `doppel_twins::Command`,
//!   and from a refused command to the refusal the device gets.
//! - [`device_twin`]: the IoT Hub device-twin document and desired patches of a twin.
//! - [`desired`]: the one desired-state pusher, over a [`desired::DesiredLink`] per transport.
//! - [`device_edge`]: the embedded broker's [`crate::EdgeHandler`] for IoT Hub devices.
//! - [`methods`]: direct methods to devices on the embedded broker.
//! - [`external_broker`]: the client that attaches a tenant to an external broker.
//!
//! Contract: the same message means the same change on both transports, and is
//! refused with the same reason; desired state reaches devices on both by the same
//! rules. Every change goes to a [`crate::CommandSink`]; nothing here touches storage.

pub mod desired;
pub mod device_edge;
pub mod device_twin;
pub mod external_broker;
pub mod inbound;
pub mod methods;
pub mod topics;

pub use topics::*;
