//! Configuration of the device edge: the MQTT server ([`MqttServerConfig`]: plain
//! numbers with units in their names, defaults that suit a single node) and the
//! external brokers a tenant is attached to ([`ExternalBroker`], one
//! `[[external_brokers]]` entry of the node's config file). Each is validated once at
//! start-up; a [`ConfigError`] names the bad key.
//!
//! TLS is not here: a `rustls::ServerConfig` is built by the caller (from
//! files, with the ring provider) and handed to [`crate::MqttServer::bind`].

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttServerConfig {
    /// Where to listen, e.g. `127.0.0.1:1883` (`:0` picks a free port).
    pub bind_addr: SocketAddr,
    /// Largest packet accepted from a device (whole packet, header included).
    /// Larger ones end the connection (MQTT 5: DISCONNECT 0x95).
    pub max_packet_size_bytes: usize,
    /// Time a new connection has to complete TLS and send CONNECT.
    pub connect_timeout_ms: u64,
    /// Time allowed for writing one packet to a device before giving up on it.
    pub write_timeout_ms: u64,
    /// Outbound messages queued per device before `send` reports QueueFull.
    pub outbound_queue_len: usize,
    /// Most PUBLISH packets of one device, already read and back to back, handed to
    /// the handler together (made durable together, acknowledged in one write).
    /// 1 handles every publish alone.
    pub max_publish_batch: usize,
}

impl Default for MqttServerConfig {
    fn default() -> Self {
        Self {
            bind_addr: SocketAddr::from(([127, 0, 0, 1], 1883)),
            // Azure IoT Hub's device-to-cloud limit.
            max_packet_size_bytes: 256 * 1024,
            connect_timeout_ms: 10_000,
            write_timeout_ms: 10_000,
            outbound_queue_len: 64,
            max_publish_batch: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config: {key}: {reason}")]
pub struct ConfigError {
    pub key: &'static str,
    pub reason: String,
}

impl MqttServerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: &str| {
            Err(ConfigError {
                key,
                reason: reason.to_string(),
            })
        };
        // 2 bytes of fixed header plus a CONNECT with a short client id.
        if self.max_packet_size_bytes < 64 {
            return bad("max_packet_size_bytes", "must be at least 64");
        }
        // MQTT's own limit: a 4-byte remaining length.
        if self.max_packet_size_bytes > 268_435_460 {
            return bad(
                "max_packet_size_bytes",
                "must be at most 268435460 (MQTT's limit)",
            );
        }
        if self.connect_timeout_ms == 0 {
            return bad("connect_timeout_ms", "must be positive");
        }
        if self.write_timeout_ms == 0 {
            return bad("write_timeout_ms", "must be positive");
        }
        if self.outbound_queue_len == 0 {
            return bad("outbound_queue_len", "must be positive");
        }
        if self.max_publish_batch == 0 {
            return bad("max_publish_batch", "must be positive");
        }
        Ok(())
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
}

/// One `[[external_brokers]]` entry of the node's config file: a tenant whose devices
/// publish on an external MQTT broker (see [`crate::iothub::external_broker`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalBroker {
    /// The tenant whose devices publish on this broker.
    pub tenant: String,
    /// `host:port` of the broker.
    pub address: String,
    /// MQTT client id of this doppel node at the broker.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Shared-subscription group; nodes in one group split the devices' messages.
    #[serde(default = "default_group")]
    pub share_group: String,
}

fn default_client_id() -> String {
    "doppel".into()
}

fn default_group() -> String {
    "doppel".into()
}

impl ExternalBroker {
    /// Checks the entry; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: String| Err(ConfigError { key, reason });
        if let Err(e) = doppel_twins::ids::check_tenant(&self.tenant) {
            return bad("external_brokers.tenant", format!("'{}' {e}", self.tenant));
        }
        if self.host_port().is_none() {
            return bad(
                "external_brokers.address",
                format!("'{}' is not host:port", self.address),
            );
        }
        if self.share_group.is_empty() || self.share_group.contains(['/', '+', '#']) {
            return bad(
                "external_brokers.share_group",
                "must be a plain name".to_string(),
            );
        }
        Ok(())
    }

    /// The broker's host and port, when `address` is `host:port`.
    pub fn host_port(&self) -> Option<(&str, u16)> {
        let (host, port) = self.address.rsplit_once(':')?;
        let port = port.parse::<u16>().ok()?;
        (!host.is_empty()).then_some((host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_broker_entries_are_checked_by_field() {
        let ok = ExternalBroker {
            tenant: "default".into(),
            address: "127.0.0.1:1883".into(),
            client_id: "doppel".into(),
            username: None,
            password: None,
            share_group: "doppel".into(),
        };
        assert!(ok.validate().is_ok());
        assert_eq!(ok.host_port(), Some(("127.0.0.1", 1883)));
        for (bad, key) in [
            (
                ExternalBroker {
                    address: "nowhere".into(),
                    ..ok.clone()
                },
                "external_brokers.address",
            ),
            (
                ExternalBroker {
                    tenant: "Bad Tenant".into(),
                    ..ok.clone()
                },
                "external_brokers.tenant",
            ),
            (
                ExternalBroker {
                    share_group: "a/b".into(),
                    ..ok.clone()
                },
                "external_brokers.share_group",
            ),
        ] {
            assert_eq!(bad.validate().unwrap_err().key, key);
        }
    }

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        MqttServerConfig::default().validate().expect("defaults");
        let err = MqttServerConfig {
            outbound_queue_len: 0,
            ..Default::default()
        }
        .validate()
        .expect_err("zero queue");
        assert_eq!(err.key, "outbound_queue_len");
    }
}
