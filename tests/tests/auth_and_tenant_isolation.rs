//! Specification: every API call needs a valid, unrevoked bearer token whose roles
//! allow it; tenants share one node but never see each other's models, twins or
//! tokens; tokens outlive restarts; the admin token file is readable by its owner
//! only.

use doppel_tests::{interface, Api, Node};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;

const PUMP: &str = "dtmi:doppel:test:auth:Pump;1";

fn pump_model(property: &str) -> Value {
    json!([interface(
        PUMP,
        json!([{"@type": "Property", "name": property, "schema": "double"}])
    )])
}

/// Creates a token with `roles` (for `tenant` if given) using `api`; asserts 201.
async fn create_token(api: &Api, name: &str, roles: &[&str], tenant: Option<&str>) -> Value {
    let mut body = json!({"name": name, "roles": roles});
    if let Some(t) = tenant {
        body["tenant"] = json!(t);
    }
    let r = api.post("/tokens", &body).await.unwrap();
    let created = r.expect(StatusCode::CREATED).clone();
    assert!(
        created["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("dpl_")),
        "{created}"
    );
    assert!(created.get("secret_sha256").is_none(), "{created}");
    created
}

fn secret(created: &Value) -> &str {
    created["token"].as_str().expect("token secret")
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401() {
    let node = Node::start().expect("node");
    let mut tampered = node.token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    // No token of its own: each request carries exactly the header under test.
    let anonymous = node.api_with(None);

    for (what, header) in [
        ("no Authorization header", None),
        (
            "not a bearer token",
            Some("Basic YWRtaW46YWRtaW4=".to_owned()),
        ),
        ("not a doppel token", Some("Bearer hunter2".to_owned())),
        (
            "unknown token id",
            Some("Bearer dpl_0123456789abcdef_00".to_owned()),
        ),
        ("wrong secret", Some(format!("Bearer {tampered}"))),
    ] {
        for (method, path) in [
            (Method::GET, "/models"),
            (Method::GET, "/digitaltwins/x"),
            (Method::PUT, "/digitaltwins/x"),
            (Method::GET, "/tokens"),
        ] {
            let mut rb = anonymous.request(method.clone(), path);
            if let Some(h) = &header {
                rb = rb.header("Authorization", h);
            }
            if method == Method::PUT {
                rb = rb.json(&json!({"$metadata": {"$model": PUMP}}));
            }
            let r = Api::send(rb).await.unwrap();
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{what}: {method} {path}: {}",
                r.text
            );
            r.assert_error(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
    }
    // Health needs no token; the real admin token works.
    let health = Api::send(anonymous.request(Method::GET, "/healthz"))
        .await
        .unwrap();
    assert_eq!(health.expect(StatusCode::OK)["status"], "ok");
    node.api()
        .get("/models")
        .await
        .unwrap()
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn a_revoked_token_stops_working_at_once() {
    let node = Node::start().expect("node");
    let admin = node.api();
    let created = create_token(&admin, "dashboard", &["reader"], None).await;
    let reader = node.api_with(Some(secret(&created)));
    reader
        .get("/digitaltwins")
        .await
        .unwrap()
        .expect(StatusCode::OK);

    let id = created["id"].as_str().unwrap();
    admin
        .delete(&format!("/tokens/{id}"))
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);
    reader
        .get("/digitaltwins")
        .await
        .unwrap()
        .assert_error(StatusCode::UNAUTHORIZED, "Unauthorized");
    admin
        .delete(&format!("/tokens/{id}"))
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "TokenNotFound");
    let (tokens, _) = admin.get_all("/tokens").await.unwrap();
    assert!(tokens.iter().all(|t| t["id"] != id), "{tokens:?}");
}

#[tokio::test]
async fn roles_limit_what_a_token_may_do() {
    let node = Node::start().expect("node");
    let admin = node.api();
    admin.upload_models(&pump_model("flow")).await.unwrap();
    admin
        .put_twin(
            "pump-1",
            &json!({"$metadata": {"$model": PUMP}, "flow": 1.0}),
        )
        .await
        .unwrap();
    let reader = node.api_with(Some(secret(
        &create_token(&admin, "r", &["reader"], None).await,
    )));
    let writer = node.api_with(Some(secret(
        &create_token(&admin, "w", &["writer"], None).await,
    )));
    let tenant_admin = node.api_with(Some(secret(
        &create_token(&admin, "a", &["admin"], None).await,
    )));
    let before = admin.get("/digitaltwins/pump-1").await.unwrap();

    // A reader reads, and nothing else.
    reader.get("/models").await.unwrap().expect(StatusCode::OK);
    reader
        .get("/digitaltwins/pump-1")
        .await
        .unwrap()
        .expect(StatusCode::OK);
    let twin = json!({"$metadata": {"$model": PUMP}, "flow": 9.0});
    let patch = json!([{"op": "replace", "path": "/flow", "value": 9.0}]);
    for r in [
        reader.put("/digitaltwins/pump-1", &twin).await.unwrap(),
        reader.put("/digitaltwins/pump-2", &twin).await.unwrap(),
        reader.patch("/digitaltwins/pump-1", &patch).await.unwrap(),
        reader.delete("/digitaltwins/pump-1").await.unwrap(),
        reader
            .post("/digitaltwins/pump-1/telemetry", &json!({"x": 1}))
            .await
            .unwrap(),
        reader
            .post(
                "/models",
                &json!([interface("dtmi:doppel:test:auth:X;1", json!([]))]),
            )
            .await
            .unwrap(),
        reader.delete(&format!("/models/{PUMP}")).await.unwrap(),
        reader.get("/tokens").await.unwrap(),
        reader
            .post("/tokens", &json!({"name": "x", "roles": ["reader"]}))
            .await
            .unwrap(),
    ] {
        r.assert_error(StatusCode::FORBIDDEN, "Forbidden");
    }

    // A writer writes, but does not manage tokens.
    writer
        .patch("/digitaltwins/pump-1", &patch)
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);
    writer
        .get("/tokens")
        .await
        .unwrap()
        .assert_error(StatusCode::FORBIDDEN, "Forbidden");
    writer
        .post("/tokens", &json!({"name": "x", "roles": ["writer"]}))
        .await
        .unwrap()
        .assert_error(StatusCode::FORBIDDEN, "Forbidden");

    // A tenant admin manages its own tenant's tokens, but without the operator role
    // it cannot reach another tenant or hand out the operator role.
    create_token(&tenant_admin, "r2", &["reader"], None).await;
    tenant_admin
        .post(
            "/tokens",
            &json!({"name": "x", "roles": ["admin"], "tenant": "acme"}),
        )
        .await
        .unwrap()
        .assert_error(StatusCode::FORBIDDEN, "Forbidden");
    tenant_admin
        .post("/tokens", &json!({"name": "x", "roles": ["operator"]}))
        .await
        .unwrap()
        .assert_error(StatusCode::FORBIDDEN, "Forbidden");
    let (tokens, _) = admin.get_all("/tokens").await.unwrap();
    let names: Vec<&str> = tokens.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(tokens.len(), 5, "admin, r, w, a, r2: {names:?}");

    // Only the writer's patch changed the twin.
    let after = admin.get("/digitaltwins/pump-1").await.unwrap();
    assert_eq!(after.body["flow"], 9.0);
    assert_ne!(after.etag, before.etag);
    reader
        .get("/digitaltwins/pump-2")
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "DigitalTwinNotFound");
    let (models, _) = admin.get_all("/models").await.unwrap();
    assert_eq!(models.len(), 1);
}

#[tokio::test]
async fn tenants_share_a_node_but_never_each_others_data() {
    let node = Node::start().expect("node");
    let default = node.api();
    // The first token has admin + operator: it may create a token for a new tenant.
    let acme_token = create_token(&default, "acme-admin", &["admin"], Some("acme")).await;
    assert_eq!(acme_token["tenant"], "acme");
    let acme = node.api_with(Some(secret(&acme_token)));

    // The same DTMI and the same twin id, different contents, in each tenant.
    default.upload_models(&pump_model("flow")).await.unwrap();
    acme.upload_models(&pump_model("pressure")).await.unwrap();
    default
        .put_twin("pump", &json!({"$metadata": {"$model": PUMP}, "flow": 1.0}))
        .await
        .unwrap();
    acme.put_twin(
        "pump",
        &json!({"$metadata": {"$model": PUMP}, "pressure": 2.0}),
    )
    .await
    .unwrap();
    acme.put_twin("acme-only", &json!({"$metadata": {"$model": PUMP}}))
        .await
        .unwrap();

    let d = default.get("/digitaltwins/pump").await.unwrap();
    let a = acme.get("/digitaltwins/pump").await.unwrap();
    assert_eq!(d.expect(StatusCode::OK)["flow"], 1.0);
    assert!(d.body.get("pressure").is_none());
    assert_eq!(a.expect(StatusCode::OK)["pressure"], 2.0);
    assert!(a.body.get("flow").is_none());
    let dm = default.get(&format!("/models/{PUMP}")).await.unwrap();
    let am = acme.get(&format!("/models/{PUMP}")).await.unwrap();
    assert_eq!(
        dm.expect(StatusCode::OK)["model"]["contents"][0]["name"],
        "flow"
    );
    assert_eq!(
        am.expect(StatusCode::OK)["model"]["contents"][0]["name"],
        "pressure"
    );

    // Lists show only the caller's tenant.
    let (dt, _) = default.get_all("/digitaltwins").await.unwrap();
    let (at, _) = acme.get_all("/digitaltwins").await.unwrap();
    assert_eq!(dt.len(), 1, "{dt:?}");
    assert_eq!(at.len(), 2, "{at:?}");
    default
        .get("/digitaltwins/acme-only")
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "DigitalTwinNotFound");
    let (dtok, _) = default.get_all("/tokens").await.unwrap();
    let (atok, _) = acme.get_all("/tokens").await.unwrap();
    assert!(dtok.iter().all(|t| t["tenant"] == "default"), "{dtok:?}");
    assert_eq!(atok.len(), 1, "{atok:?}");
    assert_eq!(atok[0]["tenant"], "acme");

    // Writes are confined too: a patch valid in one tenant's model is invalid in the
    // other's; acme cannot revoke default's tokens.
    acme.patch(
        "/digitaltwins/pump",
        &json!([{"op": "add", "path": "/flow", "value": 5.0}]),
    )
    .await
    .unwrap()
    .assert_error(StatusCode::BAD_REQUEST, "ValidationFailed");
    let default_token_id = node.token.split('_').nth(1).unwrap();
    acme.delete(&format!("/tokens/{default_token_id}"))
        .await
        .unwrap()
        .assert_error(StatusCode::NOT_FOUND, "TokenNotFound");
    default.get("/models").await.unwrap().expect(StatusCode::OK);

    // Deleting in one tenant leaves the other's twin and model alone.
    acme.delete("/digitaltwins/pump")
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);
    acme.delete("/digitaltwins/acme-only")
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);
    acme.delete(&format!("/models/{PUMP}"))
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);
    let d2 = default.get("/digitaltwins/pump").await.unwrap();
    assert_eq!(d2.expect(StatusCode::OK), &d.body);
    default
        .get(&format!("/models/{PUMP}"))
        .await
        .unwrap()
        .expect(StatusCode::OK);

    // A bad tenant name is refused.
    default
        .post(
            "/tokens",
            &json!({"name": "x", "roles": ["reader"], "tenant": "Not A Tenant"}),
        )
        .await
        .unwrap()
        .assert_error(StatusCode::BAD_REQUEST, "InvalidArgument");
}

#[tokio::test]
async fn tokens_and_revocations_survive_a_kill9_restart() {
    let mut node = Node::start().expect("node");
    let admin_token = node.token.clone();
    let admin = node.api();
    let kept = create_token(&admin, "kept", &["writer"], None).await;
    let acme = create_token(&admin, "acme", &["reader"], Some("acme")).await;
    let revoked = create_token(&admin, "revoked", &["reader"], None).await;
    admin
        .delete(&format!("/tokens/{}", revoked["id"].as_str().unwrap()))
        .await
        .unwrap()
        .expect(StatusCode::NO_CONTENT);

    node.kill9().unwrap();
    node.restart().unwrap();
    assert_eq!(node.token, admin_token, "admin.token was rewritten");
    assert!(
        !node.banner.iter().any(|l| l.starts_with("first start")),
        "the restart thought it was a first start: {:?}",
        node.banner
    );

    node.api()
        .get("/tokens")
        .await
        .unwrap()
        .expect(StatusCode::OK);
    node.api_with(Some(secret(&kept)))
        .get("/digitaltwins")
        .await
        .unwrap()
        .expect(StatusCode::OK);
    node.api_with(Some(secret(&acme)))
        .get("/digitaltwins")
        .await
        .unwrap()
        .expect(StatusCode::OK);
    node.api_with(Some(secret(&revoked)))
        .get("/digitaltwins")
        .await
        .unwrap()
        .assert_error(StatusCode::UNAUTHORIZED, "Unauthorized");
    let (tokens, _) = node.api().get_all("/tokens").await.unwrap();
    let mut names: Vec<&str> = tokens.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, vec!["admin", "kept"]);
}

#[tokio::test]
async fn the_admin_token_file_is_readable_by_its_owner_only() {
    let node = Node::start().expect("node");
    let path = node.data_dir().join("admin.token");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} has mode {mode:o}", path.display());
    assert!(node.token.starts_with("dpl_"), "{}", node.token);
    assert!(
        node.banner.iter().any(|l| l.starts_with("first start")),
        "{:?}",
        node.banner
    );
    let (tokens, _) = node.api().get_all("/tokens").await.unwrap();
    assert_eq!(tokens.len(), 1);
    let roles = tokens[0]["roles"].as_array().unwrap();
    assert!(
        roles.contains(&json!("admin")) && roles.contains(&json!("operator")),
        "{roles:?}"
    );
    assert_eq!(tokens[0]["tenant"], "default");
}
