//! Specification: the REST API behaves end to end like Azure Digital Twins' data
//! plane — models, twins with ETag preconditions, relationships (outgoing and
//! incoming, within their multiplicity), telemetry, and YAML model uploads — over a
//! real node.

use doppel_tests::{interface, Api, Node};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ROOM: &str = "dtmi:doppel:test:api:Room;1";
const SENSOR: &str = "dtmi:doppel:test:api:Sensor;1";
const VALVE: &str = "dtmi:doppel:test:api:Valve;1";

fn plant_models() -> Value {
    json!([
        interface(
            ROOM,
            json!([
                {"@type": "Property", "name": "name", "schema": "string"},
                {"@type": "Property", "name": "temperature", "schema": "double"},
                {"@type": "Telemetry", "name": "occupancy", "schema": "integer"},
                {
                    "@type": "Relationship",
                    "name": "contains",
                    "target": SENSOR,
                    "maxMultiplicity": 2,
                    "properties": [{"@type": "Property", "name": "since", "schema": "string"}]
                },
                {"@type": "Relationship", "name": "adjacentTo"}
            ])
        ),
        interface(
            SENSOR,
            json!([
                {"@type": "Property", "name": "serial", "schema": "string"},
                {"@type": "Telemetry", "name": "reading", "schema": "double"}
            ])
        ),
        interface(
            VALVE,
            json!([{"@type": "Property", "name": "open", "schema": "boolean"}])
        ),
    ])
}

async fn plant(node: &Node) -> Api {
    let api = node.api();
    api.upload_models(&plant_models()).await.expect("upload");
    api
}

fn ids_of(items: &[Value], key: &str) -> Vec<String> {
    let mut ids: Vec<String> = items
        .iter()
        .map(|v| v[key].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn models_are_uploaded_listed_page_by_page_fetched_decommissioned_and_deleted() {
    let node = Node::start().expect("node");
    let api = node.api();

    let created = api.upload_models(&plant_models()).await.expect("upload");
    let created = created.as_array().expect("array of model records");
    assert_eq!(ids_of(created, "id"), {
        let mut v = vec![ROOM.to_owned(), SENSOR.to_owned(), VALVE.to_owned()];
        v.sort();
        v
    });
    for m in created {
        assert_eq!(m["decommissioned"], false);
        assert!(m["uploadTime"].is_string(), "{m}");
        assert!(
            m.get("model").is_none(),
            "upload answers without definitions"
        );
    }

    // Uploading an existing id again is a conflict, and changes nothing.
    api.post("/models", &json!([interface(VALVE, json!([]))]))
        .await
        .unwrap()
        .assert_error(StatusCode::CONFLICT, "ModelIdAlreadyExists");

    // One model per page, following nextLink (an absolute URL on this node).
    let mut seen = Vec::new();
    let mut next = Some("/models?maxItemsPerPage=1".to_owned());
    while let Some(link) = next.take() {
        let page = api.get(&link).await.unwrap();
        let body = page.expect(StatusCode::OK);
        let value = body["value"].as_array().expect("value");
        assert_eq!(value.len(), 1, "page {link}: {body}");
        seen.extend(value.iter().cloned());
        if let Some(n) = body["nextLink"].as_str() {
            assert!(
                n.starts_with(&node.url),
                "nextLink {n} is not on {}",
                node.url
            );
            next = Some(n.to_owned());
        }
        assert!(seen.len() <= 3, "more pages than models: {seen:?}");
    }
    assert_eq!(seen.len(), 3);
    assert_eq!(ids_of(&seen, "id").len(), 3);
    assert!(seen.iter().all(|m| m.get("model").is_none()));

    let (with_defs, _) = api
        .get_all("/models?includeModelDefinition=true")
        .await
        .unwrap();
    assert_eq!(with_defs.len(), 3);
    assert!(with_defs.iter().all(|m| m["model"]["@id"] == m["id"]));

    // One model: with its definition by default, without when asked.
    let one = api.get(&format!("/models/{ROOM}")).await.unwrap();
    let one = one.expect(StatusCode::OK);
    assert_eq!(one["id"], ROOM);
    assert_eq!(one["model"]["@id"], ROOM);
    assert_eq!(one["model"]["contents"].as_array().unwrap().len(), 5);
    let bare = api
        .get(&format!("/models/{ROOM}?includeModelDefinition=false"))
        .await
        .unwrap();
    assert!(bare.expect(StatusCode::OK).get("model").is_none());
    api.get("/models/dtmi:doppel:test:api:Nothing;1")
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "ModelNotFound");

    // Decommissioned: still readable, existing twins stay, no new twins.
    api.put_twin(
        "valve-1",
        &json!({"$metadata": {"$model": VALVE}, "open": true}),
    )
    .await
    .unwrap();
    let r = api
        .patch(
            &format!("/models/{VALVE}"),
            &json!([{"op": "replace", "path": "/decommissioned", "value": true}]),
        )
        .await
        .unwrap();
    r.expect(StatusCode::NO_CONTENT);
    let valve = api.get(&format!("/models/{VALVE}")).await.unwrap();
    assert_eq!(valve.expect(StatusCode::OK)["decommissioned"], true);
    api.put(
        "/digitaltwins/valve-2",
        &json!({"$metadata": {"$model": VALVE}}),
    )
    .await
    .unwrap()
    .assert_error(StatusCode::BAD_REQUEST, "ModelDecommissioned");
    api.get("/digitaltwins/valve-2")
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "DigitalTwinNotFound");
    api.put_twin(
        "valve-1",
        &json!({"$metadata": {"$model": VALVE}, "open": false}),
    )
    .await
    .expect("an existing twin of a decommissioned model may still be replaced");

    // Delete: refused while a twin uses the model, done once it does not.
    api.delete(&format!("/models/{VALVE}"))
        .await
        .unwrap()
        .assert_error(StatusCode::CONFLICT, "ModelInUse");
    api.delete("/digitaltwins/valve-1")
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);
    api.delete(&format!("/models/{VALVE}"))
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);
    api.get(&format!("/models/{VALVE}"))
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "ModelNotFound");
    api.delete(&format!("/models/{VALVE}"))
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "ModelNotFound");
    let (left, _) = api.get_all("/models").await.unwrap();
    assert_eq!(ids_of(&left, "id").len(), 2);
}

#[tokio::test]
async fn a_model_referenced_by_another_cannot_be_deleted_before_it() {
    let node = Node::start().expect("node");
    let api = node.api();
    let base = "dtmi:doppel:test:api:Base;1";
    let derived = "dtmi:doppel:test:api:Derived;1";
    let mut d = interface(derived, json!([]));
    d["extends"] = json!(base);
    api.upload_models(&json!([interface(base, json!([])), d]))
        .await
        .unwrap();
    api.delete(&format!("/models/{base}"))
        .await
        .unwrap()
        .assert_error(StatusCode::CONFLICT, "ModelReferencesNotDeleted");
    api.delete(&format!("/models/{derived}"))
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);
    api.delete(&format!("/models/{base}"))
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn twins_are_created_read_patched_and_deleted_under_etag_preconditions() {
    let node = Node::start().expect("node");
    let api = plant(&node).await;
    let body = json!({"$metadata": {"$model": ROOM}, "name": "Hall", "temperature": 20.5});

    // Create only if absent.
    let created = api
        .send_with(
            api.request(Method::PUT, "/digitaltwins/room-1")
                .header("If-None-Match", "*")
                .json(&body),
        )
        .await;
    let twin = created.expect(StatusCode::OK).clone();
    let etag1 = created.etag.clone().expect("ETag header");
    assert_eq!(twin["$dtId"], "room-1");
    assert_eq!(twin["$etag"], etag1.as_str());
    assert_eq!(twin["$metadata"]["$model"], ROOM);
    assert_eq!(twin["name"], "Hall");
    assert_eq!(twin["temperature"], 20.5);
    assert!(twin["$metadata"]["temperature"]["lastUpdateTime"].is_string());

    let again = api
        .send_with(
            api.request(Method::PUT, "/digitaltwins/room-1")
                .header("If-None-Match", "*")
                .json(&json!({"$metadata": {"$model": ROOM}, "name": "Other"})),
        )
        .await;
    again.assert_error(StatusCode::PRECONDITION_FAILED, "PreconditionFailed");

    let read = api.get("/digitaltwins/room-1").await.unwrap();
    assert_eq!(read.expect(StatusCode::OK), &twin);
    assert_eq!(read.etag.as_deref(), Some(etag1.as_str()));

    // A patch against a stale ETag is refused and changes nothing.
    let stale = api
        .send_with(
            api.request(Method::PATCH, "/digitaltwins/room-1")
                .header("If-Match", "W/\"0000000000000000\"")
                .header("Content-Type", "application/json-patch+json")
                .body(
                    json!([{"op": "replace", "path": "/temperature", "value": 99.0}]).to_string(),
                ),
        )
        .await;
    stale.assert_error(StatusCode::PRECONDITION_FAILED, "PreconditionFailed");
    let read = api.get("/digitaltwins/room-1").await.unwrap();
    assert_eq!(read.expect(StatusCode::OK), &twin);

    // With the current ETag it applies, atomically, and the ETag moves on.
    let patched = api
        .send_with(
            api.request(Method::PATCH, "/digitaltwins/room-1")
                .header("If-Match", &etag1)
                .header("Content-Type", "application/json-patch+json")
                .body(
                    json!([
                        {"op": "replace", "path": "/temperature", "value": 22.0},
                        {"op": "remove", "path": "/name"},
                    ])
                    .to_string(),
                ),
        )
        .await;
    patched.expect(StatusCode::NO_CONTENT);
    let etag2 = patched.etag.clone().expect("PATCH answers the new ETag");
    assert_ne!(etag2, etag1);
    let read = api.get("/digitaltwins/room-1").await.unwrap();
    let now = read.expect(StatusCode::OK);
    assert_eq!(now["temperature"], 22.0);
    assert!(now.get("name").is_none(), "{now}");
    assert_eq!(now["$etag"], etag2.as_str());
    assert_eq!(read.etag.as_deref(), Some(etag2.as_str()));

    // add puts a property back; a test op that fails rejects the whole patch.
    api.patch(
        "/digitaltwins/room-1",
        &json!([{"op": "add", "path": "/name", "value": "Hall B"}]),
    )
    .await
    .unwrap()
    .expect(StatusCode::NO_CONTENT);
    let failed_test = api
        .patch(
            "/digitaltwins/room-1",
            &json!([
                {"op": "replace", "path": "/temperature", "value": 30.0},
                {"op": "test", "path": "/name", "value": "not the name"},
            ]),
        )
        .await
        .unwrap();
    assert_eq!(
        failed_test.status,
        StatusCode::BAD_REQUEST,
        "{}",
        failed_test.text
    );
    let read = api.get("/digitaltwins/room-1").await.unwrap();
    let now = read.expect(StatusCode::OK).clone();
    assert_eq!(now["name"], "Hall B");
    assert_eq!(now["temperature"], 22.0);
    let etag3 = read.etag.clone().unwrap();

    // Listing, with and without a model filter.
    api.put_twin("sensor-1", &json!({"$metadata": {"$model": SENSOR}}))
        .await
        .unwrap();
    let (all, _) = api.get_all("/digitaltwins").await.unwrap();
    assert_eq!(ids_of(&all, "$dtId"), vec!["room-1", "sensor-1"]);
    let (rooms, _) = api
        .get_all(&format!("/digitaltwins?model={}", urlenc(ROOM)))
        .await
        .unwrap();
    assert_eq!(ids_of(&rooms, "$dtId"), vec!["room-1"]);
    let (paged, pages) = api
        .get_all("/digitaltwins?maxItemsPerPage=1")
        .await
        .unwrap();
    assert_eq!(ids_of(&paged, "$dtId"), vec!["room-1", "sensor-1"]);
    assert_eq!(pages, 2);

    // Delete under a precondition.
    api.send_with(
        api.request(Method::DELETE, "/digitaltwins/room-1")
            .header("If-Match", &etag1),
    )
    .await
    .assert_error(StatusCode::PRECONDITION_FAILED, "PreconditionFailed");
    api.get("/digitaltwins/room-1")
        .await
        .unwrap()
        .expect(StatusCode::OK);
    api.send_with(
        api.request(Method::DELETE, "/digitaltwins/room-1")
            .header("If-Match", &etag3),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    api.get("/digitaltwins/room-1")
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "DigitalTwinNotFound");
    api.delete("/digitaltwins/room-1")
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "DigitalTwinNotFound");
}

#[tokio::test]
async fn relationships_link_twins_both_ways_within_their_multiplicity() {
    let node = Node::start().expect("node");
    let api = plant(&node).await;
    for (id, model) in [
        ("room", ROOM),
        ("room-2", ROOM),
        ("s1", SENSOR),
        ("s2", SENSOR),
        ("s3", SENSOR),
    ] {
        api.put_twin(id, &json!({"$metadata": {"$model": model}}))
            .await
            .unwrap();
    }
    let rel = |target: &str, name: &str| json!({"$targetId": target, "$relationshipName": name});

    let mut r1 = rel("s1", "contains");
    r1["since"] = json!("2024-01-01");
    let put = api
        .put("/digitaltwins/room/relationships/r1", &r1)
        .await
        .unwrap();
    let got = put.expect(StatusCode::OK).clone();
    assert_eq!(got["$relationshipId"], "r1");
    assert_eq!(got["$sourceId"], "room");
    assert_eq!(got["$targetId"], "s1");
    assert_eq!(got["$relationshipName"], "contains");
    assert_eq!(got["since"], "2024-01-01");
    assert_eq!(got["$etag"].as_str(), put.etag.as_deref());
    let read = api
        .get("/digitaltwins/room/relationships/r1")
        .await
        .unwrap();
    assert_eq!(read.expect(StatusCode::OK), &got);

    api.put(
        "/digitaltwins/room/relationships/r2",
        &rel("s2", "contains"),
    )
    .await
    .unwrap()
    .expect(StatusCode::OK);
    api.put(
        "/digitaltwins/room/relationships/next-door",
        &rel("room-2", "adjacentTo"),
    )
    .await
    .unwrap()
    .expect(StatusCode::OK);

    // maxMultiplicity 2: a third 'contains' is refused; replacing an existing one is not.
    api.put(
        "/digitaltwins/room/relationships/r3",
        &rel("s3", "contains"),
    )
    .await
    .unwrap()
    .assert_error(StatusCode::BAD_REQUEST, "ValidationFailed");
    api.get("/digitaltwins/room/relationships/r3")
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "RelationshipNotFound");
    api.put(
        "/digitaltwins/room/relationships/r2",
        &rel("s3", "contains"),
    )
    .await
    .unwrap()
    .expect(StatusCode::OK);
    // The target must be of the declared model.
    api.put(
        "/digitaltwins/room/relationships/bad",
        &rel("room-2", "contains"),
    )
    .await
    .unwrap()
    .assert_error(StatusCode::BAD_REQUEST, "ValidationFailed");

    let (out, _) = api
        .get_all("/digitaltwins/room/relationships")
        .await
        .unwrap();
    assert_eq!(
        ids_of(&out, "$relationshipId"),
        vec!["next-door", "r1", "r2"]
    );
    let (contains, _) = api
        .get_all("/digitaltwins/room/relationships?relationshipName=contains")
        .await
        .unwrap();
    assert_eq!(ids_of(&contains, "$relationshipId"), vec!["r1", "r2"]);
    let (paged, pages) = api
        .get_all("/digitaltwins/room/relationships?maxItemsPerPage=1")
        .await
        .unwrap();
    assert_eq!(paged.len(), 3);
    assert_eq!(pages, 3);

    // Incoming: s3 is now the target of r2, s2 of nothing.
    let (into_s3, _) = api
        .get_all("/digitaltwins/s3/incomingrelationships")
        .await
        .unwrap();
    assert_eq!(into_s3.len(), 1, "{into_s3:?}");
    assert_eq!(into_s3[0]["$relationshipId"], "r2");
    assert_eq!(into_s3[0]["$sourceId"], "room");
    assert_eq!(into_s3[0]["$relationshipName"], "contains");
    assert_eq!(
        into_s3[0]["$relationshipLink"],
        "/digitaltwins/room/relationships/r2"
    );
    let (into_s2, _) = api
        .get_all("/digitaltwins/s2/incomingrelationships")
        .await
        .unwrap();
    assert!(into_s2.is_empty(), "{into_s2:?}");

    // A twin with relationships cannot be deleted; its relationships can.
    api.delete("/digitaltwins/s1")
        .await
        .unwrap()
        .assert_error(StatusCode::CONFLICT, "DigitalTwinHasRelationships");
    api.delete("/digitaltwins/room")
        .await
        .unwrap()
        .assert_error(StatusCode::CONFLICT, "DigitalTwinHasRelationships");
    api.delete("/digitaltwins/room/relationships/r1")
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);
    api.get("/digitaltwins/room/relationships/r1")
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "RelationshipNotFound");
    let (into_s1, _) = api
        .get_all("/digitaltwins/s1/incomingrelationships")
        .await
        .unwrap();
    assert!(into_s1.is_empty(), "{into_s1:?}");
    api.delete("/digitaltwins/s1")
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);
    // With r1 gone, a second 'contains' fits again.
    api.put(
        "/digitaltwins/room/relationships/r3",
        &rel("s2", "contains"),
    )
    .await
    .unwrap()
    .expect(StatusCode::OK);
}

#[tokio::test]
async fn telemetry_is_accepted_when_it_matches_the_twins_model() {
    let node = Node::start().expect("node");
    let api = plant(&node).await;
    api.put_twin("s1", &json!({"$metadata": {"$model": SENSOR}}))
        .await
        .unwrap();
    let before = api.get("/digitaltwins/s1").await.unwrap();

    api.post("/digitaltwins/s1/telemetry", &json!({"reading": 21.5}))
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);
    api.send_with(
        api.request(Method::POST, "/digitaltwins/s1/telemetry")
            .header("Dt-Timestamp", "2024-05-01T12:00:00Z")
            .json(&json!({"reading": 22})),
    )
    .await
    .expect(StatusCode::NO_CONTENT);

    api.post("/digitaltwins/s1/telemetry", &json!({"reading": "warm"}))
        .await
        .unwrap()
        .assert_error(StatusCode::BAD_REQUEST, "ValidationFailed");
    api.post("/digitaltwins/s1/telemetry", &json!({"humidity": 40}))
        .await
        .unwrap()
        .assert_error(StatusCode::BAD_REQUEST, "ValidationFailed");
    api.send_with(
        api.request(Method::POST, "/digitaltwins/s1/telemetry")
            .header("Dt-Timestamp", "yesterday")
            .json(&json!({"reading": 1.0})),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "InvalidArgument");
    api.post("/digitaltwins/ghost/telemetry", &json!({"reading": 1.0}))
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "DigitalTwinNotFound");

    // Telemetry is history, not state: the twin itself is untouched.
    let after = api.get("/digitaltwins/s1").await.unwrap();
    assert_eq!(after.expect(StatusCode::OK), &before.body);
}

#[tokio::test]
async fn models_may_be_uploaded_as_yaml() {
    let node = Node::start().expect("node");
    let api = node.api();
    let yaml = r#"
- "@context": dtmi:dtdl:context;3
  "@id": dtmi:doppel:test:api:Tank;1
  "@type": Interface
  displayName: Tank
  contents:
    - "@type": Property
      name: level
      schema: double
    - "@type": Telemetry
      name: flow
      schema: double
"#;
    let r = api
        .send_with(
            api.request(Method::POST, "/models")
                .header("Content-Type", "application/yaml")
                .body(yaml),
        )
        .await;
    let created = r.expect(StatusCode::CREATED);
    assert_eq!(created[0]["id"], "dtmi:doppel:test:api:Tank;1");
    assert_eq!(created[0]["displayName"]["en"], "Tank");

    let m = api
        .get("/models/dtmi:doppel:test:api:Tank;1")
        .await
        .unwrap();
    let m = m.expect(StatusCode::OK);
    assert_eq!(m["model"]["contents"][0]["name"], "level");
    let twin = api
        .put_twin(
            "tank-1",
            &json!({"$metadata": {"$model": "dtmi:doppel:test:api:Tank;1"}, "level": 0.75}),
        )
        .await
        .unwrap();
    assert_eq!(twin["level"], 0.75);
    api.post("/digitaltwins/tank-1/telemetry", &json!({"flow": 3.5}))
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);

    // Broken YAML is a 400 with the ADT error shape, and stores nothing.
    api.send_with(
        api.request(Method::POST, "/models")
            .header("Content-Type", "application/yaml")
            .body("- \"@id\": [unclosed\n"),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "InvalidArgument");
    let (models, _) = api.get_all("/models").await.unwrap();
    assert_eq!(models.len(), 1);
}

fn urlenc(s: &str) -> String {
    s.replace(':', "%3A").replace(';', "%3B")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conditional_writes_let_exactly_one_through() {
    let node = Node::start().expect("node");
    let api = plant(&node).await;
    let twin = api
        .put_twin(
            "room",
            &json!({"$metadata": {"$model": ROOM}, "temperature": -1.0}),
        )
        .await
        .unwrap();
    let etag = twin["$etag"].as_str().unwrap().to_owned();

    // 16 patches race with the same If-Match, each setting a value the twin does not
    // hold yet (a patch that changes nothing keeps the ETag): one wins, the others
    // see the winner's ETag.
    let racers: Vec<_> = (0..16)
        .map(|i| {
            let api = api.clone();
            let etag = etag.clone();
            tokio::spawn(async move {
                api.send_with(
                    api.request(Method::PATCH, "/digitaltwins/room")
                        .header("If-Match", etag)
                        .header("Content-Type", "application/json-patch+json")
                        .body(
                            json!([{"op": "replace", "path": "/temperature", "value": f64::from(i)}])
                                .to_string(),
                        ),
                )
                .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, r) in racers.into_iter().enumerate() {
        let r = r.await.unwrap();
        match r.status {
            StatusCode::NO_CONTENT => winners.push(i),
            _ => r.assert_error(StatusCode::PRECONDITION_FAILED, "PreconditionFailed"),
        }
    }
    assert_eq!(winners.len(), 1, "If-Match winners: {winners:?}");
    let now = api.get("/digitaltwins/room").await.unwrap();
    assert_eq!(now.body["temperature"], winners[0] as f64);

    // 16 creates race with If-None-Match: *: one creates, the others are refused.
    let racers: Vec<_> = (0..16)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                api.send_with(
                    api.request(Method::PUT, "/digitaltwins/new-room")
                        .header("If-None-Match", "*")
                        .json(&json!({"$metadata": {"$model": ROOM}, "temperature": f64::from(i)})),
                )
                .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, r) in racers.into_iter().enumerate() {
        let r = r.await.unwrap();
        match r.status {
            StatusCode::OK => winners.push(i),
            _ => r.assert_error(StatusCode::PRECONDITION_FAILED, "PreconditionFailed"),
        }
    }
    assert_eq!(winners.len(), 1, "If-None-Match winners: {winners:?}");
    let now = api.get("/digitaltwins/new-room").await.unwrap();
    assert_eq!(now.body["temperature"], winners[0] as f64);
}

#[tokio::test]
async fn ids_with_unusual_but_legal_characters_round_trip() {
    let node = Node::start().expect("node");
    let api = plant(&node).await;
    // Percent-encoded on the wire; ':' '@' '.' '&' '+' '=' and non-ASCII are legal.
    let ids = ["Fabrik:Linie_3.Maschine@7", "a&b=c+d", "Straße-ü", "x;y,z"];
    for id in ids {
        let path = format!("/digitaltwins/{}", urlenc_all(id));
        let r = api
            .put(&path, &json!({"$metadata": {"$model": SENSOR}}))
            .await
            .unwrap();
        assert_eq!(r.expect(StatusCode::OK)["$dtId"], id);
        let got = api.get(&path).await.unwrap();
        assert_eq!(got.expect(StatusCode::OK)["$dtId"], id);
    }
    api.put_twin("Werk:Halle@1&2", &json!({"$metadata": {"$model": ROOM}}))
        .await
        .unwrap();
    for (n, id) in ids.iter().take(2).enumerate() {
        api.put(
            &format!("/digitaltwins/Werk:Halle@1%262/relationships/r{n}"),
            &json!({"$targetId": id, "$relationshipName": "contains"}),
        )
        .await
        .unwrap()
        .expect(StatusCode::OK);
    }
    let (listed, pages) = api
        .get_all("/digitaltwins?maxItemsPerPage=1")
        .await
        .unwrap();
    assert_eq!(pages, 5);
    let mut want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    want.push("Werk:Halle@1&2".into());
    want.sort();
    assert_eq!(ids_of(&listed, "$dtId"), want);
    let (incoming, _) = api
        .get_all(&format!(
            "/digitaltwins/{}/incomingrelationships",
            urlenc_all(ids[0])
        ))
        .await
        .unwrap();
    assert_eq!(incoming.len(), 1);
    // The link must be usable as a path as it stands.
    let link = incoming[0]["$relationshipLink"].as_str().unwrap();
    let rel = api.get(link).await.unwrap();
    assert_eq!(rel.expect(StatusCode::OK)["$sourceId"], "Werk:Halle@1&2");
    let (out, pages) = api
        .get_all("/digitaltwins/Werk:Halle@1%262/relationships?maxItemsPerPage=1")
        .await
        .unwrap();
    assert_eq!((out.len(), pages), (2, 2));
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn urlenc_all(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[tokio::test]
async fn dependencies_for_lists_a_model_with_what_it_extends_and_uses() {
    let node = Node::start().expect("node");
    let api = node.api();
    let base = "dtmi:doppel:test:deps:Base;1";
    let part = "dtmi:doppel:test:deps:Part;1";
    let machine = "dtmi:doppel:test:deps:Machine;1";
    let unrelated = "dtmi:doppel:test:deps:Unrelated;1";
    let mut m = interface(
        machine,
        json!([{"@type": "Component", "name": "part", "schema": part}]),
    );
    m["extends"] = json!(base);
    api.upload_models(&json!([
        interface(base, json!([])),
        interface(part, json!([])),
        m,
        interface(unrelated, json!([]))
    ]))
    .await
    .unwrap();
    let resp = api
        .get(&format!("/models?dependenciesFor={machine}"))
        .await
        .unwrap();
    let items = resp.expect(StatusCode::OK)["value"]
        .as_array()
        .expect("value array")
        .clone();
    assert_eq!(ids_of(&items, "id"), vec![base, machine, part]);
    api.get("/models?dependenciesFor=dtmi:doppel:test:deps:Missing;1")
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "ModelNotFound");
}

/// Giving a twin a new model checks every relationship that targets it (they live on
/// their sources' shards), and afterwards relationships may target it again, whether
/// the new model was refused or taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_model_must_suit_the_relationships_targeting_the_twin() {
    let node = Node::start().expect("node");
    let api = plant(&node).await;
    let twin = |model: &str| json!({"$metadata": {"$model": model}});
    for (id, model) in [
        ("room", ROOM),
        ("room2", ROOM),
        ("s1", SENSOR),
        ("s2", SENSOR),
    ] {
        api.put_twin(id, &twin(model)).await.unwrap();
    }
    let rel = |target: &str, name: &str| json!({"$targetId": target, "$relationshipName": name});
    api.put(
        "/digitaltwins/room/relationships/c1",
        &rel("s1", "contains"),
    )
    .await
    .unwrap()
    .expect(StatusCode::OK);
    // `contains` must target a Sensor: s1 cannot become a Valve.
    let r = api.put("/digitaltwins/s1", &twin(VALVE)).await.unwrap();
    r.assert_error(StatusCode::BAD_REQUEST, "ValidationFailed");
    assert!(r.text.contains("room/c1"), "{}", r.text);
    assert_eq!(
        api.get("/digitaltwins/s1").await.unwrap().body["$metadata"]["$model"],
        SENSOR
    );
    // Refused, and relationships may target it again.
    api.put(
        "/digitaltwins/room2/relationships/c2",
        &rel("s1", "contains"),
    )
    .await
    .unwrap()
    .expect(StatusCode::OK);
    // s2 has no relationship to keep: it becomes a Valve, and can be targeted after.
    api.put("/digitaltwins/s2", &twin(VALVE))
        .await
        .unwrap()
        .expect(StatusCode::OK);
    api.put(
        "/digitaltwins/room/relationships/a1",
        &rel("s2", "adjacentTo"),
    )
    .await
    .unwrap()
    .expect(StatusCode::OK);
}
