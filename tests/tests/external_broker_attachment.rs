//! A tenant attached to an external broker (Debian's Mosquitto): doppel subscribes as
//! a client through a shared subscription, turns the devices' telemetry and reported
//! properties into durable twin changes (acknowledging to the broker only then), drops
//! what breaks the model, and publishes desired values back through the broker.

use doppel_tests::{interface, EventStream, Mosquitto};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PUMP: &str = "dtmi:doppel:test:external:Pump;1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_attached_to_mosquitto_gets_its_devices_data_and_sends_desired_state() {
    let broker = Mosquitto::start();
    let (node, _dir) = broker.attached_node("doppel-test");
    assert!(
        node.banner
            .iter()
            .any(|l| l.contains("attached to external broker")),
        "{:?}",
        node.banner
    );
    let api = node.api();
    api.upload_models(&json!([interface(
        PUMP,
        json!([
            {"@type": "Telemetry", "name": "temp", "schema": "double"},
            {"@type": "Property", "name": "serial", "schema": "string"},
            {"@type": "Property", "name": "setPoint", "schema": "double", "writable": true}
        ])
    )]))
    .await
    .unwrap();
    api.put_twin("pump-1", &json!({"$metadata": {"$model": PUMP}}))
        .await
        .unwrap();
    let token = api.token.clone().unwrap();
    let mut events = EventStream::open(&node, "/digitaltwins/pump-1/events", &token).await;

    // doppel subscribes once connected; publish until the first message comes through.
    let first = broker
        .first_through(&mut events, "pump-1", "{\"temp\": 1.5}")
        .await;
    assert_eq!(first.0, "Microsoft.DigitalTwins.Telemetry");
    assert_eq!(first.1["data"], json!({"temp": 1.5}));
    // A message that breaks the model is dropped; the next good one arrives (earlier
    // probes may still be in flight, so skip other good ones).
    broker.publish("devices/pump-1/messages/events/", "{\"nope\": 1}");
    broker.publish("devices/pump-1/messages/events/", "{\"temp\": 9.25}");
    let wanted = json!({"temp": 9.25});
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (kind, e) = events.next(Duration::from_secs(10)).await;
        assert_eq!(kind, "Microsoft.DigitalTwins.Telemetry");
        assert_ne!(e["data"], json!({"nope": 1}), "a bad message was stored");
        if e["data"] == wanted {
            break;
        }
        assert!(Instant::now() < deadline);
    }

    broker.publish("devices/pump-1/twin/reported", "{\"serial\": \"EXT-1\"}");
    doppel_tests::wait_until(
        "the reported serial arrives",
        Duration::from_secs(10),
        || async { api.get("/digitaltwins/pump-1").await.unwrap().body["serial"] == "EXT-1" },
    )
    .await
    .unwrap();

    // Desired state goes back through the broker. `-d` makes mosquitto_sub say when
    // its subscription is in place (SUBACK) before the app sets the value.
    // (stdbuf: line-buffered, or its lines only arrive when it exits.)
    let mut sub = Command::new("stdbuf")
        .args(["-oL", "mosquitto_sub", "-d", "-h", "127.0.0.1"])
        .args(["-p", &broker.port.to_string()])
        .args(["-t", "devices/pump-1/twin/desired", "-C", "1", "-W", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub runs");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = sub.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("mosquitto_sub subscribes");
        if line.contains("SUBACK") {
            break;
        }
    }
    api.patch(
        "/digitaltwins/pump-1",
        &json!([{"op": "add", "path": "/setPoint", "value": 7.5}]),
    )
    .await
    .unwrap()
    .expect(StatusCode::NO_CONTENT);
    let payload = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("a desired update through the broker");
        if line.starts_with('{') {
            break line;
        }
    };
    let _ = sub.wait();
    let desired: Value = serde_json::from_str(&payload).expect("a desired update");
    assert_eq!(desired["setPoint"], 7.5, "{desired}");
    assert!(desired["$version"].as_u64().is_some_and(|v| v >= 1));
}

/// A burst larger than the client's request queue (1,024) comes through whole and in
/// order: doppel keeps reading from the broker while it makes messages durable, and
/// acknowledges them in order afterwards. (It used to acknowledge from inside its read
/// loop, one message per commit, and stalled after about 1,200 messages.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_through_the_broker_is_taken_whole_and_in_order() {
    // The broker queues everything for doppel (its default drops past 1,000 queued).
    let broker = Mosquitto::start_with("max_queued_messages 0\n");
    let (node, _dir) = broker.attached_node("doppel-burst");
    let api = node.api();
    api.upload_models(&json!([interface(
        PUMP,
        json!([{"@type": "Telemetry", "name": "temp", "schema": "double"}])
    )]))
    .await
    .unwrap();
    api.put_twin("pump-1", &json!({"$metadata": {"$model": PUMP}}))
        .await
        .unwrap();
    let token = api.token.clone().unwrap();
    let mut events = EventStream::open(&node, "/digitaltwins/pump-1/events", &token).await;
    let (_, e) = broker
        .first_through(&mut events, "pump-1", "{\"temp\": -1}")
        .await;
    assert_eq!(e["data"]["temp"], -1, "{e}");
    // Drain what the probing sent meanwhile.
    while tokio::time::timeout(
        Duration::from_millis(500),
        events.next(Duration::from_secs(60)),
    )
    .await
    .is_ok()
    {}

    const BURST: usize = 3000;
    let lines: String = (0..BURST).map(|i| format!("{{\"temp\": {i}}}\n")).collect();
    let mut publisher = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-q", "1"])
        .args([
            "-i",
            "pump-1",
            "-t",
            "devices/pump-1/messages/events/",
            "-l",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub runs");
    {
        use std::io::Write;
        let mut stdin = publisher.stdin.take().unwrap();
        stdin.write_all(lines.as_bytes()).unwrap();
    }
    assert!(publisher.wait().unwrap().success());
    let mut temps = Vec::with_capacity(BURST);
    while temps.len() < BURST {
        let (kind, e) = events.next(Duration::from_secs(30)).await;
        assert_eq!(kind, "Microsoft.DigitalTwins.Telemetry", "{e}");
        temps.push(e["data"]["temp"].as_u64().expect("a temperature") as usize);
    }
    assert_eq!(
        temps,
        (0..BURST).collect::<Vec<_>>(),
        "in the order published"
    );
}
