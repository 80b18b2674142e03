//! A device connected to one node of a three-node cluster works as on a single node:
//! its telemetry and reported properties reach its twin's shard leader (wherever that
//! is), desired state set through another node reaches it, and a direct method invoked
//! through a third node finds it. The device is the real paho Plug and Play device
//! (tests/clients/pnp_device.py).

use doppel_tests::cluster::Cluster;
use doppel_tests::{interface, register_device_with_sas, ScriptDevice};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const PUMP: &str = "dtmi:doppel:test:cluster:Pump;1";
const HUB: &str = "default.doppel";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_on_any_node_reaches_its_twin_and_is_reached() {
    doppel_tests::install_crypto_provider();
    let cluster = Cluster::start(3, 4).await.expect("cluster");
    let api1 = cluster.api(1);
    api1.upload_models(&json!([interface(
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
    // Pick the twin id whose shard node 3 does not lead, so the device's messages
    // arriving at node 3 must travel to another node's leader.
    let mut device = String::new();
    for i in 0..64 {
        let id = format!("pump-{i}");
        let g = cluster.shard_of(&id).to_string();
        if cluster.leader_of(1, &g).await.unwrap() != Some(3) {
            device = id;
            break;
        }
    }
    assert!(!device.is_empty(), "node 3 leads every shard");
    api1.put_twin(&device, &json!({"$metadata": {"$model": PUMP}}))
        .await
        .unwrap();
    let sas = register_device_with_sas(&api1, HUB, &device).await;
    let dev = pnp_device(&cluster, 3, &device, &sas);
    let step = |s: &str| -> Value { dev.expect(s, Duration::from_secs(30)) };
    step("ready");
    assert_eq!(
        step("telemetry")["rc"],
        0,
        "telemetry acknowledged once replicated"
    );
    assert_eq!(
        step("bad_telemetry")["rc"],
        0x99,
        "the leader's validation error comes back as MQTT 5 'payload format invalid'"
    );
    assert_eq!(step("reported")["status"], 204);
    let twin = step("twin");
    assert_eq!(twin["doc"]["reported"]["serial"], "S-9", "{twin}");
    // Reported state is visible through every node.
    for n in 1..=3 {
        let r = cluster
            .api(n)
            .get(&format!("/digitaltwins/{device}"))
            .await
            .unwrap();
        assert_eq!(r.body["serial"], "S-9", "via node {n}: {}", r.body);
    }
    // A direct method through node 1 finds the device on node 3.
    let r = api1
        .post(
            &format!("/digitaltwins/{device}/commands/reboot"),
            &json!(3),
        )
        .await
        .unwrap();
    assert_eq!(
        r.expect(StatusCode::OK),
        &json!({"status": 200, "payload": "rebooting in 3 s"})
    );
    // Desired state set through node 2 reaches the device on node 3, and its ack lands.
    cluster
        .api(2)
        .patch(
            &format!("/digitaltwins/{device}"),
            &json!([{"op": "add", "path": "/setPoint", "value": 30.0}]),
        )
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);
    let desired = step("desired");
    assert_eq!(desired["doc"]["setPoint"], 30.0);
    assert_eq!(step("acked")["status"], 204);
    let r = cluster
        .api(2)
        .get(&format!("/digitaltwins/{device}"))
        .await
        .unwrap();
    assert_eq!(
        r.body["$metadata"]["setPoint"]["ackCode"], 200,
        "{}",
        r.body
    );
    assert_eq!(
        r.body["$metadata"]["$connection"]["state"], "connected",
        "{}",
        r.body
    );

    // The device connects again, through node 1 (a reconnect that a load balancer
    // sent elsewhere): its old connection on node 3 is closed as taken over, and the
    // twin shows it connected, not disconnected by the old connection's end.
    let again = pnp_device(&cluster, 1, &device, &sas);
    again.expect("ready", Duration::from_secs(30));
    let gone = step("disconnected");
    assert_eq!(gone["rc"], 0x8E, "session taken over: {gone}");
    assert_eq!(again.expect("telemetry", Duration::from_secs(30))["rc"], 0);
    // Node 3's report of the old connection's end changes nothing.
    for _ in 0..10 {
        let r = cluster
            .api(3)
            .get(&format!("/digitaltwins/{device}"))
            .await
            .unwrap();
        assert_eq!(
            r.body["$metadata"]["$connection"]["state"], "connected",
            "{}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The new connection's end is recorded.
    drop(again);
    doppel_tests::wait_until(
        "the twin shows the device disconnected",
        Duration::from_secs(20),
        || async {
            let twin = cluster
                .api(2)
                .get(&format!("/digitaltwins/{device}"))
                .await
                .unwrap()
                .body;
            twin["$metadata"]["$connection"]["state"] == "disconnected"
        },
    )
    .await
    .unwrap();
}

/// The paho Plug and Play device (tests/clients/pnp_device.py) for `device`, over
/// MQTT 5 to node `node`.
fn pnp_device(cluster: &Cluster, node: u64, device: &str, sas: &str) -> ScriptDevice {
    let port = cluster
        .node(node)
        .mqtt_addr()
        .unwrap_or_else(|| panic!("node {node}'s mqtt banner line"))
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/pnp_device.py");
    let user = format!("{HUB}/{device}/?api-version=2021-04-12");
    ScriptDevice::start(
        Path::new("python3"),
        &[
            script,
            "--port",
            &port,
            "--protocol",
            "5",
            "--device",
            device,
            "--username",
            &user,
            "--password",
            sas,
        ],
        "deploy/setup.sh installs python3 and paho-mqtt",
    )
}
