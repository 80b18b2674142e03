//! The MQTT decoder (`doppel_protocols::codec::decode`) on arbitrary bytes, for 3.1.1,
//! 5, and "before CONNECT" (the first packet picks the protocol).
//!
//! Input: byte 0 picks the protocol (`% 3`: none yet, 3.1.1, 5), byte 1 where the
//! stream is cut in two (`% (len + 1)`), the rest is the byte stream a device sends.
//!
//! Checked:
//! - no input panics the decoder;
//! - framing does not depend on how the bytes arrive: the stream fed in two pieces
//!   decodes to the same packets and the same error as the stream fed whole;
//! - a decoded PUBLISH of QoS 0 or 1 that `encode_publish` can encode decodes back to
//!   the same topic, payload, QoS and packet id (the only packet both directions share).
#![no_main]

use bytes::BytesMut;
use doppel_protocols::codec::{decode, encode_publish, DecodeError, Incoming};
use doppel_protocols::{ProtocolVersion, Qos};
use libfuzzer_sys::fuzz_target;

/// Small, so that "too large" is reachable too.
const MAX: usize = 4096;

/// Decodes `pieces` as they arrive, as a connection does: every complete packet, until
/// one is malformed. A CONNECT fixes the protocol of the packets after it.
fn decode_stream(
    pieces: &[&[u8]],
    mut protocol: Option<ProtocolVersion>,
) -> (Vec<Incoming>, Option<DecodeError>) {
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match decode(&mut buf, protocol, MAX) {
                Ok(Some(packet)) => {
                    if let Incoming::Connect(c) = &packet {
                        protocol.get_or_insert(c.protocol);
                    }
                    packets.push(packet);
                }
                Ok(None) => break,
                Err(e) => return (packets, Some(e)),
            }
        }
    }
    (packets, None)
}

fn publish_round_trips(protocol: ProtocolVersion, packet: &Incoming) {
    let Incoming::Publish(p) = packet else {
        return;
    };
    let qos = match p.qos {
        0 => Qos::AtMostOnce,
        1 => Qos::AtLeastOnce,
        _ => return,
    };
    let Ok(bytes) = encode_publish(protocol, &p.topic, p.payload.clone(), qos, p.pkid) else {
        return;
    };
    let mut buf = BytesMut::from(&bytes[..]);
    match decode(&mut buf, Some(protocol), usize::MAX) {
        Ok(Some(Incoming::Publish(q))) => {
            assert_eq!(
                (&q.topic, &q.payload, q.qos, q.pkid),
                (&p.topic, &p.payload, p.qos, p.pkid),
                "{protocol:?} PUBLISH changed in a round trip: {bytes:?}"
            );
            assert!(buf.is_empty(), "bytes left after our own PUBLISH");
        }
        other => panic!("our own {protocol:?} PUBLISH {bytes:?} decoded as {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, cut, stream @ ..] = data else {
        return;
    };
    let protocol = match mode % 3 {
        0 => None,
        1 => Some(ProtocolVersion::V311),
        _ => Some(ProtocolVersion::V5),
    };
    let whole = decode_stream(&[stream], protocol);
    let cut = *cut as usize % (stream.len() + 1);
    let split = decode_stream(&[&stream[..cut], &stream[cut..]], protocol);
    assert_eq!(whole, split, "cut at {cut}");

    let mut current = protocol;
    for packet in &whole.0 {
        if let Incoming::Connect(c) = packet {
            current.get_or_insert(c.protocol);
        }
        if let Some(p) = current {
            publish_round_trips(p, packet);
        }
    }
});
