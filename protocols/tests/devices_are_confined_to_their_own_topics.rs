//! A device publishes and subscribes only on its own topics. MQTT 5 answers a
//! refused publish with a PUBACK reason code and keeps the connection; MQTT
//! 3.1.1 has no negative PUBACK, so the rule of `PublishReason::v311_action`
//! applies: a forbidden topic closes the connection unacknowledged, an invalid
//! payload is acknowledged and dropped.

mod common;

use common::*;

fn with_topic(mut args: Vec<String>, topic: &str, payload: &str) -> Vec<String> {
    args.extend([
        "--topic".into(),
        topic.into(),
        "--payload".into(),
        payload.into(),
    ]);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_to_another_devices_topic_is_refused() {
    let (server, handler) = start().await;
    let port = server.local_addr().port();
    let other = "devices/dev-2/messages/events/";

    let v5 = run_paho(with_topic(
        paho_args("publish", port, 5, "dev-1"),
        other,
        "{}",
    ))
    .await;
    assert_eq!(v5["puback"], 0x87, "v5 PUBACK not authorized: {v5}");
    assert!(
        v5.get("disconnect").is_none(),
        "v5 connection survives: {v5}"
    );

    let v311 = run_paho(with_topic(
        paho_args("publish", port, 4, "dev-1"),
        other,
        "{}",
    ))
    .await;
    assert!(v311.get("puback").is_none(), "3.1.1 gets no PUBACK: {v311}");
    assert!(
        v311.get("disconnect").is_some(),
        "3.1.1 is disconnected: {v311}"
    );

    let (ok, _) = mosquitto_pub(port, "mqttv311", "dev-1", &token("dev-1"), other, "{}").await;
    assert!(!ok, "mosquitto_pub 3.1.1 must not report success");

    assert!(handler.received().is_empty(), "nothing stored");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_payload_is_refused_with_its_reason_and_the_connection_survives() {
    let (server, handler) = start().await;
    let port = server.local_addr().port();
    let own = "devices/dev-1/messages/events/";

    let v5 = run_paho(with_topic(
        paho_args("publish", port, 5, "dev-1"),
        own,
        "invalid",
    ))
    .await;
    assert_eq!(v5["puback"], 0x99, "payload format invalid: {v5}");
    assert!(v5.get("disconnect").is_none(), "{v5}");

    let v311 = run_paho(with_topic(
        paho_args("publish", port, 4, "dev-1"),
        own,
        "invalid",
    ))
    .await;
    assert_eq!(v311["puback"], 0, "3.1.1: acknowledged and dropped: {v311}");
    assert!(v311.get("disconnect").is_none(), "{v311}");

    assert!(handler.received().is_empty(), "nothing stored");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_to_another_devices_topic_is_refused() {
    let (server, _handler) = start().await;
    let port = server.local_addr().port();
    for (protocol, refused) in [(5u8, 0x87), (4, 0x80)] {
        let mut args = paho_args("subscribe-and-wait", port, protocol, "dev-1");
        args.extend([
            "--topic".into(),
            "devices/dev-2/messages/devicebound/#".into(),
            "--timeout".into(),
            "0.5".into(),
        ]);
        let res = run_paho(args).await;
        assert_eq!(
            res["suback"],
            serde_json::json!([refused]),
            "v{protocol}: {res}"
        );

        let mut args = paho_args("subscribe-and-wait", port, protocol, "dev-1");
        args.extend([
            "--topic".into(),
            "$iothub/twin/res/#".into(),
            "--timeout".into(),
            "0.5".into(),
        ]);
        let res = run_paho(args).await;
        assert_eq!(res["suback"], serde_json::json!([1]), "v{protocol}: {res}");
    }
    server.shutdown().await;
}
