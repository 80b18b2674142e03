//! MQTT packets on the wire: framing, decoding and encoding for 3.1.1 and 5,
//! on top of the `mqttbytes` codec that rumqttc exports.
//!
//! The server never touches rumqttc types outside this file. It sees
//! [`Incoming`] (the few packets a device may send to a server) and asks for
//! bytes of the few packets a server sends ([`encode_connack`],
//! [`encode_puback`], ...). Every mapping from doppel's refusal and reason
//! types to MQTT return / reason codes lives here.
//!
//! Framing is ours, not the codec's, so that we (a) refuse an oversized packet
//! from its fixed header, before buffering its body, (b) read the protocol
//! level of a CONNECT before choosing the 3.1.1 or 5 decoder, and (c) accept a
//! zero-length MQTT 5 DISCONNECT (reason 0 implied, which rumqttc 0.25's v5
//! reader rejects as "payload required").
//!
//! Contract: no input makes these functions panic; malformed bytes come back
//! as [`DecodeError`].

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::mqttbytes::QoS as CodecQos;
use rumqttc::v5::mqttbytes::v5;
use rumqttc::v5::mqttbytes::QoS as CodecQos5;

use crate::edge::{
    ConnectRefusal, DisconnectReason, ProtocolVersion, PublishReason, Qos, SubscribeRefusal,
};

/// A packet a device may send to a server, either protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Connect(ConnectPacket),
    Publish(PublishPacket),
    PubAck {
        pkid: u16,
    },
    Subscribe {
        pkid: u16,
        filters: Vec<(String, u8)>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    PingReq,
    Disconnect,
    /// A packet valid in MQTT but not something a device sends to us
    /// (CONNACK, SUBACK, PUBREC/PUBREL/PUBCOMP of QoS 2, AUTH, ...).
    Unexpected(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectPacket {
    pub protocol: ProtocolVersion,
    pub client_id: String,
    pub keep_alive_secs: u16,
    pub clean_session: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    /// v5: the largest packet the client accepts.
    pub max_packet_size: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishPacket {
    pub topic: String,
    pub payload: Bytes,
    /// 0, 1 or 2 as sent; the server refuses 2.
    pub qos: u8,
    pub pkid: u16,
    pub retain: bool,
    /// v5 topic alias (unsupported: we advertise a topic alias maximum of 0).
    pub topic_alias: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// A CONNECT for a protocol level we do not speak (e.g. 3 = MQTT 3.1).
    #[error("unsupported protocol {name:?} level {level}")]
    UnsupportedProtocol { name: String, level: u8 },
}

/// The first byte and remaining length of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FixedHeader {
    byte1: u8,
    header_len: usize,
    remaining_len: usize,
}

impl FixedHeader {
    fn frame_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
    fn packet_type(&self) -> u8 {
        self.byte1 >> 4
    }
}

/// Parse a fixed header; `Ok(None)` if more bytes are needed.
fn fixed_header(buf: &[u8]) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    let mut remaining_len: usize = 0;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining_len |= ((b & 0x7f) as usize) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some(FixedHeader {
                byte1,
                header_len: 2 + i,
                remaining_len,
            }));
        }
    }
    Err(DecodeError::Malformed(
        "remaining length longer than 4 bytes".into(),
    ))
}

/// Take one complete packet off the front of `buf`, if there is one.
///
/// `protocol` is `None` before CONNECT (then only a CONNECT is decodable and
/// its protocol level picks the decoder).
pub fn decode(
    buf: &mut BytesMut,
    protocol: Option<ProtocolVersion>,
    max_packet_size: usize,
) -> Result<Option<Incoming>, DecodeError> {
    let Some(header) = fixed_header(buf)? else {
        return Ok(None);
    };
    if header.frame_len() > max_packet_size {
        return Err(DecodeError::TooLarge {
            size: header.frame_len(),
            max: max_packet_size,
        });
    }
    if buf.len() < header.frame_len() {
        return Ok(None);
    }
    let mut frame = buf.split_to(header.frame_len());
    let protocol = match protocol {
        Some(p) => p,
        None => connect_protocol(&frame, &header)?,
    };
    // A zero-length v5 DISCONNECT means "normal disconnection".
    if header.packet_type() == 14 && header.remaining_len == 0 {
        return Ok(Some(Incoming::Disconnect));
    }
    let decoded = match protocol {
        ProtocolVersion::V311 => v4::Packet::read(&mut frame, usize::MAX)
            .map(from_v4)
            .map_err(|e| DecodeError::Malformed(e.to_string()))?,
        ProtocolVersion::V5 => v5::Packet::read(&mut frame, None)
            .map(from_v5)
            .map_err(|e| DecodeError::Malformed(e.to_string()))?,
    };
    Ok(Some(decoded))
}

/// The protocol of the first packet, which must be a CONNECT.
fn connect_protocol(frame: &[u8], header: &FixedHeader) -> Result<ProtocolVersion, DecodeError> {
    if header.packet_type() != 1 {
        return Err(DecodeError::Malformed(format!(
            "first packet has type {}, expected CONNECT",
            header.packet_type()
        )));
    }
    let body = frame.get(header.header_len..).unwrap_or_default();
    let name_len = match body.get(0..2) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]) as usize,
        None => return Err(DecodeError::Malformed("CONNECT too short".into())),
    };
    let name = body
        .get(2..2 + name_len)
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .ok_or_else(|| DecodeError::Malformed("CONNECT too short".into()))?;
    let level = *body
        .get(2 + name_len)
        .ok_or_else(|| DecodeError::Malformed("CONNECT too short".into()))?;
    match (name.as_str(), level) {
        ("MQTT", 4) => Ok(ProtocolVersion::V311),
        ("MQTT", 5) => Ok(ProtocolVersion::V5),
        _ => Err(DecodeError::UnsupportedProtocol { name, level }),
    }
}

fn qos_u8(q: CodecQos) -> u8 {
    q as u8
}

fn qos5_u8(q: CodecQos5) -> u8 {
    q as u8
}

fn from_v4(packet: v4::Packet) -> Incoming {
    match packet {
        v4::Packet::Connect(c) => {
            let (username, password) = match c.login {
                Some(l) => (Some(l.username), Some(l.password)),
                None => (None, None),
            };
            Incoming::Connect(ConnectPacket {
                protocol: ProtocolVersion::V311,
                client_id: c.client_id,
                keep_alive_secs: c.keep_alive,
                clean_session: c.clean_session,
                username: username.filter(|u| !u.is_empty()),
                password: password.filter(|p| !p.is_empty()),
                max_packet_size: None,
            })
        }
        v4::Packet::Publish(p) => Incoming::Publish(PublishPacket {
            topic: p.topic,
            payload: p.payload,
            qos: qos_u8(p.qos),
            pkid: p.pkid,
            retain: p.retain,
            topic_alias: None,
        }),
        v4::Packet::PubAck(a) => Incoming::PubAck { pkid: a.pkid },
        v4::Packet::Subscribe(s) => Incoming::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| (f.path, qos_u8(f.qos)))
                .collect(),
        },
        v4::Packet::Unsubscribe(u) => Incoming::Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
        },
        v4::Packet::PingReq => Incoming::PingReq,
        v4::Packet::Disconnect => Incoming::Disconnect,
        v4::Packet::ConnAck(_) => Incoming::Unexpected("CONNACK"),
        v4::Packet::PubRec(_) => Incoming::Unexpected("PUBREC"),
        v4::Packet::PubRel(_) => Incoming::Unexpected("PUBREL"),
        v4::Packet::PubComp(_) => Incoming::Unexpected("PUBCOMP"),
        v4::Packet::SubAck(_) => Incoming::Unexpected("SUBACK"),
        v4::Packet::UnsubAck(_) => Incoming::Unexpected("UNSUBACK"),
        v4::Packet::PingResp => Incoming::Unexpected("PINGRESP"),
    }
}

fn from_v5(packet: v5::Packet) -> Incoming {
    match packet {
        v5::Packet::Connect(c, _will, login) => {
            let (username, password) = match login {
                Some(l) => (Some(l.username), Some(l.password)),
                None => (None, None),
            };
            Incoming::Connect(ConnectPacket {
                protocol: ProtocolVersion::V5,
                client_id: c.client_id,
                keep_alive_secs: c.keep_alive,
                clean_session: c.clean_start,
                username: username.filter(|u| !u.is_empty()),
                password: password.filter(|p| !p.is_empty()),
                max_packet_size: c.properties.and_then(|p| p.max_packet_size),
            })
        }
        v5::Packet::Publish(p) => Incoming::Publish(PublishPacket {
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            payload: p.payload,
            qos: qos5_u8(p.qos),
            pkid: p.pkid,
            retain: p.retain,
            topic_alias: p.properties.and_then(|p| p.topic_alias),
        }),
        v5::Packet::PubAck(a) => Incoming::PubAck { pkid: a.pkid },
        v5::Packet::Subscribe(s) => Incoming::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| (f.path, qos5_u8(f.qos)))
                .collect(),
        },
        v5::Packet::Unsubscribe(u) => Incoming::Unsubscribe {
            pkid: u.pkid,
            filters: u.filters,
        },
        v5::Packet::PingReq(_) => Incoming::PingReq,
        v5::Packet::Disconnect(_) => Incoming::Disconnect,
        v5::Packet::Auth(_) => Incoming::Unexpected("AUTH"),
        v5::Packet::ConnAck(_) => Incoming::Unexpected("CONNACK"),
        v5::Packet::PubRec(_) => Incoming::Unexpected("PUBREC"),
        v5::Packet::PubRel(_) => Incoming::Unexpected("PUBREL"),
        v5::Packet::PubComp(_) => Incoming::Unexpected("PUBCOMP"),
        v5::Packet::SubAck(_) => Incoming::Unexpected("SUBACK"),
        v5::Packet::UnsubAck(_) => Incoming::Unexpected("UNSUBACK"),
        v5::Packet::PingResp(_) => Incoming::Unexpected("PINGRESP"),
    }
}

// ---- encoding ---------------------------------------------------------------
//
// Encoding our own well-formed packets cannot fail except for sizes beyond
// MQTT's 256 MiB limit, which the server never builds (payloads are bounded by
// the configured maximum); errors are still returned, not unwrapped.

#[derive(Debug, thiserror::Error)]
#[error("cannot encode {packet}: {detail}")]
pub struct EncodeError {
    packet: &'static str,
    detail: String,
}

fn enc_err(packet: &'static str) -> impl Fn(String) -> EncodeError {
    move |detail| EncodeError { packet, detail }
}

fn write_v4(packet: v4::Packet, name: &'static str) -> Result<Bytes, EncodeError> {
    let mut buf = BytesMut::new();
    packet
        .write(&mut buf, usize::MAX)
        .map_err(|e| enc_err(name)(e.to_string()))?;
    Ok(buf.freeze())
}

fn write_v5(packet: v5::Packet, name: &'static str) -> Result<Bytes, EncodeError> {
    let mut buf = BytesMut::new();
    packet
        .write(&mut buf, None)
        .map_err(|e| enc_err(name)(e.to_string()))?;
    Ok(buf.freeze())
}

/// 3.1.1 CONNACK return code for a refusal.
pub fn v311_connect_code(refusal: ConnectRefusal) -> v4::ConnectReturnCode {
    match refusal {
        ConnectRefusal::BadCredentials => v4::ConnectReturnCode::BadUserNamePassword,
        ConnectRefusal::NotAuthorized => v4::ConnectReturnCode::NotAuthorized,
        ConnectRefusal::BadClientId => v4::ConnectReturnCode::BadClientId,
        ConnectRefusal::ServerUnavailable => v4::ConnectReturnCode::ServiceUnavailable,
    }
}

/// MQTT 5 CONNACK reason code for a refusal.
pub fn v5_connect_code(refusal: ConnectRefusal) -> v5::ConnectReturnCode {
    match refusal {
        ConnectRefusal::BadCredentials => v5::ConnectReturnCode::BadUserNamePassword,
        ConnectRefusal::NotAuthorized => v5::ConnectReturnCode::NotAuthorized,
        ConnectRefusal::BadClientId => v5::ConnectReturnCode::ClientIdentifierNotValid,
        ConnectRefusal::ServerUnavailable => v5::ConnectReturnCode::ServerUnavailable,
    }
}

/// CONNACK: `Ok(())` accepts, `Err(refusal)` refuses.
pub fn encode_connack(
    protocol: ProtocolVersion,
    result: Result<(), ConnectRefusal>,
    max_packet_size: usize,
) -> Result<Bytes, EncodeError> {
    match protocol {
        ProtocolVersion::V311 => {
            let code = match result {
                Ok(()) => v4::ConnectReturnCode::Success,
                Err(r) => v311_connect_code(r),
            };
            write_v4(
                v4::Packet::ConnAck(v4::ConnAck::new(code, false)),
                "CONNACK",
            )
        }
        ProtocolVersion::V5 => {
            let (code, properties) = match result {
                Ok(()) => (
                    v5::ConnectReturnCode::Success,
                    Some(v5::ConnAckProperties {
                        session_expiry_interval: None,
                        receive_max: None,
                        max_qos: Some(1),
                        retain_available: Some(0),
                        max_packet_size: Some(u32::try_from(max_packet_size).unwrap_or(u32::MAX)),
                        assigned_client_identifier: None,
                        topic_alias_max: None,
                        reason_string: None,
                        user_properties: Vec::new(),
                        wildcard_subscription_available: None,
                        subscription_identifiers_available: Some(0),
                        shared_subscription_available: Some(0),
                        server_keep_alive: None,
                        response_information: None,
                        server_reference: None,
                        authentication_method: None,
                        authentication_data: None,
                    }),
                ),
                Err(r) => (v5_connect_code(r), None),
            };
            write_v5(
                v5::Packet::ConnAck(v5::ConnAck {
                    session_present: false,
                    code,
                    properties,
                }),
                "CONNACK",
            )
        }
    }
}

/// The CONNACK for a CONNECT of a protocol level we do not speak: the 3.1.1
/// form with return code 1, which MQTT 3.1 and 3.1.1 clients both understand.
pub fn encode_unsupported_protocol_connack() -> Result<Bytes, EncodeError> {
    write_v4(
        v4::Packet::ConnAck(v4::ConnAck::new(
            v4::ConnectReturnCode::RefusedProtocolVersion,
            false,
        )),
        "CONNACK",
    )
}

pub fn v5_publish_reason(reason: PublishReason) -> v5::PubAckReason {
    match reason {
        PublishReason::UnspecifiedError => v5::PubAckReason::UnspecifiedError,
        PublishReason::ImplementationSpecificError => v5::PubAckReason::ImplementationSpecificError,
        PublishReason::NotAuthorized => v5::PubAckReason::NotAuthorized,
        PublishReason::TopicNameInvalid => v5::PubAckReason::TopicNameInvalid,
        PublishReason::QuotaExceeded => v5::PubAckReason::QuotaExceeded,
        PublishReason::PayloadFormatInvalid => v5::PubAckReason::PayloadFormatInvalid,
    }
}

/// PUBACK. `refusal` is only expressible in MQTT 5; for 3.1.1 it is ignored
/// (the caller applies the 3.1.1 rule before deciding to ack).
pub fn encode_puback(
    protocol: ProtocolVersion,
    pkid: u16,
    refusal: Option<(PublishReason, &str)>,
) -> Result<Bytes, EncodeError> {
    match protocol {
        ProtocolVersion::V311 => write_v4(v4::Packet::PubAck(v4::PubAck::new(pkid)), "PUBACK"),
        ProtocolVersion::V5 => {
            let (reason, properties) = match refusal {
                None => (v5::PubAckReason::Success, None),
                Some((r, message)) => (
                    v5_publish_reason(r),
                    Some(v5::PubAckProperties {
                        reason_string: Some(message.to_string()),
                        user_properties: Vec::new(),
                    }),
                ),
            };
            write_v5(
                v5::Packet::PubAck(v5::PubAck {
                    pkid,
                    reason,
                    properties,
                }),
                "PUBACK",
            )
        }
    }
}

/// SUBACK with one entry per filter: `Ok(granted qos)` or a refusal.
pub fn encode_suback(
    protocol: ProtocolVersion,
    pkid: u16,
    results: &[Result<Qos, SubscribeRefusal>],
) -> Result<Bytes, EncodeError> {
    match protocol {
        ProtocolVersion::V311 => {
            let codes = results
                .iter()
                .map(|r| match r {
                    Ok(q) => v4::SubscribeReasonCode::Success(codec_qos(*q)),
                    Err(_) => v4::SubscribeReasonCode::Failure,
                })
                .collect();
            write_v4(v4::Packet::SubAck(v4::SubAck::new(pkid, codes)), "SUBACK")
        }
        ProtocolVersion::V5 => {
            let return_codes = results
                .iter()
                .map(|r| match r {
                    Ok(q) => v5::SubscribeReasonCode::Success(codec_qos5(*q)),
                    Err(SubscribeRefusal::NotAuthorized) => v5::SubscribeReasonCode::NotAuthorized,
                    Err(SubscribeRefusal::TopicFilterInvalid) => {
                        v5::SubscribeReasonCode::TopicFilterInvalid
                    }
                })
                .collect();
            write_v5(
                v5::Packet::SubAck(v5::SubAck {
                    pkid,
                    return_codes,
                    properties: None,
                }),
                "SUBACK",
            )
        }
    }
}

pub fn encode_unsuback(
    protocol: ProtocolVersion,
    pkid: u16,
    count: usize,
) -> Result<Bytes, EncodeError> {
    match protocol {
        ProtocolVersion::V311 => {
            write_v4(v4::Packet::UnsubAck(v4::UnsubAck::new(pkid)), "UNSUBACK")
        }
        ProtocolVersion::V5 => write_v5(
            v5::Packet::UnsubAck(v5::UnsubAck {
                pkid,
                reasons: vec![v5::UnsubAckReason::Success; count],
                properties: None,
            }),
            "UNSUBACK",
        ),
    }
}

pub fn encode_pingresp(protocol: ProtocolVersion) -> Result<Bytes, EncodeError> {
    match protocol {
        ProtocolVersion::V311 => write_v4(v4::Packet::PingResp, "PINGRESP"),
        ProtocolVersion::V5 => write_v5(v5::Packet::PingResp(v5::PingResp), "PINGRESP"),
    }
}

/// A server-to-device PUBLISH. `pkid` must be non-zero for QoS 1.
pub fn encode_publish(
    protocol: ProtocolVersion,
    topic: &str,
    payload: Bytes,
    qos: Qos,
    pkid: u16,
) -> Result<Bytes, EncodeError> {
    match protocol {
        ProtocolVersion::V311 => {
            let mut p = v4::Publish::new(topic, codec_qos(qos), Vec::new());
            p.payload = payload;
            p.pkid = pkid;
            write_v4(v4::Packet::Publish(p), "PUBLISH")
        }
        ProtocolVersion::V5 => {
            let mut p = v5::Publish::new(topic, codec_qos5(qos), payload, None);
            p.pkid = pkid;
            write_v5(v5::Packet::Publish(p), "PUBLISH")
        }
    }
}

pub fn v5_disconnect_code(reason: DisconnectReason) -> v5::DisconnectReasonCode {
    use v5::DisconnectReasonCode as C;
    match reason {
        DisconnectReason::ClientDisconnected | DisconnectReason::ConnectionLost => {
            C::NormalDisconnection
        }
        DisconnectReason::KeepAliveTimeout => C::KeepAliveTimeout,
        DisconnectReason::SessionTakenOver => C::SessionTakenOver,
        DisconnectReason::AdministrativeAction => C::AdministrativeAction,
        DisconnectReason::NotAuthorized | DisconnectReason::PublishRefused => C::NotAuthorized,
        DisconnectReason::PacketTooLarge => C::PacketTooLarge,
        DisconnectReason::MalformedPacket => C::MalformedPacket,
        DisconnectReason::ProtocolError => C::ProtocolError,
        DisconnectReason::ServerShuttingDown => C::ServerShuttingDown,
    }
}

/// A server-initiated DISCONNECT. MQTT 3.1.1 has none (the server just closes),
/// so this is `None` for 3.1.1.
pub fn encode_disconnect(
    protocol: ProtocolVersion,
    reason: DisconnectReason,
) -> Result<Option<Bytes>, EncodeError> {
    match protocol {
        ProtocolVersion::V311 => Ok(None),
        ProtocolVersion::V5 => write_v5(
            v5::Packet::Disconnect(v5::Disconnect::new(v5_disconnect_code(reason))),
            "DISCONNECT",
        )
        .map(Some),
    }
}

fn codec_qos(q: Qos) -> CodecQos {
    match q {
        Qos::AtMostOnce => CodecQos::AtMostOnce,
        Qos::AtLeastOnce => CodecQos::AtLeastOnce,
    }
}

fn codec_qos5(q: Qos) -> CodecQos5 {
    match q {
        Qos::AtMostOnce => CodecQos5::AtMostOnce,
        Qos::AtLeastOnce => CodecQos5::AtLeastOnce,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;
    use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, RngSeed};

    const MAX: usize = 1 << 20;

    fn connect_v311(client: &str, user: &str, pass: &str) -> BytesMut {
        let mut c = v4::Connect::new(client);
        c.set_login(user, pass);
        let mut buf = BytesMut::new();
        c.write(&mut buf).expect("encode");
        buf
    }

    #[test]
    fn decodes_a_311_connect_and_picks_the_protocol_from_it() {
        let mut buf = connect_v311("dev-1", "hub/dev-1", "secret");
        let got = decode(&mut buf, None, MAX)
            .expect("decode")
            .expect("complete");
        match got {
            Incoming::Connect(c) => {
                assert_eq!(c.protocol, ProtocolVersion::V311);
                assert_eq!(c.client_id, "dev-1");
                assert_eq!(c.username.as_deref(), Some("hub/dev-1"));
                assert_eq!(c.password.as_deref(), Some("secret"));
            }
            other => panic!("expected CONNECT, got {other:?}"),
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn a_partial_packet_waits_for_more_bytes() {
        let full = connect_v311("dev-1", "u", "p");
        for cut in 0..full.len() {
            let mut buf = BytesMut::from(&full[..cut]);
            assert_eq!(decode(&mut buf, None, MAX), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut, "nothing consumed");
        }
    }

    #[test]
    fn an_oversized_packet_is_refused_from_its_header() {
        // PUBLISH with a remaining length of 2 MiB, body not sent yet.
        let mut buf = BytesMut::from(&[0x30u8, 0x80, 0x80, 0x80, 0x01][..]);
        assert_eq!(
            decode(&mut buf, Some(ProtocolVersion::V311), MAX),
            Err(DecodeError::TooLarge {
                size: 5 + (1 << 21),
                max: MAX
            })
        );
    }

    #[test]
    fn mqtt_31_is_refused_as_unsupported() {
        // CONNECT "MQIsdp" level 3.
        let mut body = vec![0x00, 0x06];
        body.extend_from_slice(b"MQIsdp");
        body.extend_from_slice(&[3, 0x02, 0, 60, 0, 1, b'x']);
        let mut buf = BytesMut::from(&[0x10u8, body.len() as u8][..]);
        buf.extend_from_slice(&body);
        assert!(matches!(
            decode(&mut buf, None, MAX),
            Err(DecodeError::UnsupportedProtocol { level: 3, .. })
        ));
    }

    #[test]
    fn a_zero_length_v5_disconnect_is_a_normal_disconnect() {
        let mut buf = BytesMut::from(&[0xE0u8, 0x00][..]);
        assert_eq!(
            decode(&mut buf, Some(ProtocolVersion::V5), MAX),
            Ok(Some(Incoming::Disconnect))
        );
    }

    #[test]
    fn the_first_packet_must_be_connect() {
        let mut buf = BytesMut::from(&[0xC0u8, 0x00][..]);
        assert!(matches!(
            decode(&mut buf, None, MAX),
            Err(DecodeError::Malformed(_))
        ));
    }

    /// `cases` from the seed `DOPPEL_SEED` names (printed; a fixed one by default, so CI
    /// is deterministic; `DOPPEL_SEED=random` explores). Nothing is persisted: the seed
    /// replays a run, and a failure prints its shrunk input. XorShift, since proptest's
    /// default ChaCha is several times slower in a debug build.
    fn proptest_config(cases: u32) -> ProptestConfig {
        let seed = match std::env::var("DOPPEL_SEED").ok().as_deref() {
            Some("random") => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
            Some(s) => s.parse().expect("DOPPEL_SEED is a number or \"random\""),
            None => 0x9E37_79B9_7F4A_7C15,
        };
        println!("seed {seed} (replay with DOPPEL_SEED={seed})");
        ProptestConfig {
            rng_seed: RngSeed::Fixed(seed),
            rng_algorithm: RngAlgorithm::XorShift,
            failure_persistence: None,
            // Shrink until minimal (the default stops after 4 × cases), within a minute.
            max_shrink_iters: 100_000,
            max_shrink_time: 60_000,
            ..ProptestConfig::with_cases(cases)
        }
    }

    /// A valid 3.1.1 CONNECT with one to four bytes overwritten, so the decoders behind
    /// the framing get exercised too.
    fn mutated_connect() -> impl Strategy<Value = Vec<u8>> {
        let valid = connect_v311("dev", "u", "p").to_vec();
        prop::collection::vec((any::<Index>(), any::<u8>()), 1..=4).prop_map(move |edits| {
            let mut bytes = valid.clone();
            for (i, b) in edits {
                let i = i.index(bytes.len());
                bytes[i] = b;
            }
            bytes
        })
    }

    /// Up to 63 random bytes under a random packet type, with a remaining length (when
    /// there is a second byte) that matches the bytes sent.
    fn framed_garbage() -> impl Strategy<Value = Vec<u8>> {
        (0u8..16, prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(kind, mut bytes)| {
            let len = bytes.len();
            if let Some(first) = bytes.first_mut() {
                *first = (*first & 0x0F) | (kind << 4);
            }
            if len > 1 {
                bytes[1] = (len - 2) as u8 & 0x7F;
            }
            bytes
        })
    }

    proptest! {
        #![proptest_config(proptest_config(20_000))]

        /// Garbage must come back as errors or "need more", never as a panic.
        #[test]
        fn garbage_bytes_never_panic_the_decoder(
            bytes in prop_oneof![mutated_connect(), framed_garbage()],
        ) {
            for protocol in [None, Some(ProtocolVersion::V311), Some(ProtocolVersion::V5)] {
                let mut buf = BytesMut::from(&bytes[..]);
                // Decode until it stops producing packets.
                for _ in 0..8 {
                    match decode(&mut buf, protocol, MAX) {
                        Ok(Some(_)) => continue,
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
    }

    #[test]
    fn refusal_codes_are_the_ones_the_specs_name() {
        let mut b = BytesMut::from(
            &encode_connack(
                ProtocolVersion::V311,
                Err(ConnectRefusal::BadCredentials),
                MAX,
            )
            .expect("encode")[..],
        );
        assert_eq!(&b[..], &[0x20, 0x02, 0x00, 0x04]);
        b.clear();
        let v5 = encode_connack(ProtocolVersion::V5, Err(ConnectRefusal::NotAuthorized), MAX)
            .expect("encode");
        // 0x20, len, session-present 0, reason 0x87, properties length 0
        assert_eq!(&v5[..], &[0x20, 0x03, 0x00, 0x87, 0x00]);
        let puback = encode_puback(
            ProtocolVersion::V5,
            7,
            Some((PublishReason::NotAuthorized, "x")),
        )
        .expect("encode");
        assert_eq!(puback[0], 0x40);
        assert_eq!(&puback[2..5], &[0x00, 0x07, 0x87]);
    }
}
