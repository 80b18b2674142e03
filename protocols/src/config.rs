//! Configuration of the MQTT server: one struct, plain numbers with units in
//! their names, defaults that suit a single node, validated once at start-up.
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
#[error("invalid MQTT server config: {key}: {reason}")]
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

#[cfg(test)]
mod tests {
    use super::*;

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
