//! One device script, two ways in: a device that reaches doppel through its embedded
//! MQTT server (IoT Hub user name and SAS token, IoT Hub topics) and the same device
//! behind an external Mosquitto broker a tenant is attached to get the same outcomes —
//! telemetry lands (the twin's event stream), reported properties land on the twin,
//! an app's desired value reaches the device with its `$version`, the device's Plug and
//! Play ack shows on the twin, and a malformed payload (not JSON; breaking the model)
//! is refused with the same reason.
//!
//! The script is tests/clients/conformance_device.py (paho-mqtt, MQTT 5), written once;
//! its `--transport` picks the topics. Each transport reports a refusal as far as it
//! can: the embedded server in the MQTT 5 PUBACK (0x99 and the reason string); behind
//! a broker the device is never told (the broker acknowledged it), so doppel drops the
//! message, counts it and logs a warning with the same reason, which is read here from
//! the node's log.

use doppel_tests::{
    interface, register_device_with_sas, wait_until, EventStream, Mosquitto, Node, ScriptDevice,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const PUMP: &str = "dtmi:doppel:test:conformance:Pump;1";
const HUB: &str = "default.doppel";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Transport {
    Embedded,
    ExternalBroker,
}

/// A node with the pump model and twin `pump-1`, reachable by the device through
/// `transport`, and the script's arguments to reach it.
struct Setup {
    node: Node,
    args: Vec<String>,
    _broker: Option<(Mosquitto, tempfile::TempDir)>,
}

async fn set_up(transport: Transport) -> Setup {
    let (node, broker) = match transport {
        Transport::Embedded => (Node::start().expect("node"), None),
        Transport::ExternalBroker => {
            let broker = Mosquitto::start();
            let (node, dir) = broker.attached_node("doppel-conformance");
            (node, Some((broker, dir)))
        }
    };
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
    for twin in ["pump-1", "probe-1"] {
        api.put_twin(twin, &json!({"$metadata": {"$model": PUMP}}))
            .await
            .unwrap();
    }
    let mut args: Vec<String> = vec!["--device".into(), "pump-1".into()];
    match &broker {
        None => {
            let sas = register_device_with_sas(&api, HUB, "pump-1").await;
            let port = node.mqtt_addr().expect("mqtt banner line");
            let port = port.rsplit(':').next().unwrap().to_owned();
            args.extend([
                "--transport".into(),
                "embedded".into(),
                "--port".into(),
                port,
                "--username".into(),
                format!("{HUB}/pump-1/?api-version=2021-04-12"),
                "--password".into(),
                sas,
            ]);
        }
        Some((broker, _)) => {
            // doppel subscribes once connected: probe with another device until a
            // message comes through, so the script's first message is not lost.
            let mut probe =
                EventStream::open(&node, "/digitaltwins/probe-1/events", &node.token).await;
            broker
                .first_through(&mut probe, "probe-1", "{\"temp\": 0}")
                .await;
            args.extend([
                "--transport".into(),
                "broker".into(),
                "--port".into(),
                broker.port.to_string(),
            ]);
        }
    }
    Setup {
        node,
        args,
        _broker: broker,
    }
}

/// What one run of the script showed, through the REST API and to the device.
#[derive(Debug, PartialEq)]
struct Observed {
    /// The data of the twin's telemetry events, in order.
    telemetry: Vec<Value>,
    /// The twin's `serial` once the reported patch landed.
    serial: Value,
    /// The desired update the device received.
    desired: Value,
    /// The twin's desired version of `setPoint`, and its ack (code, version, description).
    metadata: Value,
    /// Why the payload that is not JSON and the one that breaks the model were refused.
    refusals: Vec<String>,
}

/// The next telemetry event's data (device connection events pass by).
async fn next_telemetry(events: &mut EventStream) -> Value {
    loop {
        let (kind, e) = events.next(Duration::from_secs(20)).await;
        if kind.starts_with("doppel.Device.") {
            continue;
        }
        assert_eq!(kind, "Microsoft.DigitalTwins.Telemetry", "{e}");
        return e["data"].clone();
    }
}

/// The reasons of the messages the node dropped (its warnings), in order.
fn dropped_reasons(node: &Node) -> Vec<String> {
    node.log()
        .lines()
        .filter(|l| l.contains("device message rejected and dropped"))
        .filter_map(|l| l.split(" reason=").nth(1))
        .map(str::to_owned)
        .collect()
}

async fn run(transport: Transport) -> Observed {
    let setup = set_up(transport).await;
    let node = &setup.node;
    let api = node.api();
    let mut events = EventStream::open(node, "/digitaltwins/pump-1/events", &node.token).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/conformance_device.py");
    let mut args = vec![script];
    args.extend(setup.args.iter().map(String::as_str));
    let dev = ScriptDevice::start(
        Path::new("python3"),
        &args,
        "deploy/setup.sh installs python3 and paho-mqtt",
    );
    let step = |name: &str| dev.expect(name, Duration::from_secs(30));
    step("ready");

    assert_eq!(step("telemetry")["rc"], 0, "{transport:?}");
    let refused = [step("not_json"), step("breaks_model")];
    assert_eq!(step("telemetry_after")["rc"], 0, "{transport:?}");
    let refusals: Vec<String> = match transport {
        Transport::Embedded => refused
            .iter()
            .map(|r| {
                assert_eq!(r["rc"], 0x99, "MQTT 5 PUBACK: payload format invalid: {r}");
                r["reason"].as_str().expect("a reason string").to_owned()
            })
            .collect(),
        Transport::ExternalBroker => {
            for r in &refused {
                assert_eq!(r["rc"], 0, "the broker took the message: {r}");
            }
            wait_until(
                "doppel logs both dropped messages",
                Duration::from_secs(10),
                || async { dropped_reasons(node).len() >= 2 },
            )
            .await
            .unwrap();
            dropped_reasons(node)
        }
    };
    assert!(
        refusals[0].starts_with("the payload is not JSON: "),
        "{refusals:?}"
    );
    assert!(refusals[1].contains("nope"), "{refusals:?}");

    // The refused messages did not land; the ones around them did, in order.
    let telemetry = vec![
        next_telemetry(&mut events).await,
        next_telemetry(&mut events).await,
    ];

    let reported = step("reported");
    assert_eq!(reported["rc"], 0, "{reported}");
    if transport == Transport::Embedded {
        assert_eq!(reported["status"], 204, "IoT Hub's twin response");
    }
    wait_until(
        "the reported serial lands",
        Duration::from_secs(10),
        || async { api.get("/digitaltwins/pump-1").await.unwrap().body["serial"] == "S-9" },
    )
    .await
    .unwrap();
    let serial = api.get("/digitaltwins/pump-1").await.unwrap().body["serial"].clone();

    // The app sets a writable property; the device gets it with its version.
    api.patch(
        "/digitaltwins/pump-1",
        &json!([{"op": "add", "path": "/setPoint", "value": 30.0}]),
    )
    .await
    .unwrap()
    .expect(StatusCode::NO_CONTENT);
    let got = step("desired");
    let desired = got["doc"].clone();
    let version = desired["$version"].as_u64().expect("a $version");
    let topic = got["topic"].as_str().unwrap();
    match transport {
        Transport::Embedded => assert!(topic.ends_with(&format!("?$version={version}")), "{topic}"),
        Transport::ExternalBroker => assert_eq!(topic, "devices/pump-1/twin/desired"),
    }

    // The device acknowledges; the ack shows on the twin.
    let acked = step("acked");
    assert_eq!(acked["rc"], 0, "{acked}");
    if transport == Transport::Embedded {
        assert_eq!(acked["status"], 204, "IoT Hub's twin response");
    }
    wait_until("the ack lands", Duration::from_secs(10), || async {
        let twin = api.get("/digitaltwins/pump-1").await.unwrap().body;
        twin["$metadata"]["setPoint"]["ackVersion"] == json!(version)
    })
    .await
    .unwrap();
    let meta = api.get("/digitaltwins/pump-1").await.unwrap().body["$metadata"]["setPoint"].clone();
    let metadata = json!({
        "desiredVersion": meta["desiredVersion"],
        "ackCode": meta["ackCode"],
        "ackVersion": meta["ackVersion"],
        "ackDescription": meta["ackDescription"],
    });
    assert_eq!(
        metadata,
        json!({"desiredVersion": version, "ackCode": 200, "ackVersion": version, "ackDescription": "applied"}),
        "{transport:?}"
    );
    Observed {
        telemetry,
        serial,
        desired,
        metadata,
        refusals,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_device_script_has_the_same_outcomes_embedded_and_behind_an_external_broker() {
    let embedded = run(Transport::Embedded).await;
    assert_eq!(
        embedded.telemetry,
        [json!({"temp": 21.5}), json!({"temp": 22.5})]
    );
    assert_eq!(embedded.serial, "S-9");
    assert_eq!(embedded.desired["setPoint"], 30.0);
    let external = run(Transport::ExternalBroker).await;
    assert_eq!(
        embedded, external,
        "embedded (left) and behind a broker (right)"
    );
}
