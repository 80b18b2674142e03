//! Specification: every kind of bad request gets the right status and an ADT-style
//! error code, and leaves the node's state exactly as it was — no half-stored twin,
//! no model from a rejected batch, no relationship from a refused PUT.
//!
//! Each test snapshots the visible state (models with definitions, twins, and the
//! relationships of the twins involved) before the bad requests and compares after.

use doppel_tests::{interface, visible_state, Api, Node};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const MACHINE: &str = "dtmi:doppel:test:bad:Machine;1";
const PART: &str = "dtmi:doppel:test:bad:Part;1";

/// A node with two models and twins `m1` (a Machine) and `p1` (a Part).
async fn seeded(extra: &[&str]) -> (Node, Api) {
    let node = Node::start_with(extra).expect("node");
    let api = node.api();
    api.upload_models(&json!([
        interface(
            MACHINE,
            json!([
                {"@type": "Property", "name": "speed", "schema": "integer"},
                {"@type": "Property", "name": "label", "schema": "string"},
                {"@type": "Relationship", "name": "feeds", "target": PART},
            ])
        ),
        interface(
            PART,
            json!([{"@type": "Property", "name": "weight", "schema": "double"}])
        ),
    ]))
    .await
    .expect("models");
    api.put_twin(
        "m1",
        &json!({"$metadata": {"$model": MACHINE}, "speed": 10, "label": "press"}),
    )
    .await
    .expect("m1");
    api.put_twin("p1", &json!({"$metadata": {"$model": PART}, "weight": 1.5}))
        .await
        .expect("p1");
    (node, api)
}

/// Sends a raw body with a Content-Type.
async fn raw(api: &Api, method: Method, path: &str, ct: &str, body: &str) -> doppel_tests::Resp {
    api.send_with(
        api.request(method, path)
            .header("Content-Type", ct)
            .body(body.to_owned()),
    )
    .await
}

#[tokio::test]
async fn malformed_json_is_400_invalid_argument() {
    let (_node, api) = seeded(&[]).await;
    let before = visible_state(&api).await;
    let json = "application/json";
    for (method, path, body) in [
        (Method::POST, "/models", "[{\"@id\": "),
        (Method::POST, "/models", "{bad"),
        (Method::PUT, "/digitaltwins/m2", "{\"$metadata\": }"),
        (Method::PUT, "/digitaltwins/m1", "not json at all"),
        (Method::PATCH, "/digitaltwins/m1", "[{\"op\":\"replace\","),
        (Method::PUT, "/digitaltwins/m1/relationships/r", "{"),
        (Method::POST, "/digitaltwins/m1/telemetry", "}"),
        (Method::POST, "/tokens", "{\"name\": \"x\","),
        (Method::PUT, "/digitaltwins/m2", ""),
    ] {
        let r = raw(&api, method.clone(), path, json, body).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body:?}: {}",
            r.text
        );
        r.assert_error(StatusCode::BAD_REQUEST, "InvalidArgument");
    }
    // Well-formed JSON of the wrong shape is refused too.
    for (method, path, body) in [
        (Method::POST, "/models", "42"),
        (Method::PUT, "/digitaltwins/m2", "[1, 2]"),
        (Method::PATCH, "/digitaltwins/m1", "{\"op\": \"replace\"}"),
        (
            Method::PATCH,
            "/digitaltwins/m1",
            "[{\"op\": \"frobnicate\", \"path\": \"/speed\"}]",
        ),
    ] {
        let r = raw(&api, method.clone(), path, json, body).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body:?}: {}",
            r.text
        );
        r.assert_error(StatusCode::BAD_REQUEST, "InvalidArgument");
    }
    assert_eq!(visible_state(&api).await, before);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_one_under_it_is_accepted() {
    let (_node, api) = seeded(&["--max-body-bytes", "2048"]).await;
    let before = visible_state(&api).await;
    let big = "x".repeat(3000);
    api.put(
        "/digitaltwins/m2",
        &json!({"$metadata": {"$model": MACHINE}, "label": big}),
    )
    .await
    .unwrap()
    .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge");
    api.patch(
        "/digitaltwins/m1",
        &json!([{"op": "replace", "path": "/label", "value": big}]),
    )
    .await
    .unwrap()
    .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge");
    let many: Vec<Value> = (0..40)
        .map(|i| interface(&format!("dtmi:doppel:test:bad:Big{i};1"), json!([])))
        .collect();
    api.post("/models", &Value::Array(many))
        .await
        .unwrap()
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge");
    assert_eq!(visible_state(&api).await, before);

    // The limit is the limit: a body just under it is fine.
    let fits = json!({"$metadata": {"$model": MACHINE}, "label": "y".repeat(1900)});
    assert!(fits.to_string().len() < 2048);
    api.put_twin("m2", &fits)
        .await
        .expect("a body under the limit");
}

#[tokio::test]
async fn illegal_twin_and_relationship_ids_are_400() {
    let (_node, api) = seeded(&[]).await;
    let before = visible_state(&api).await;
    let body = json!({"$metadata": {"$model": PART}});
    let too_long = "x".repeat(129);
    for id in [
        "a%20b",
        "%24dtId",
        "$x",
        "tab%09id",
        "a%2Fb",
        "a%23b",
        "a%25b",
        too_long.as_str(),
    ] {
        let r = api
            .put(&format!("/digitaltwins/{id}"), &body)
            .await
            .unwrap();
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "PUT twin '{id}': {}",
            r.text
        );
        r.assert_error(StatusCode::BAD_REQUEST, "InvalidArgument");
    }
    let rel = json!({"$targetId": "p1", "$relationshipName": "feeds"});
    for id in ["a%20b", "$r"] {
        let r = api
            .put(&format!("/digitaltwins/m1/relationships/{id}"), &rel)
            .await
            .unwrap();
        r.assert_error(StatusCode::BAD_REQUEST, "InvalidArgument");
    }
    // An illegal target id is refused the same way.
    api.put(
        "/digitaltwins/m1/relationships/r1",
        &json!({"$targetId": "p 1", "$relationshipName": "feeds"}),
    )
    .await
    .unwrap()
    .assert_error(StatusCode::BAD_REQUEST, "InvalidArgument");
    // $dtId in the body must agree with the path.
    api.put(
        "/digitaltwins/p2",
        &json!({"$dtId": "p3", "$metadata": {"$model": PART}}),
    )
    .await
    .unwrap()
    .assert_error(StatusCode::BAD_REQUEST, "InvalidArgument");
    assert_eq!(visible_state(&api).await, before);
}

#[tokio::test]
async fn a_patch_or_replace_violating_the_model_leaves_the_twin_unchanged() {
    let (_node, api) = seeded(&[]).await;
    let before_twin = api.get("/digitaltwins/m1").await.unwrap();
    let etag = before_twin.etag.clone().expect("etag");
    let before = visible_state(&api).await;
    for patch in [
        json!([{"op": "replace", "path": "/speed", "value": "fast"}]),
        json!([{"op": "replace", "path": "/speed", "value": 1.5}]),
        json!([{"op": "add", "path": "/color", "value": "red"}]),
        // The valid first op must not be applied when the second fails.
        json!([
            {"op": "replace", "path": "/speed", "value": 11},
            {"op": "replace", "path": "/label", "value": 7},
        ]),
    ] {
        let r = api.patch("/digitaltwins/m1", &patch).await.unwrap();
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{patch}: {}", r.text);
        r.assert_error(StatusCode::BAD_REQUEST, "ValidationFailed");
    }
    for body in [
        json!({"$metadata": {"$model": MACHINE}, "speed": "fast"}),
        json!({"$metadata": {"$model": MACHINE}, "speed": 12, "color": "red"}),
    ] {
        api.put("/digitaltwins/m1", &body)
            .await
            .unwrap()
            .assert_error(StatusCode::BAD_REQUEST, "ValidationFailed");
    }
    let after = api.get("/digitaltwins/m1").await.unwrap();
    assert_eq!(after.etag.as_deref(), Some(etag.as_str()), "the ETag moved");
    assert_eq!(after.body, before_twin.body);
    assert_eq!(after.body["speed"], 10);
    assert_eq!(visible_state(&api).await, before);
}

#[tokio::test]
async fn unknown_models_and_twins_are_named_as_such() {
    let (_node, api) = seeded(&[]).await;
    let before = visible_state(&api).await;
    api.put(
        "/digitaltwins/ghost",
        &json!({"$metadata": {"$model": "dtmi:doppel:test:bad:Nope;1"}}),
    )
    .await
    .unwrap()
    .assert_error(StatusCode::BAD_REQUEST, "ModelNotFound");
    // Re-modelling an existing twin to an unknown model changes nothing either.
    api.put(
        "/digitaltwins/m1",
        &json!({"$metadata": {"$model": "dtmi:doppel:test:bad:Nope;1"}}),
    )
    .await
    .unwrap()
    .assert_error(StatusCode::BAD_REQUEST, "ModelNotFound");
    api.put("/digitaltwins/ghost", &json!({"speed": 1}))
        .await
        .unwrap()
        .assert_error(StatusCode::BAD_REQUEST, "InvalidArgument");

    api.get("/digitaltwins/ghost")
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "DigitalTwinNotFound");
    api.patch(
        "/digitaltwins/ghost",
        &json!([{"op": "add", "path": "/speed", "value": 1}]),
    )
    .await
    .unwrap()
    .assert_error(StatusCode::NOT_FOUND, "DigitalTwinNotFound");
    api.delete("/digitaltwins/ghost")
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "DigitalTwinNotFound");
    api.put(
        "/digitaltwins/ghost/relationships/r1",
        &json!({"$targetId": "p1", "$relationshipName": "feeds"}),
    )
    .await
    .unwrap()
    .assert_error(StatusCode::NOT_FOUND, "DigitalTwinNotFound");
    api.get("/digitaltwins/ghost/relationships")
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "DigitalTwinNotFound");
    api.get("/digitaltwins/ghost/incomingrelationships")
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "DigitalTwinNotFound");
    api.get("/digitaltwins/m1/relationships/nope")
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "RelationshipNotFound");
    api.get("/models/dtmi:doppel:test:bad:Nope;1")
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "ModelNotFound");
    api.get("/no/such/endpoint")
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "NotFound");
    assert_eq!(visible_state(&api).await, before);
}

#[tokio::test]
async fn relationships_the_model_does_not_allow_are_refused() {
    let (_node, api) = seeded(&[]).await;
    let before = visible_state(&api).await;
    for (rel_id, body) in [
        // Not declared by the source's model.
        (
            "r1",
            json!({"$targetId": "p1", "$relationshipName": "owns"}),
        ),
        // Declared, but the target is of the wrong model.
        (
            "r2",
            json!({"$targetId": "m1", "$relationshipName": "feeds"}),
        ),
        // Declared, but the target does not exist.
        (
            "r3",
            json!({"$targetId": "p9", "$relationshipName": "feeds"}),
        ),
        // Declared, with a property the relationship does not have.
        (
            "r4",
            json!({"$targetId": "p1", "$relationshipName": "feeds", "rate": 3}),
        ),
    ] {
        let r = api
            .put(&format!("/digitaltwins/m1/relationships/{rel_id}"), &body)
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        r.assert_error(StatusCode::BAD_REQUEST, "ValidationFailed");
    }
    // A Part declares no relationships at all.
    api.put(
        "/digitaltwins/p1/relationships/r5",
        &json!({"$targetId": "m1", "$relationshipName": "feeds"}),
    )
    .await
    .unwrap()
    .assert_error(StatusCode::BAD_REQUEST, "ValidationFailed");
    assert_eq!(visible_state(&api).await, before);
}

#[tokio::test]
async fn deleting_a_model_in_use_is_409_and_keeps_it() {
    let (_node, api) = seeded(&[]).await;
    api.patch(
        &format!("/models/{PART}"),
        &json!([{"op": "replace", "path": "/decommissioned", "value": true}]),
    )
    .await
    .unwrap()
    .expect(StatusCode::NO_CONTENT);
    let before = visible_state(&api).await;
    api.delete(&format!("/models/{MACHINE}"))
        .await
        .unwrap()
        .assert_error(StatusCode::CONFLICT, "ModelInUse");
    // Decommissioning cannot be undone, and only that one patch is accepted.
    for patch in [
        json!([{"op": "replace", "path": "/decommissioned", "value": false}]),
        json!([{"op": "replace", "path": "/displayName", "value": "x"}]),
        json!([]),
    ] {
        let r = api.patch(&format!("/models/{PART}"), &patch).await.unwrap();
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{patch}: {}", r.text);
        r.assert_error(StatusCode::BAD_REQUEST, "InvalidArgument");
    }
    assert_eq!(visible_state(&api).await, before);
    api.put_twin("m2", &json!({"$metadata": {"$model": MACHINE}}))
        .await
        .expect("the model still works");
}

#[tokio::test]
async fn an_invalid_dtdl_batch_stores_none_of_its_models() {
    let (_node, api) = seeded(&[]).await;
    let before = visible_state(&api).await;
    let good = interface(
        "dtmi:doppel:test:bad:Good;1",
        json!([{"@type": "Property", "name": "x", "schema": "double"}]),
    );
    let bad_schema = interface(
        "dtmi:doppel:test:bad:BadSchema;1",
        json!([{"@type": "Property", "name": "x", "schema": "quaternion"}]),
    );
    let mut dangling = interface("dtmi:doppel:test:bad:Dangling;1", json!([]));
    dangling["extends"] = json!("dtmi:doppel:test:bad:Missing;1");
    let no_id = json!({"@context": "dtmi:dtdl:context;3", "@type": "Interface"});
    let duplicate_names = interface(
        "dtmi:doppel:test:bad:Dup;1",
        json!([
            {"@type": "Property", "name": "x", "schema": "double"},
            {"@type": "Property", "name": "x", "schema": "string"},
        ]),
    );
    for batch in [
        json!([good.clone(), bad_schema]),
        json!([good.clone(), dangling]),
        json!([good.clone(), no_id]),
        json!([good.clone(), duplicate_names]),
        json!([good.clone(), interface("not a dtmi", json!([]))]),
    ] {
        let r = api.post("/models", &batch).await.unwrap();
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{batch}: {}", r.text);
        r.assert_error(StatusCode::BAD_REQUEST, "DTDLParserError");
    }
    // A batch repeating an existing model is refused whole, too.
    api.post(
        "/models",
        &json!([good.clone(), interface(PART, json!([]))]),
    )
    .await
    .unwrap()
    .assert_error(StatusCode::CONFLICT, "ModelIdAlreadyExists");
    api.post("/models", &json!([]))
        .await
        .unwrap()
        .assert_error(StatusCode::BAD_REQUEST, "InvalidArgument");
    api.get("/models/dtmi:doppel:test:bad:Good;1")
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "ModelNotFound");
    assert_eq!(visible_state(&api).await, before);
}

#[tokio::test]
async fn bad_query_parameters_and_headers_are_400_json_errors() {
    let (_node, api) = seeded(&[]).await;
    let before = visible_state(&api).await;
    for path in [
        "/digitaltwins?maxItemsPerPage=abc",
        "/digitaltwins?maxItemsPerPage=0",
        "/digitaltwins?maxItemsPerPage=-1",
        "/digitaltwins?maxItemsPerPage=1000000",
        "/digitaltwins?continuationToken=%21%21%21",
        "/digitaltwins?continuationToken=AA",
        "/models?maxItemsPerPage=two",
        "/models?includeModelDefinition=maybe",
        "/models?continuationToken=***",
        "/digitaltwins/m1/relationships?maxItemsPerPage=x",
        "/digitaltwins/m1/incomingrelationships?continuationToken=@@",
    ] {
        let r = api.get(path).await.unwrap();
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "GET {path}: {}", r.text);
        r.assert_error(StatusCode::BAD_REQUEST, "InvalidArgument");
    }
    let r = api
        .send_with(
            api.request(Method::GET, "/digitaltwins")
                .header("max-items-per-page", "lots"),
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "InvalidArgument");

    let body = json!({"$metadata": {"$model": PART}});
    // If-None-Match supports only '*'; If-Match and If-None-Match together are refused.
    let r = api
        .send_with(
            api.request(Method::PUT, "/digitaltwins/p2")
                .header("If-None-Match", "W/\"abc\"")
                .json(&body),
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "InvalidArgument");
    let r = api
        .send_with(
            api.request(Method::PUT, "/digitaltwins/p2")
                .header("If-Match", "*")
                .header("If-None-Match", "*")
                .json(&body),
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "InvalidArgument");
    assert_eq!(visible_state(&api).await, before);
}

#[tokio::test]
async fn a_hostile_patch_is_refused_and_the_node_keeps_writing() {
    // This shape once panicked inside json-patch's undo, on the commit thread, which
    // would have stopped every later write of the node.
    let (_node, api) = seeded(&[]).await;
    let before = visible_state(&api).await;
    api.patch(
        "/digitaltwins/m1",
        &json!([
            {"op": "move", "from": "/label", "path": ""},
            {"op": "remove", "path": "/speed"}
        ]),
    )
    .await
    .unwrap()
    .assert_error(StatusCode::BAD_REQUEST, "InvalidArgument");
    assert_eq!(visible_state(&api).await, before);
    api.patch(
        "/digitaltwins/m1",
        &json!([{"op": "replace", "path": "/speed", "value": 11}]),
    )
    .await
    .unwrap()
    .expect(StatusCode::NO_CONTENT);
}
