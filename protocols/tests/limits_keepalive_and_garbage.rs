//! What a misbehaving peer meets: an oversized packet ends its connection
//! (MQTT 5: DISCONNECT 0x95), silence past 1.5 × keep-alive ends it, and
//! garbage bytes (proptest-generated; a failure prints the shrunk bytes) end it
//! without harming the server.

mod common;

use std::time::{Duration, Instant};

use common::*;
use doppel_protocols::MqttServerConfig;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

fn small() -> MqttServerConfig {
    MqttServerConfig {
        max_packet_size_bytes: 1024,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_payload_is_rejected() {
    let (server, handler) = start_with(small()).await;
    let port = server.local_addr().port();
    let topic = "devices/dev-1/messages/events/";
    let big = "x".repeat(2000);

    let (ok, out) = mosquitto_pub(port, "mqttv311", "dev-1", &token("dev-1"), topic, &big).await;
    assert!(!ok, "mosquitto_pub 3.1.1 must not report success: {out}");

    let mut raw = RawClient::connect(port).await;
    raw.send(&connect_packet(
        5,
        "dev-1",
        &username("dev-1"),
        &token("dev-1"),
        30,
    ))
    .await;
    let connack = raw
        .read_packet(Duration::from_secs(5))
        .await
        .expect("CONNACK");
    assert_eq!(connack[3], 0x00, "accepted: {connack:?}");
    raw.send(&publish_packet(5, topic, 1, big.as_bytes())).await;
    assert_eq!(
        raw.read_packet(Duration::from_secs(5)).await,
        Some(vec![0xE0, 0x01, 0x95]),
        "DISCONNECT packet too large"
    );
    assert_eq!(
        raw.read_packet(Duration::from_secs(5)).await,
        None,
        "closed"
    );

    // Within the limit is fine.
    let (ok, out) = mosquitto_pub(port, "mqttv311", "dev-1", &token("dev-1"), topic, "small").await;
    assert!(ok, "{out}");
    assert_eq!(handler.received().len(), 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_is_dropped_after_one_and_a_half_keep_alives() {
    let (server, handler) = start().await;
    let port = server.local_addr().port();
    for level in [4u8, 5] {
        let mut raw = RawClient::connect(port).await;
        raw.send(&connect_packet(
            level,
            "dev-1",
            &username("dev-1"),
            &token("dev-1"),
            1,
        ))
        .await;
        let connack = raw
            .read_packet(Duration::from_secs(5))
            .await
            .expect("CONNACK");
        assert_eq!(connack[3], 0x00, "accepted: {connack:?}");
        let start = Instant::now();
        let next = raw.read_packet(Duration::from_secs(5)).await;
        let after = start.elapsed();
        if level == 5 {
            assert_eq!(
                next,
                Some(vec![0xE0, 0x01, 0x8D]),
                "DISCONNECT keep-alive timeout"
            );
            assert_eq!(raw.read_packet(Duration::from_secs(5)).await, None);
        } else {
            assert_eq!(next, None, "3.1.1: closed");
        }
        assert!(
            after >= Duration::from_millis(1400) && after < Duration::from_millis(2500),
            "level {level}: closed after {after:?}, expected 1.5 s"
        );
    }
    let events = handler.events.lock().expect("lock").clone();
    assert_eq!(
        events
            .iter()
            .filter(|(_, e)| e == "KeepAliveTimeout")
            .count(),
        2,
        "{events:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_close_the_connection_and_the_server_serves_on() {
    // Garbage that looks like the start of a long CONNECT waits for the connect timeout.
    let (server, handler) = start_with(MqttServerConfig {
        connect_timeout_ms: 1000,
        ..Default::default()
    })
    .await;
    let port = server.local_addr().port();
    // 64 to 368 random bytes; half of them start like a CONNECT.
    let garbage = (any::<bool>(), prop::collection::vec(any::<u8>(), 64..=368)).prop_map(
        |(connect_like, mut bytes)| {
            if connect_like {
                bytes[0] = 0x10;
            }
            bytes
        },
    );
    // Proptest's runner is synchronous: each case blocks this worker on its own I/O.
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        TestRunner::new(proptest_config(20, 0x2545_F491_4F6C_DD1D)).run(&garbage, |bytes| {
            rt.block_on(async {
                let mut raw = RawClient::connect(port).await;
                raw.send(&bytes).await;
                // Whatever comes back (a refusing CONNACK at most), the server closes.
                let mut packets = 0;
                while raw.read_packet(Duration::from_secs(5)).await.is_some() {
                    packets += 1;
                    prop_assert!(packets < 3, "the server keeps talking to garbage");
                }
                Ok(())
            })
        })
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // And after a connected device sends garbage.
    let mut raw = RawClient::connect(port).await;
    raw.send(&connect_packet(
        5,
        "dev-2",
        &username("dev-2"),
        &token("dev-2"),
        30,
    ))
    .await;
    assert!(raw.read_packet(Duration::from_secs(5)).await.is_some());
    raw.send(&[0x30, 0x05, 0xff, 0xff, 0x00, 0x00, 0x00]).await;
    assert_eq!(
        raw.read_packet(Duration::from_secs(5)).await,
        Some(vec![0xE0, 0x01, 0x81]),
        "DISCONNECT malformed packet"
    );
    let (ok, out) = mosquitto_pub(
        port,
        "mqttv5",
        "dev-1",
        &token("dev-1"),
        "devices/dev-1/messages/events/",
        "still here",
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(handler.received().len(), 1);
    server.shutdown().await;
}
