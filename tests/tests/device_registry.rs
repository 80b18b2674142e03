//! The device registry: a device is bound to the twin of the same id, gets two
//! symmetric keys (generated unless given), can be disabled without losing its keys or
//! its twin's data, and is admin-only because its keys are secrets. Everything
//! survives `kill -9`.

use base64::Engine;
use doppel_tests::{interface, Node};
use reqwest::{Method, StatusCode};
use serde_json::json;

const PUMP: &str = "dtmi:doppel:test:devices:Pump;1";

fn decoded_len(key: &serde_json::Value) -> usize {
    base64::engine::general_purpose::STANDARD
        .decode(key.as_str().expect("key is a string"))
        .expect("key is base64")
        .len()
}

#[tokio::test]
async fn devices_bind_to_twins_keep_their_keys_and_survive_kill9() {
    let mut node = Node::start().expect("node");
    let api = node.api();
    api.upload_models(&json!([interface(
        PUMP,
        json!([{"@type": "Property", "name": "rpm", "schema": "integer"}])
    )]))
    .await
    .unwrap();
    api.put_twin("pump-1", &json!({"$metadata": {"$model": PUMP}, "rpm": 5}))
        .await
        .unwrap();

    // No twin, no device.
    api.put("/devices/ghost", &json!({}))
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "DigitalTwinNotFound");

    // Created with generated keys.
    let r = api.put("/devices/pump-1", &json!({})).await.unwrap();
    let created = r.expect(StatusCode::CREATED).clone();
    assert_eq!(created["status"], "enabled");
    let keys = created["authentication"]["symmetricKey"].clone();
    assert_eq!(decoded_len(&keys["primaryKey"]), 32);
    assert_eq!(decoded_len(&keys["secondaryKey"]), 32);
    assert_ne!(keys["primaryKey"], keys["secondaryKey"]);

    // Disabled under If-Match: keys and twin stay; a stale etag is refused.
    let stale = api
        .send_with(
            api.request(Method::PUT, "/devices/pump-1")
                .header("if-match", "W/\"0000000000000000\"")
                .json(&json!({"status": "disabled"})),
        )
        .await;
    stale.assert_error(StatusCode::PRECONDITION_FAILED, "PreconditionFailed");
    let r = api
        .send_with(
            api.request(Method::PUT, "/devices/pump-1")
                .header("if-match", r.etag.clone().unwrap())
                .json(&json!({"status": "disabled", "statusReason": "maintenance"})),
        )
        .await;
    let disabled = r.expect(StatusCode::OK).clone();
    assert_eq!(disabled["status"], "disabled");
    assert_eq!(disabled["statusReason"], "maintenance");
    assert_eq!(disabled["authentication"]["symmetricKey"], keys);

    // Lists never carry keys.
    let (list, _) = api.get_all("/devices").await.unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].get("authentication").is_none(), "{}", list[0]);

    // The twin cannot go while its device exists.
    api.delete("/digitaltwins/pump-1")
        .await
        .unwrap()
        .assert_error(StatusCode::CONFLICT, "DigitalTwinHasDevice");

    node.kill9().unwrap();
    node.restart().unwrap();
    let api = node.api();
    let r = api.get("/devices/pump-1").await.unwrap();
    let back = r.expect(StatusCode::OK);
    assert_eq!(back["status"], "disabled");
    assert_eq!(back["authentication"]["symmetricKey"], keys);
    assert_eq!(
        api.get("/digitaltwins/pump-1").await.unwrap().body["rpm"],
        5
    );

    api.delete("/devices/pump-1")
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);
    api.get("/devices/pump-1")
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "DeviceNotFound");
    api.delete("/digitaltwins/pump-1")
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn bad_device_requests_are_named_and_change_nothing() {
    let node = Node::start().expect("node");
    let api = node.api();
    api.upload_models(&json!([interface(PUMP, json!([]))]))
        .await
        .unwrap();
    api.put_twin("p", &json!({"$metadata": {"$model": PUMP}}))
        .await
        .unwrap();
    for (body, needle) in [
        (json!({"status": "off"}), "status"),
        (json!({"colour": "red"}), "colour"),
        (
            json!({"authentication": {"symmetricKey": {"primaryKey": "c2hvcnQ="}}}),
            "primaryKey",
        ),
        (
            json!({"authentication": {"type": "x509"}}),
            "authentication.type",
        ),
        (json!([1]), "JSON object"),
    ] {
        let r = api.put("/devices/p", &body).await.unwrap();
        r.assert_error(StatusCode::BAD_REQUEST, "InvalidArgument");
        assert!(r.text.contains(needle), "{body} → {}", r.text);
    }
    api.get("/devices/p")
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "DeviceNotFound");

    // Device keys are secrets: a writer token may not touch the registry.
    let r = api
        .post("/tokens", &json!({"name": "w", "roles": ["writer"]}))
        .await
        .unwrap();
    let writer = r.expect(StatusCode::CREATED)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let w = node.api_with(Some(&writer));
    w.put("/devices/p", &json!({}))
        .await
        .unwrap()
        .assert_error(StatusCode::FORBIDDEN, "Forbidden");
    w.get("/devices")
        .await
        .unwrap()
        .assert_error(StatusCode::FORBIDDEN, "Forbidden");
}
