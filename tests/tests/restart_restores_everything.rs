//! Specification: a node stopped gracefully (SIGTERM) exits 0 saying so, and started
//! again on the same data directory serves exactly the state it had — models (with
//! their decommissioned flags), twins (with their ETags and metadata), components,
//! relationships both ways, deletions, tokens and revocations, in every tenant — and
//! accepts writes conditioned on the ETags handed out before the stop.

use doppel_tests::{interface, visible_state, Node};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const MOTOR: &str = "dtmi:doppel:test:restart:Motor;1";
const MACHINE: &str = "dtmi:doppel:test:restart:Machine;1";
const PRESS: &str = "dtmi:doppel:test:restart:Press;1";
const OLD: &str = "dtmi:doppel:test:restart:Old;1";

fn models() -> Value {
    let mut press = interface(
        PRESS,
        json!([{"@type": "Property", "name": "force", "schema": "double"}]),
    );
    press["extends"] = json!(MACHINE);
    json!([
        interface(
            MOTOR,
            json!([{"@type": "Property", "name": "rpm", "schema": "integer"}])
        ),
        interface(
            MACHINE,
            json!([
                {"@type": "Property", "name": "label", "schema": "string"},
                {"@type": "Component", "name": "motor", "schema": MOTOR},
                {
                    "@type": "Relationship",
                    "name": "feeds",
                    "target": MACHINE,
                    "properties": [{"@type": "Property", "name": "rate", "schema": "double"}]
                },
            ])
        ),
        press,
        interface(OLD, json!([])),
    ])
}

/// Builds a varied state in tenant `default` and tenant `acme`; returns the acme
/// admin token and a revoked token.
async fn build_state(node: &Node) -> (String, String) {
    let api = node.api();
    api.upload_models(&models()).await.unwrap();
    api.patch(
        &format!("/models/{OLD}"),
        &json!([{"op": "replace", "path": "/decommissioned", "value": true}]),
    )
    .await
    .unwrap()
    .expect(StatusCode::NO_CONTENT);
    for i in 0..20 {
        let model = if i % 2 == 0 { MACHINE } else { PRESS };
        let mut twin = json!({
            "$metadata": {"$model": model},
            "label": format!("machine {i}"),
            "motor": {"$metadata": {}, "rpm": 1000 + i},
        });
        if model == PRESS {
            twin["force"] = json!(f64::from(i) * 1.5);
        }
        api.put_twin(&format!("m{i:02}"), &twin).await.unwrap();
    }
    api.patch(
        "/digitaltwins/m03",
        &json!([{"op": "replace", "path": "/motor/rpm", "value": 7}]),
    )
    .await
    .unwrap()
    .expect(StatusCode::NO_CONTENT);
    for i in 0..19 {
        let r = api
            .put(
                &format!("/digitaltwins/m{i:02}/relationships/to-next"),
                &json!({
                    "$targetId": format!("m{:02}", i + 1),
                    "$relationshipName": "feeds",
                    "rate": f64::from(i) / 2.0,
                }),
            )
            .await
            .unwrap();
        r.expect(StatusCode::OK);
    }
    // Deletions must stay deleted.
    api.delete("/digitaltwins/m18/relationships/to-next")
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);
    api.delete("/digitaltwins/m19")
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);

    let acme = api
        .post(
            "/tokens",
            &json!({"name": "acme", "roles": ["admin"], "tenant": "acme"}),
        )
        .await
        .unwrap();
    let acme_token = acme.expect(StatusCode::CREATED)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let acme_api = node.api_with(Some(&acme_token));
    acme_api.upload_models(&models()).await.unwrap();
    acme_api
        .put_twin(
            "m00",
            &json!({"$metadata": {"$model": PRESS}, "force": 99.0}),
        )
        .await
        .unwrap();
    let revoked = api
        .post("/tokens", &json!({"name": "gone", "roles": ["reader"]}))
        .await
        .unwrap();
    let revoked = revoked.expect(StatusCode::CREATED).clone();
    api.delete(&format!("/tokens/{}", revoked["id"].as_str().unwrap()))
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);
    (acme_token, revoked["token"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_graceful_restart_serves_exactly_the_state_before_it() {
    let mut node = Node::start().expect("node");
    let (acme_token, revoked_token) = build_state(&node).await;
    let admin_token = node.token.clone();
    let before_default = visible_state(&node.api()).await;
    let before_acme = visible_state(&node.api_with(Some(&acme_token))).await;
    assert_eq!(before_default["twins"].as_array().unwrap().len(), 19);
    assert_eq!(before_acme["twins"].as_array().unwrap().len(), 1);
    let m05_etag = node
        .api()
        .get("/digitaltwins/m05")
        .await
        .unwrap()
        .etag
        .expect("etag");

    let status = node.terminate().expect("SIGTERM stops the node");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let said = node.stdout_after_exit();
    assert!(
        said.iter().any(|l| l.contains("stopped cleanly")),
        "stdout after SIGTERM: {said:?}"
    );

    node.restart().expect("restart");
    assert_eq!(node.token, admin_token);
    assert_eq!(visible_state(&node.api()).await, before_default);
    assert_eq!(
        visible_state(&node.api_with(Some(&acme_token))).await,
        before_acme
    );
    node.api_with(Some(&revoked_token))
        .get("/models")
        .await
        .unwrap()
        .assert_error(StatusCode::UNAUTHORIZED, "Unauthorized");

    // The node carries on where it stopped: old ETags still match, rules still hold.
    let api = node.api();
    api.send_with(
        api.request(Method::PATCH, "/digitaltwins/m05")
            .header("If-Match", &m05_etag)
            .header("Content-Type", "application/json-patch+json")
            .body(json!([{"op": "replace", "path": "/label", "value": "after"}]).to_string()),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    api.put("/digitaltwins/new", &json!({"$metadata": {"$model": OLD}}))
        .await
        .unwrap()
        .assert_error(StatusCode::BAD_REQUEST, "ModelDecommissioned");
    api.delete(&format!("/models/{MACHINE}"))
        .await
        .unwrap()
        .assert_error(StatusCode::CONFLICT, "ModelInUse");
    api.delete("/digitaltwins/m01")
        .await
        .unwrap()
        .assert_error(StatusCode::CONFLICT, "DigitalTwinHasRelationships");
    api.put_twin("m19", &json!({"$metadata": {"$model": MACHINE}}))
        .await
        .expect("a deleted twin's id is free again");
}

#[tokio::test]
async fn a_node_restarted_twice_in_a_row_is_unchanged() {
    let mut node = Node::start().expect("node");
    build_state(&node).await;
    let before = visible_state(&node.api()).await;
    for round in 1..=2 {
        let status = node.terminate().expect("SIGTERM");
        assert!(status.success(), "round {round}: {status}");
        node.restart().expect("restart");
        assert_eq!(visible_state(&node.api()).await, before, "round {round}");
    }
}
