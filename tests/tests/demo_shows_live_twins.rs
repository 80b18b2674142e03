//! `doppel demo` shows the point on a first run: the real binary starts a node with the
//! sample factory (models, factory → lines → machines, one device per machine) and
//! simulated machines that connect over real MQTT, stream telemetry, acknowledge
//! desired `targetSpeed` and answer `reboot`; SIGTERM stops it cleanly, and a second
//! run on the same directory goes on with the same data.

use doppel_tests::{wait_until, Api, EventStream, Node};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const MACHINE: &str = "dtmi:doppel:demo:Machine;1";
const DEADLINE: Duration = Duration::from_secs(20);

async fn twin(api: &Api, id: &str) -> Value {
    let r = api.get(&format!("/digitaltwins/{id}")).await.unwrap();
    r.expect(StatusCode::OK).clone()
}

/// The `contains` targets of `source`.
async fn contained(api: &Api, source: &str) -> BTreeSet<String> {
    let (rels, _) = api
        .get_all(&format!("/digitaltwins/{source}/relationships"))
        .await
        .unwrap();
    rels.iter()
        .map(|r| {
            assert_eq!(r["$relationshipName"], "contains", "{r}");
            r["$targetId"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

async fn all_connected(api: &Api, machines: &[&str]) {
    for m in machines {
        wait_until(
            &format!("{m} shows its device connected"),
            DEADLINE,
            || async { twin(api, m).await["$metadata"]["$connection"]["state"] == "connected" },
        )
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_a_live_factory_and_stops_cleanly() {
    let mut node = Node::start_demo(&["--machines", "3", "--interval-ms", "200"]).expect("demo");
    let api = node.api();
    let mqtt = node
        .mqtt_addr()
        .expect("the demo prints its mqtt:// address");
    assert!(!mqtt.ends_with(":0"), "the bound MQTT port, not 0: {mqtt}");
    assert!(
        !node.url.ends_with(":0"),
        "the bound HTTP port: {}",
        node.url
    );

    // The sample models, uploaded through the API.
    for id in [
        "dtmi:doppel:demo:Factory;1",
        "dtmi:doppel:demo:ProductionLine;1",
        MACHINE,
    ] {
        let r = api
            .get(&format!("/models/{}", id.replace(';', "%3B")))
            .await
            .unwrap();
        assert_eq!(r.expect(StatusCode::OK)["id"], id, "{}", r.text);
    }

    // The twin graph: factory-1 → line-1, line-2 → machines.
    let (twins, _) = api.get_all("/digitaltwins").await.unwrap();
    let ids: BTreeSet<String> = twins
        .iter()
        .map(|t| t["$dtId"].as_str().unwrap().to_owned())
        .collect();
    let machines = ["machine-1", "machine-2", "machine-3"];
    assert_eq!(
        ids,
        set(&[
            "factory-1",
            "line-1",
            "line-2",
            "machine-1",
            "machine-2",
            "machine-3"
        ])
    );
    for m in machines {
        assert_eq!(twin(&api, m).await["$metadata"]["$model"], MACHINE);
    }
    assert_eq!(
        contained(&api, "factory-1").await,
        set(&["line-1", "line-2"])
    );
    let (l1, l2) = (
        contained(&api, "line-1").await,
        contained(&api, "line-2").await,
    );
    assert!(!l1.is_empty() && !l2.is_empty(), "{l1:?} {l2:?}");
    assert!(l1.is_disjoint(&l2));
    assert_eq!(
        l1.union(&l2).cloned().collect::<BTreeSet<_>>(),
        set(&machines)
    );
    // One device per machine.
    for m in machines {
        api.get(&format!("/devices/{m}"))
            .await
            .unwrap()
            .expect(StatusCode::OK);
    }

    // Every machine is a connected device that reported itself.
    all_connected(&api, &machines).await;
    for m in machines {
        wait_until(&format!("{m} reports status"), DEADLINE, || async {
            let t = twin(&api, m).await;
            t["status"] == "running" && t["serialNumber"].is_string()
        })
        .await
        .unwrap();
    }

    // Telemetry flows live.
    let token = node.token.clone();
    let mut events = EventStream::open(&node, "/digitaltwins/machine-1/events", &token).await;
    let start = Instant::now();
    let mut telemetry = 0;
    while telemetry < 3 {
        let left = DEADLINE.saturating_sub(start.elapsed());
        let (kind, e) = events.next(left).await;
        if kind == "Microsoft.DigitalTwins.Telemetry" {
            assert!(e["data"]["temperature"].is_f64(), "{e}");
            assert!(e["data"]["vibration"].is_f64(), "{e}");
            telemetry += 1;
        }
    }

    // Desired targetSpeed is acknowledged by the device (IoT Plug and Play).
    api.patch(
        "/digitaltwins/machine-1",
        &json!([{"op": "add", "path": "/targetSpeed", "value": 2.5}]),
    )
    .await
    .unwrap()
    .expect(StatusCode::NO_CONTENT);
    wait_until("the device acknowledges targetSpeed", DEADLINE, || async {
        let m = &twin(&api, "machine-1").await["$metadata"]["targetSpeed"];
        m["desiredValue"] == 2.5 && m["ackCode"] == 200 && m["ackVersion"] == m["desiredVersion"]
    })
    .await
    .unwrap();

    // reboot is a direct method the device answers.
    let r = api
        .post("/digitaltwins/machine-1/commands/reboot", &Value::Null)
        .await
        .unwrap();
    assert_eq!(r.expect(StatusCode::OK)["status"], 200, "{}", r.text);
    wait_until("machine-1 is running again", DEADLINE, || async {
        twin(&api, "machine-1").await["status"] == "running"
    })
    .await
    .unwrap();

    // SIGTERM: a clean exit, after the guide.
    drop(events);
    let url = node.url.clone();
    let status = node.terminate().unwrap();
    assert!(status.success(), "exit {status}; stderr:\n{}", node.log());
    let out = node.stdout_after_exit().join("\n");
    let watch = format!(
        "curl -N -H \"Authorization: Bearer $(cat {}/admin.token)\" {url}/digitaltwins/machine-1/events",
        node.data_dir().display()
    );
    assert!(out.contains(&watch), "the guide shows `{watch}`:\n{out}");
    assert!(out.contains("commands/reboot"), "{out}");
    assert!(out.contains("doppel stopped cleanly"), "{out}");

    // A second run on the same directory reuses the sample.
    node.restart().expect("a second demo run on the same data");
    let api = node.api();
    let (twins, _) = api.get_all("/digitaltwins").await.unwrap();
    assert_eq!(twins.len(), 6, "{twins:?}");
    assert_eq!(
        twin(&api, "machine-1").await["$metadata"]["targetSpeed"]["desiredValue"],
        2.5
    );
    all_connected(&api, &machines).await;
    let mut events = EventStream::open(&node, "/digitaltwins/machine-2/events", &node.token).await;
    let start = Instant::now();
    loop {
        let (kind, _) = events.next(DEADLINE.saturating_sub(start.elapsed())).await;
        if kind == "Microsoft.DigitalTwins.Telemetry" {
            break;
        }
    }
    drop(events);
    let status = node.terminate().unwrap();
    assert!(status.success(), "exit {status}; stderr:\n{}", node.log());
}
