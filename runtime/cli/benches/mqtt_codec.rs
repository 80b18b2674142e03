//! Decoding a device's QoS 1 telemetry PUBLISH with doppel's MQTT codec, beside its
//! floor: copying the same frame (what taking it off the socket buffer costs at least).

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion};
use doppel_protocols::codec::{decode, encode_publish, Incoming};
use doppel_protocols::edge::{ProtocolVersion, Qos};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let payload = Bytes::from_static(br#"{"temperature":21.5,"vibration":0.02}"#);
    for protocol in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let frame = encode_publish(
            protocol,
            "devices/meter-1/messages/events/",
            payload.clone(),
            Qos::AtLeastOnce,
            7,
        )
        .expect("encodes");
        let mut g = c.benchmark_group(format!("PUBLISH decode ({protocol:?})"));
        g.bench_function("doppel: codec::decode", |b| {
            b.iter(|| {
                let mut buf = BytesMut::from(black_box(&frame[..]));
                match decode(&mut buf, Some(protocol), 1 << 20) {
                    Ok(Some(Incoming::Publish(p))) => black_box(p.payload.len()),
                    other => panic!("unexpected {other:?}"),
                }
            })
        });
        g.bench_function("floor: copy the frame", |b| {
            b.iter(|| black_box(BytesMut::from(black_box(&frame[..])).len()))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
