//! A device registered with the SHA-256 thumbprint of its (self-signed) X.509
//! certificate connects over MQTT/TLS with that certificate and no password, as Azure
//! IoT Hub's "selfSigned" devices do; any other certificate is refused.

use doppel_tests::{https_client, interface, self_signed, Api, EventStream, Node};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PUMP: &str = "dtmi:doppel:test:x509:Pump;1";

/// A device certificate and key as PEM files; returns their paths and the thumbprint.
fn device_cert(dir: &Path, name: &str) -> (String, String, String) {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let thumb: String = ring::digest::digest(&ring::digest::SHA256, ck.cert.der())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    (cert.display().to_string(), key.display().to_string(), thumb)
}

fn connect(port: &str, ca: &Path, cert: &str, key: &str, protocol: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/x509_device.py");
    let out = Command::new("python3")
        .args([script, "--port", port, "--ca", ca.to_str().unwrap()])
        .args(["--cert", cert, "--key", key, "--device", "pump-1"])
        .args([
            "--username",
            "default.doppel/pump-1/?api-version=2021-04-12",
        ])
        .args(["--protocol", protocol])
        .output()
        .expect("python3 runs");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "device printed {:?} / {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_certificate_replaces_the_sas_token_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (server_cert, server_key, der) = self_signed(dir.path());
    let node = Node::start_with(&[
        "--tls-cert",
        server_cert.to_str().unwrap(),
        "--tls-key",
        server_key.to_str().unwrap(),
    ])
    .expect("node");
    let port = node.mqtts_addr().expect("mqtts banner line");
    let port = port.rsplit(':').next().unwrap().to_owned();
    let api = Api::with_client(https_client(&[der]), &node.url, Some(&node.token));
    api.upload_models(&json!([interface(
        PUMP,
        json!([{"@type": "Telemetry", "name": "temp", "schema": "double"}])
    )]))
    .await
    .unwrap();
    api.put_twin("pump-1", &json!({"$metadata": {"$model": PUMP}}))
        .await
        .unwrap();
    let (cert, key, thumb) = device_cert(dir.path(), "pump-1");
    let r = api
        .put(
            "/devices/pump-1",
            &json!({"authentication": {"type": "selfSigned",
                    "x509Thumbprint": {"primaryThumbprint": thumb}}}),
        )
        .await
        .unwrap();
    let device = r.expect(StatusCode::CREATED);
    assert_eq!(device["authentication"]["type"], "selfSigned");
    assert_eq!(
        device["authentication"]["x509Thumbprint"]["primaryThumbprint"],
        thumb.to_lowercase()
    );

    // A bad thumbprint is named.
    let r = api
        .put(
            "/devices/pump-1",
            &json!({"authentication": {"type": "selfSigned",
                    "x509Thumbprint": {"primaryThumbprint": "abc"}}}),
        )
        .await
        .unwrap();
    r.assert_error(StatusCode::BAD_REQUEST, "InvalidArgument");
    assert!(r.text.contains("primaryThumbprint"), "{}", r.text);

    let mut events = EventStream::open_with(&api, "/digitaltwins/pump-1/events").await;
    for protocol in ["5", "4"] {
        let ok = connect(&port, &server_cert, &cert, &key, protocol);
        assert_eq!(ok, json!({"connack": 0, "puback": 0}), "MQTT {protocol}");
    }
    let mut telemetry = 0;
    while telemetry < 2 {
        let (kind, e) = events.next(Duration::from_secs(10)).await;
        if kind == "Microsoft.DigitalTwins.Telemetry" {
            assert_eq!(e["data"], json!({"temp": 36.6}));
            telemetry += 1;
        }
    }

    // Another certificate with the same name: bad credentials (MQTT 5: 0x86).
    let other = tempfile::tempdir().unwrap();
    let (cert2, key2, _) = device_cert(other.path(), "pump-1");
    let refused = connect(&port, &server_cert, &cert2, &key2, "5");
    assert_eq!(refused["connack"], 0x86, "{refused}");
    assert!(refused.get("puback").is_none());
}
