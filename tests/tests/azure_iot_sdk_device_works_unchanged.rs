//! A device written for Azure IoT Hub works with doppel unchanged: Microsoft's own
//! Python device SDK (`azure-iot-device`), given a device connection string whose
//! HostName is doppel's, connects over MQTT/TLS on 8883, sends telemetry, reports
//! properties, reads its twin, answers a direct method (a DTDL command invoked over
//! REST) and acknowledges a desired property set over REST.
//!
//! The SDK always dials port 8883 on its HostName, so this test binds
//! 127.0.0.1:8883 and uses HostName `localhost`, which names the tenant `localhost`.

use doppel_tests::{https_client, interface, self_signed, Api, Node, ScriptDevice};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

const PUMP: &str = "dtmi:doppel:test:azure:Pump;1";

/// The Python that has the SDK: its own virtualenv (it pins paho-mqtt < 2, which the
/// other device tests cannot use), as `deploy/setup.sh` makes it.
fn sdk_python() -> std::path::PathBuf {
    if let Ok(venv) = std::env::var("DOPPEL_AZURE_VENV") {
        return std::path::PathBuf::from(venv).join("bin/python");
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache")
        });
    cache.join("doppel/azure-sdk-venv/bin/python")
}

/// Microsoft's SDK device (tests/clients/azure_sdk_device.py).
struct SdkDevice(ScriptDevice);

impl SdkDevice {
    fn start(connection_string: &str, ca: &std::path::Path) -> SdkDevice {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/azure_sdk_device.py");
        let python = sdk_python();
        assert!(
            python.exists(),
            "{} is missing: run deploy/setup.sh (it installs azure-iot-device in that virtualenv)",
            python.display()
        );
        SdkDevice(ScriptDevice::start(
            &python,
            &[
                script,
                "--connection-string",
                connection_string,
                "--ca-cert",
                ca.to_str().unwrap(),
            ],
            "deploy/setup.sh installs azure-iot-device",
        ))
    }

    fn expect(&self, step: &str) -> Value {
        self.0.expect(step, Duration::from_secs(40))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azures_python_device_sdk_talks_to_doppel_unchanged() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, der) = self_signed(certs.path());
    let node = Node::start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--mqtts",
        "127.0.0.1:8883",
    ])
    .expect("node with TLS (is port 8883 free?)");
    let client = https_client(&[der]);
    let admin = Api::with_client(client.clone(), &node.url, Some(&node.token));
    // HostName "localhost" is tenant "localhost": an operator creates its admin.
    let r = admin
        .post(
            "/tokens",
            &json!({"name": "hub", "roles": ["admin"], "tenant": "localhost"}),
        )
        .await
        .unwrap();
    let token = r.expect(StatusCode::CREATED)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let api = Api::with_client(client, &node.url, Some(&token));
    api.upload_models(&json!([interface(
        PUMP,
        json!([
            {"@type": "Telemetry", "name": "temp", "schema": "double"},
            {"@type": "Property", "name": "serial", "schema": "string"},
            {"@type": "Property", "name": "setPoint", "schema": "double", "writable": true},
            {"@type": "Command", "name": "reboot",
             "request": {"name": "delay", "schema": "integer"},
             "response": {"name": "result", "schema": "string"}}
        ])
    )]))
    .await
    .unwrap();
    api.put_twin("pump-1", &json!({"$metadata": {"$model": PUMP}}))
        .await
        .unwrap();
    let r = api.put("/devices/pump-1", &json!({})).await.unwrap();
    let key = r.expect(StatusCode::CREATED)["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_owned();

    let conn = format!("HostName=localhost;DeviceId=pump-1;SharedAccessKey={key}");
    let dev = SdkDevice::start(&conn, &cert);
    dev.expect("connected");
    dev.expect("telemetry");
    dev.expect("reported");
    let twin = dev.expect("twin");
    assert_eq!(twin["doc"]["reported"]["serial"], "AZ-1", "{twin}");
    dev.expect("ready");
    let state = api.get("/digitaltwins/pump-1").await.unwrap().body;
    assert_eq!(state["serial"], "AZ-1");
    assert_eq!(state["$metadata"]["$connection"]["state"], "connected");

    let r = api
        .post("/digitaltwins/pump-1/commands/reboot", &json!(2))
        .await
        .unwrap();
    assert_eq!(
        r.expect(StatusCode::OK),
        &json!({"status": 200, "payload": "rebooting in 2 s"})
    );
    let m = dev.expect("method");
    assert_eq!((&m["name"], &m["payload"]), (&json!("reboot"), &json!(2)));

    api.patch(
        "/digitaltwins/pump-1",
        &json!([{"op": "add", "path": "/setPoint", "value": 42.0}]),
    )
    .await
    .unwrap()
    .expect(StatusCode::NO_CONTENT);
    let desired = dev.expect("desired");
    assert_eq!(desired["doc"]["setPoint"], 42.0);
    dev.expect("acked");
    dev.expect("done");
    let meta = &api.get("/digitaltwins/pump-1").await.unwrap().body["$metadata"]["setPoint"];
    assert_eq!(meta["ackCode"], 200, "{meta}");
    assert_eq!(meta["ackVersion"], meta["desiredVersion"], "{meta}");
}
