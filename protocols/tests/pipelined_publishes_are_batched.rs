//! A device that sends several QoS 1 publishes back to back (without waiting for
//! each PUBACK) gets them handed to the handler as one batch and acknowledged in
//! order, each answered as if it had come alone: an invalid one in the middle is
//! refused (MQTT 5: 0x99) or acknowledged and dropped (3.1.1), and a refusal that
//! 3.1.1 can only answer by closing ends the connection after the PUBACKs of the
//! messages before it, with the messages after it left unprocessed.

mod common;

use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(5);

async fn connected(port: u16, level: u8) -> RawClient {
    let mut raw = RawClient::connect(port).await;
    raw.send(&connect_packet(
        level,
        "dev-1",
        &username("dev-1"),
        &token("dev-1"),
        30,
    ))
    .await;
    let connack = raw.read_packet(WAIT).await.expect("CONNACK");
    assert_eq!(connack[0], 0x20, "CONNACK: {connack:?}");
    assert_eq!(connack[3], 0x00, "accepted: {connack:?}");
    raw
}

/// Sends the publishes in one write, so the server reads them together.
async fn send_all(raw: &mut RawClient, level: u8, messages: &[(&str, u16, &str)]) {
    let mut bytes = Vec::new();
    for (topic, pkid, payload) in messages {
        bytes.extend(publish_packet(level, topic, *pkid, payload.as_bytes()));
    }
    raw.send(&bytes).await;
}

/// (packet id, reason code) of a PUBACK; a PUBACK without a reason code is 0.
fn puback(packet: &[u8]) -> (u16, u8) {
    assert_eq!(packet[0], 0x40, "expected a PUBACK, got {packet:?}");
    let pkid = u16::from_be_bytes([packet[2], packet[3]]);
    (pkid, packet.get(4).copied().unwrap_or(0))
}

fn payloads(handler: &TestHandler) -> Vec<String> {
    handler
        .received()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect()
}

const TELEMETRY: &str = "devices/dev-1/messages/events/";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_publishes_are_one_batch_acknowledged_in_order() {
    for level in [5u8, 4] {
        let (server, handler) = start().await;
        let port = server.local_addr().port();
        let mut raw = connected(port, level).await;
        let messages: Vec<(&str, u16, &str)> = vec![
            (TELEMETRY, 1, "m1"),
            (TELEMETRY, 2, "m2"),
            (TELEMETRY, 3, "invalid"),
            (TELEMETRY, 4, "m4"),
            (TELEMETRY, 5, "m5"),
            (TELEMETRY, 6, "m6"),
        ];
        send_all(&mut raw, level, &messages).await;
        let mut acks = Vec::new();
        for _ in 0..messages.len() {
            let packet = raw.read_packet(WAIT).await.expect("PUBACK");
            acks.push(puback(&packet));
        }
        let refused = if level == 5 { 0x99 } else { 0 };
        assert_eq!(
            acks,
            vec![(1, 0), (2, 0), (3, refused), (4, 0), (5, 0), (6, 0)],
            "v{level}: PUBACKs in order, the invalid one answered as alone"
        );
        assert_eq!(
            payloads(&handler),
            ["m1", "m2", "m4", "m5", "m6"],
            "v{level}"
        );
        let batches = handler.batches.lock().expect("lock").clone();
        assert_eq!(batches.iter().sum::<usize>(), 6, "v{level}: {batches:?}");
        assert!(
            batches.iter().any(|&n| n > 1),
            "v{level}: back-to-back publishes were handed over one by one: {batches:?}"
        );
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closing_refusal_in_a_batch_acknowledges_only_what_came_before() {
    let (server, handler) = start().await;
    let port = server.local_addr().port();
    let mut raw = connected(port, 4).await;
    send_all(
        &mut raw,
        4,
        &[
            (TELEMETRY, 1, "m1"),
            (TELEMETRY, 2, "m2"),
            // Another device's topic: 3.1.1 can only close the connection.
            ("devices/dev-2/messages/events/", 3, "m3"),
            (TELEMETRY, 4, "m4"),
            (TELEMETRY, 5, "m5"),
        ],
    )
    .await;
    assert_eq!(
        puback(&raw.read_packet(WAIT).await.expect("PUBACK 1")),
        (1, 0)
    );
    assert_eq!(
        puback(&raw.read_packet(WAIT).await.expect("PUBACK 2")),
        (2, 0)
    );
    assert!(
        raw.read_packet(WAIT).await.is_none(),
        "the connection closes instead of acknowledging the refused publish"
    );
    // Unacknowledged, so the device sends them again: they must not be processed.
    assert_eq!(payloads(&handler), ["m1", "m2"]);
    eventually("the disconnect is reported", WAIT, || {
        handler
            .events
            .lock()
            .expect("lock")
            .iter()
            .any(|(d, r)| d == "dev-1" && r == "PublishRefused")
    })
    .await;
    server.shutdown().await;
}
