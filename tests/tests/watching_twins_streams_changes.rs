//! Apps follow live twin state without polling: Server-Sent Events streams deliver
//! every durable change of one twin (`/digitaltwins/{id}/events`) or of the tenant
//! (`/events`, filtered by twin, model or type). Rejected writes produce no event, and
//! another tenant's changes never appear.

use doppel_tests::{interface, EventStream, Node};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

const MACHINE: &str = "dtmi:doppel:test:watch:Machine;1";

fn model() -> Value {
    json!([interface(
        MACHINE,
        json!([
            {"@type": "Property", "name": "speed", "schema": "double"},
            {"@type": "Telemetry", "name": "temp", "schema": "double"},
            {"@type": "Relationship", "name": "feeds"}
        ])
    )])
}

#[tokio::test]
async fn a_twin_stream_delivers_its_durable_changes_in_order_and_nothing_else() {
    let node = Node::start().expect("node");
    let api = node.api();
    api.upload_models(&model()).await.unwrap();
    for id in ["m1", "m2"] {
        api.put_twin(id, &json!({"$metadata": {"$model": MACHINE}, "speed": 1.0}))
            .await
            .unwrap();
    }
    let token = api.token.clone().unwrap();
    let mut events = EventStream::open(&node, "/digitaltwins/m1/events", &token).await;

    // A rejected patch (wrong type) and a change of another twin: no event here.
    api.patch(
        "/digitaltwins/m1",
        &json!([{"op": "replace", "path": "/speed", "value": "fast"}]),
    )
    .await
    .unwrap()
    .assert_error(StatusCode::BAD_REQUEST, "ValidationFailed");
    api.patch(
        "/digitaltwins/m2",
        &json!([{"op": "replace", "path": "/speed", "value": 9.0}]),
    )
    .await
    .unwrap()
    .expect(StatusCode::NO_CONTENT);

    let patch = json!([{"op": "replace", "path": "/speed", "value": 2.5}]);
    let r = api.patch("/digitaltwins/m1", &patch).await.unwrap();
    r.expect(StatusCode::NO_CONTENT);
    let (kind, e) = events.next(Duration::from_secs(10)).await;
    assert_eq!(kind, "Microsoft.DigitalTwins.Twin.Update");
    assert_eq!(e["twinId"], "m1");
    assert_eq!(e["model"], MACHINE);
    assert_eq!(e["patch"], patch);
    assert_eq!(e["data"]["speed"], 2.5);
    assert_eq!(e["data"]["$etag"].as_str(), r.etag.as_deref());

    api.post("/digitaltwins/m1/telemetry", &json!({"temp": 71.5}))
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);
    let (kind, e) = events.next(Duration::from_secs(10)).await;
    assert_eq!(kind, "Microsoft.DigitalTwins.Telemetry");
    assert_eq!(e["data"], json!({"temp": 71.5}));

    api.put(
        "/digitaltwins/m1/relationships/r1",
        &json!({"$targetId": "m2", "$relationshipName": "feeds"}),
    )
    .await
    .unwrap()
    .expect(StatusCode::OK);
    let (kind, e) = events.next(Duration::from_secs(10)).await;
    assert_eq!(kind, "Microsoft.DigitalTwins.Relationship.Create");
    assert_eq!(e["data"]["$targetId"], "m2");
}

#[tokio::test]
async fn the_tenant_stream_filters_by_type_and_never_shows_other_tenants() {
    let node = Node::start().expect("node");
    let api = node.api();
    api.upload_models(&model()).await.unwrap();
    // A second tenant with its own admin, model and twin of the same id.
    let r = api
        .post(
            "/tokens",
            &json!({"name": "acme-admin", "roles": ["admin"], "tenant": "acme"}),
        )
        .await
        .unwrap();
    let acme_token = r.expect(StatusCode::CREATED)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let acme = node.api_with(Some(&acme_token));
    acme.upload_models(&model()).await.unwrap();

    let token = api.token.clone().unwrap();
    let mut creates = EventStream::open(
        &node,
        "/events?type=Microsoft.DigitalTwins.Twin.Create",
        &token,
    )
    .await;
    let mut acme_all = EventStream::open(&node, "/events", &acme_token).await;

    acme.put_twin(
        "m1",
        &json!({"$metadata": {"$model": MACHINE}, "speed": 5.0}),
    )
    .await
    .unwrap();
    api.put_twin("m1", &json!({"$metadata": {"$model": MACHINE}}))
        .await
        .unwrap();
    api.patch(
        "/digitaltwins/m1",
        &json!([{"op": "add", "path": "/speed", "value": 3.0}]),
    )
    .await
    .unwrap()
    .expect(StatusCode::NO_CONTENT);
    api.put_twin("m3", &json!({"$metadata": {"$model": MACHINE}}))
        .await
        .unwrap();

    // default's stream: its two creates, not acme's create, not the update.
    let (kind, e) = creates.next(Duration::from_secs(10)).await;
    assert_eq!(
        (kind.as_str(), &e["twinId"]),
        ("Microsoft.DigitalTwins.Twin.Create", &json!("m1"))
    );
    assert!(
        e["data"]["speed"].is_null(),
        "the create of default's m1, not acme's: {e}"
    );
    let (_, e) = creates.next(Duration::from_secs(10)).await;
    assert_eq!(e["twinId"], "m3");
    // acme's stream: exactly its own create, then nothing of default's.
    let (kind, e) = acme_all.next(Duration::from_secs(10)).await;
    assert_eq!(
        (kind.as_str(), &e["twinId"]),
        ("Microsoft.DigitalTwins.Twin.Create", &json!("m1"))
    );
    acme.put_twin("m9", &json!({"$metadata": {"$model": MACHINE}}))
        .await
        .unwrap();
    let (_, e) = acme_all.next(Duration::from_secs(10)).await;
    assert_eq!(e["twinId"], "m9", "default's changes must not reach acme");
}

#[tokio::test]
async fn streams_need_a_token() {
    let node = Node::start().expect("node");
    node.api_with(None)
        .get("/events")
        .await
        .unwrap()
        .assert_error(StatusCode::UNAUTHORIZED, "Unauthorized");
}

#[tokio::test]
async fn open_streams_do_not_hold_up_a_graceful_stop() {
    let mut node = Node::start().expect("node");
    let token = node.api().token.clone().unwrap();
    let _watcher = EventStream::open(&node, "/events", &token).await;
    let started = std::time::Instant::now();
    let status = node.terminate().expect("stops");
    assert!(status.success(), "{status}");
    // The server's grace period for open connections is 10 s; streams end at once.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}
