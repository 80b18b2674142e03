//! Devices bind to their twins over MQTT, unchanged Azure IoT Hub / IoT Plug and Play
//! devices: a real paho-mqtt device (tests/clients/pnp_device.py) and mosquitto_pub
//! authenticate with SAS tokens from their device keys, send telemetry (PUBACK only
//! once durable; a payload that breaks the model is refused with its reason),
//! report properties, read their twin, receive desired state set over REST and
//! acknowledge it; disabling the device cuts it off at once.

use doppel_protocols::sas::make_sas_token;
use doppel_tests::{interface, EventStream, Node, ScriptDevice};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PUMP: &str = "dtmi:doppel:test:mqtt:Pump;1";
const HUB: &str = "default.doppel";

fn model() -> Value {
    json!([interface(
        PUMP,
        json!([
            {"@type": "Telemetry", "name": "temp", "schema": "double"},
            {"@type": "Property", "name": "serial", "schema": "string"},
            {"@type": "Property", "name": "setPoint", "schema": "double", "writable": true},
            {"@type": "Command", "name": "reboot",
             "request": {"name": "delay", "schema": "integer"},
             "response": {"name": "result", "schema": "string"}},
            {"@type": "Command", "name": "hang"}
        ])
    )])
}

fn sas(device: &str, key: &str) -> String {
    let expiry = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    make_sas_token(&format!("{HUB}/devices/{device}"), key, expiry, None).expect("token")
}

fn username(device: &str) -> String {
    format!("{HUB}/{device}/?api-version=2021-04-12")
}

/// A node with the pump model, twin `pump-1` and its device; returns the primary key.
async fn pump_node() -> (Node, String) {
    let node = Node::start().expect("node");
    let api = node.api();
    api.upload_models(&model()).await.unwrap();
    api.put_twin("pump-1", &json!({"$metadata": {"$model": PUMP}}))
        .await
        .unwrap();
    let r = api.put("/devices/pump-1", &json!({})).await.unwrap();
    let key = r.expect(StatusCode::CREATED)["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_owned();
    (node, key)
}

const CONNECTED: &str = "doppel.Device.Connected";
const DISCONNECTED: &str = "doppel.Device.Disconnected";

/// The next event that is not a device connecting or disconnecting, and the kinds of
/// those passed on the way (they interleave with what the device sends).
async fn next_skipping_connection(events: &mut EventStream) -> (String, Value, Vec<String>) {
    let mut passed = Vec::new();
    loop {
        let (kind, e) = events.next(Duration::from_secs(10)).await;
        if kind == CONNECTED || kind == DISCONNECTED {
            assert_eq!(
                e["data"]["state"],
                if kind == CONNECTED {
                    "connected"
                } else {
                    "disconnected"
                },
                "{e}"
            );
            passed.push(kind);
            continue;
        }
        return (kind, e, passed);
    }
}

/// The paho Plug and Play device (tests/clients/pnp_device.py).
struct Device(ScriptDevice);

impl Device {
    fn start(port: &str, protocol: u8, device: &str, password: &str) -> Device {
        Device::start_with(port, protocol, device, password, &[])
    }

    fn start_with(
        port: &str,
        protocol: u8,
        device: &str,
        password: &str,
        extra: &[&str],
    ) -> Device {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/pnp_device.py");
        let protocol = protocol.to_string();
        let user = username(device);
        let mut args = vec![
            script,
            "--port",
            port,
            "--protocol",
            &protocol,
            "--device",
            device,
            "--username",
            &user,
            "--password",
            password,
        ];
        args.extend_from_slice(extra);
        Device(ScriptDevice::start(
            Path::new("python3"),
            &args,
            "deploy/setup.sh installs python3 and paho-mqtt",
        ))
    }

    fn expect(&self, step: &str) -> Value {
        self.0.expect(step, Duration::from_secs(20))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_telemetry_is_acknowledged_and_applied_in_order_one_by_one() {
    let (node, key) = pump_node().await;
    let port = node.mqtt_addr().expect("mqtt banner line");
    let port = port.rsplit(':').next().unwrap().to_owned();
    let token = node.api().token.clone().unwrap();
    let mut events = EventStream::open(&node, "/digitaltwins/pump-1/events", &token).await;
    let burst = 40;
    let dev = Device::start_with(
        &port,
        5,
        "pump-1",
        &sas("pump-1", &key),
        &["--burst", &burst.to_string()],
    );
    dev.expect("ready");
    assert_eq!(dev.expect("telemetry")["rc"], 0);
    assert_eq!(dev.expect("bad_telemetry")["rc"], 0x99);
    // Sent without waiting for PUBACKs: each is answered as if alone, in order.
    let rcs: Vec<u64> = dev.expect("burst")["rcs"]
        .as_array()
        .expect("reason codes")
        .iter()
        .map(|v| v.as_u64().expect("code"))
        .collect();
    let expected: Vec<u64> = (0..burst).map(|i| if i == 7 { 0x99 } else { 0 }).collect();
    assert_eq!(
        rcs, expected,
        "the 8th message breaks the model, the rest are taken"
    );
    // Applied in the order sent, and only the valid ones.
    let mut temps = Vec::new();
    let mut connection = Vec::new();
    while temps.len() < burst as usize {
        let (kind, e, passed) = next_skipping_connection(&mut events).await;
        assert_eq!(kind, "Microsoft.DigitalTwins.Telemetry", "{e}");
        temps.push(e["data"]["temp"].clone());
        connection.extend(passed);
    }
    assert_eq!(connection, [CONNECTED], "the device's connect is an event");
    let sent: Vec<Value> = [json!(21.5)]
        .into_iter()
        .chain((0..burst).filter(|i| *i != 7).map(|i| json!(i)))
        .collect();
    assert_eq!(temps, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plug_and_play_device_round_trips_telemetry_reported_and_desired_state() {
    let (node, key) = pump_node().await;
    let api = node.api();
    let port = node.mqtt_addr().expect("mqtt banner line");
    let port = port.rsplit(':').next().unwrap().to_owned();
    let token = api.token.clone().unwrap();
    let mut events = EventStream::open(&node, "/digitaltwins/pump-1/events", &token).await;

    let dev = Device::start(&port, 5, "pump-1", &sas("pump-1", &key));
    dev.expect("ready");
    assert_eq!(
        dev.expect("telemetry")["rc"],
        0,
        "valid telemetry is acknowledged"
    );
    let (kind, e, passed) = next_skipping_connection(&mut events).await;
    assert_eq!(kind, "Microsoft.DigitalTwins.Telemetry");
    assert_eq!(e["data"], json!({"temp": 21.5}));
    assert_eq!(passed, [CONNECTED], "the device's connect is an event");
    assert_eq!(
        dev.expect("bad_telemetry")["rc"],
        0x99,
        "MQTT 5 PUBACK says: payload format invalid"
    );
    assert_eq!(dev.expect("reported")["status"], 204);
    let twin = dev.expect("twin");
    assert_eq!(twin["status"], 200);
    assert_eq!(twin["doc"]["reported"]["serial"], "S-9");
    assert_eq!(
        api.get("/digitaltwins/pump-1").await.unwrap().body["serial"],
        "S-9"
    );

    // Commands: validated against the model, delivered as direct methods, answered.
    let r = api
        .post("/digitaltwins/pump-1/commands/reboot", &json!(3))
        .await
        .unwrap();
    assert_eq!(
        r.expect(StatusCode::OK),
        &json!({"status": 200, "payload": "rebooting in 3 s"})
    );
    let r = api
        .post("/digitaltwins/pump-1/commands/reboot", &json!("soon"))
        .await
        .unwrap();
    r.assert_error(StatusCode::BAD_REQUEST, "ValidationFailed");
    let r = api
        .post("/digitaltwins/pump-1/commands/explode", &json!(1))
        .await
        .unwrap();
    r.assert_error(StatusCode::BAD_REQUEST, "ValidationFailed");
    let r = api
        .post(
            "/digitaltwins/pump-1/commands/hang?responseTimeoutInSeconds=5",
            &Value::Null,
        )
        .await
        .unwrap();
    r.assert_error(StatusCode::GATEWAY_TIMEOUT, "GatewayTimeout");

    // The app sets a writable property; the device gets it and acknowledges.
    api.patch(
        "/digitaltwins/pump-1",
        &json!([{"op": "add", "path": "/setPoint", "value": 30.0}]),
    )
    .await
    .unwrap()
    .expect(StatusCode::NO_CONTENT);
    let desired = dev.expect("desired");
    assert_eq!(desired["doc"]["setPoint"], 30.0);
    let version = desired["doc"]["$version"].as_u64().unwrap();
    assert_eq!(dev.expect("acked")["status"], 204);
    let r = api.get("/digitaltwins/pump-1").await.unwrap();
    let meta = &r.body["$metadata"]["setPoint"];
    assert_eq!(
        (&meta["desiredValue"], &meta["desiredVersion"]),
        (&json!(30.0), &json!(version))
    );
    assert_eq!(
        (
            &meta["ackCode"],
            &meta["ackVersion"],
            &meta["ackDescription"]
        ),
        (&json!(200), &json!(version), &json!("applied"))
    );

    // Disabling the device cuts the live connection at once.
    api.put("/devices/pump-1", &json!({"status": "disabled"}))
        .await
        .unwrap()
        .expect(StatusCode::OK);
    let gone = dev.expect("disconnected");
    assert_eq!(gone["rc"], 0x98, "administrative action");
    assert!(gone["after_s"].as_f64().unwrap() < 2.0, "{gone}");
    doppel_tests::wait_until(
        "the twin shows the device disconnected",
        Duration::from_secs(10),
        || async {
            let twin = api.get("/digitaltwins/pump-1").await.unwrap().body;
            twin["$metadata"]["$connection"]["state"] == "disconnected"
        },
    )
    .await
    .unwrap();
    let c = &api.get("/digitaltwins/pump-1").await.unwrap().body["$metadata"]["$connection"];
    assert!(
        c["lastDisconnectTime"].as_str() >= c["lastConnectTime"].as_str(),
        "{c}"
    );
}

fn mosquitto_pub(
    port: &str,
    version: &str,
    user: &str,
    password: &str,
    payload: &str,
) -> std::process::Output {
    Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", port, "-V", version, "-q", "1"])
        .args(["-i", "pump-1", "-u", user, "-P", password])
        .args(["-t", "devices/pump-1/messages/events/", "-m", payload])
        .output()
        .expect("mosquitto_pub runs (deploy/setup.sh installs mosquitto-clients)")
}

#[tokio::test]
async fn mosquitto_pub_devices_need_a_valid_sas_token_and_an_enabled_device() {
    let (node, key) = pump_node().await;
    let api = node.api();
    let port = node.mqtt_addr().expect("mqtt banner line");
    let port = port.rsplit(':').next().unwrap().to_owned();
    let token = api.token.clone().unwrap();
    let mut events = EventStream::open(&node, "/digitaltwins/pump-1/events", &token).await;

    let ok = mosquitto_pub(
        &port,
        "mqttv311",
        &username("pump-1"),
        &sas("pump-1", &key),
        "{\"temp\": 7.5}",
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let (_, e, mut passed) = next_skipping_connection(&mut events).await;
    assert_eq!(e["data"], json!({"temp": 7.5}));
    // mosquitto_pub connected, published and disconnected: both are events.
    while passed.len() < 2 {
        let (kind, e) = events.next(Duration::from_secs(10)).await;
        assert!(kind == CONNECTED || kind == DISCONNECTED, "{kind}: {e}");
        passed.push(kind);
    }
    assert_eq!(passed, [CONNECTED, DISCONNECTED]);

    // A token signed with another key: refused, nothing stored.
    let forged = sas("pump-1", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    let bad = mosquitto_pub(
        &port,
        "mqttv5",
        &username("pump-1"),
        &forged,
        "{\"temp\": 1}",
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr).to_lowercase();
    assert!(err.contains("bad user name or password"), "{err}");

    api.put("/devices/pump-1", &json!({"status": "disabled"}))
        .await
        .unwrap()
        .expect(StatusCode::OK);
    let refused = mosquitto_pub(
        &port,
        "mqttv5",
        &username("pump-1"),
        &sas("pump-1", &key),
        "{\"temp\": 2}",
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(err.contains("not authorized"), "{err}");
    // Only the device-update event follows: no telemetry got through.
    let (kind, _) = events.next(Duration::from_secs(10)).await;
    assert_eq!(kind, "doppel.Device.Update");
}
