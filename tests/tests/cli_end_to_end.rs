//! Specification: the `doppel` CLI drives a live node — `models upload/list/get`,
//! `twins put/get/patch/list`, `rel put/list`, `tokens create/list/revoke` — taking
//! the node from `DOPPEL_URL`/`DOPPEL_TOKEN`, printing JSON (or one-line results) on
//! stdout, and exiting 0 on success, 1 when the server refuses, 2 when the command
//! cannot be issued.

use doppel_tests::{interface, run_doppel, CliOutput, Node};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

const LINE: &str = "dtmi:doppel:test:cli:Line;1";
const STATION: &str = "dtmi:doppel:test:cli:Station;1";

/// `doppel <args>` against `node` with its admin token (or `token`).
fn cli(node: &Node, token: Option<&str>, args: &[&str]) -> CliOutput {
    let token = token.unwrap_or(&node.token);
    run_doppel(
        args,
        &[("DOPPEL_URL", &node.url), ("DOPPEL_TOKEN", token)],
        Duration::from_secs(30),
    )
    .expect("doppel runs")
}

/// Asserts the exit code and that stderr mentions `needle`.
#[track_caller]
fn fails(out: &CliOutput, code: i32, needle: &str) {
    assert_eq!(
        out.code,
        Some(code),
        "exit code; stdout {} stderr {}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stderr.contains(needle),
        "stderr lacks {needle:?}: {}",
        out.stderr
    );
}

fn ids(list: &Value, key: &str) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|x| x[key].as_str().expect("id").to_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn models_twins_and_relationships_round_trip_through_the_cli() {
    let node = Node::start().expect("node");
    let files = tempfile::tempdir().unwrap();
    let json_file = files.path().join("line.json");
    std::fs::write(
        &json_file,
        json!([interface(
            LINE,
            json!([
                {"@type": "Property", "name": "name", "schema": "string"},
                {"@type": "Property", "name": "rate", "schema": "double"},
                {
                    "@type": "Relationship",
                    "name": "has",
                    "target": STATION,
                    "properties": [{"@type": "Property", "name": "position", "schema": "integer"}]
                },
            ])
        )])
        .to_string(),
    )
    .unwrap();
    let yaml_file = files.path().join("station.yaml");
    std::fs::write(
        &yaml_file,
        format!(
            "'@context': dtmi:dtdl:context;3\n'@id': '{STATION}'\n'@type': Interface\n\
             contents:\n  - '@type': Property\n    name: busy\n    schema: boolean\n"
        ),
    )
    .unwrap();

    // Models: one request for both files, then list and get.
    let uploaded = cli(
        &node,
        None,
        &[
            "models",
            "upload",
            json_file.to_str().unwrap(),
            yaml_file.to_str().unwrap(),
        ],
    )
    .json();
    assert_eq!(ids(&uploaded, "id"), vec![LINE, STATION]);
    let listed = cli(&node, None, &["models", "list"]).json();
    assert_eq!(ids(&listed, "id"), vec![LINE, STATION]);
    let got = cli(&node, None, &["models", "get", STATION]).json();
    assert_eq!(got["model"]["contents"][0]["name"], "busy");
    fails(
        &cli(
            &node,
            None,
            &["models", "upload", json_file.to_str().unwrap()],
        ),
        1,
        "ModelIdAlreadyExists",
    );

    // Twins: put, create-only, get, patch (with and without a good ETag), list.
    let line = cli(
        &node,
        None,
        &[
            "twins",
            "put",
            "line-1",
            "--model",
            LINE,
            "--json",
            r#"{"name": "Line 1", "rate": 2.5}"#,
        ],
    )
    .json();
    assert_eq!(line["$dtId"], "line-1");
    assert_eq!(line["$metadata"]["$model"], LINE);
    assert_eq!(line["rate"], 2.5);
    fails(
        &cli(
            &node,
            None,
            &["twins", "put", "line-1", "--model", LINE, "--if-none-match"],
        ),
        1,
        "412",
    );
    for s in ["st-1", "st-2"] {
        let twin = cli(
            &node,
            None,
            &[
                "twins",
                "put",
                s,
                "--model",
                STATION,
                "--json",
                r#"{"busy": false}"#,
            ],
        )
        .json();
        assert_eq!(twin["$dtId"], s);
    }
    let read = cli(&node, None, &["twins", "get", "line-1"]).json();
    assert_eq!(read, line);

    let patch_file = files.path().join("patch.json");
    std::fs::write(
        &patch_file,
        r#"[{"op": "replace", "path": "/rate", "value": 4.0}]"#,
    )
    .unwrap();
    let patched = cli(
        &node,
        None,
        &[
            "twins",
            "patch",
            "line-1",
            "--file",
            patch_file.to_str().unwrap(),
        ],
    );
    assert_eq!(patched.code, Some(0), "stderr: {}", patched.stderr);
    let over_http = node.api().get("/digitaltwins/line-1").await.unwrap();
    assert_eq!(over_http.expect(StatusCode::OK)["rate"], 4.0);
    let new_etag = over_http.etag.clone().unwrap();
    assert_eq!(
        patched.stdout.trim(),
        format!("patched line-1 etag {new_etag}")
    );
    let stale = line["$etag"].as_str().unwrap();
    fails(
        &cli(
            &node,
            None,
            &[
                "twins",
                "patch",
                "line-1",
                "--json",
                r#"[{"op": "replace", "path": "/rate", "value": 9.0}]"#,
                "--if-match",
                stale,
            ],
        ),
        1,
        "PreconditionFailed",
    );
    fails(
        &cli(
            &node,
            None,
            &[
                "twins",
                "patch",
                "line-1",
                "--json",
                r#"[{"op": "replace", "path": "/rate", "value": "fast"}]"#,
            ],
        ),
        1,
        "ValidationFailed",
    );
    let all = cli(&node, None, &["twins", "list"]).json();
    assert_eq!(ids(&all, "$dtId"), vec!["line-1", "st-1", "st-2"]);
    let stations = cli(&node, None, &["twins", "list", "--model", STATION]).json();
    assert_eq!(ids(&stations, "$dtId"), vec!["st-1", "st-2"]);
    let one = cli(&node, None, &["twins", "list", "--limit", "1"]).json();
    assert_eq!(one.as_array().unwrap().len(), 1);

    // Relationships, outgoing and incoming.
    for (rel, target, pos) in [("r1", "st-1", "1"), ("r2", "st-2", "2")] {
        let props = format!(r#"{{"position": {pos}}}"#);
        let created = cli(
            &node,
            None,
            &[
                "rel", "put", "line-1", rel, "--target", target, "--name", "has", "--props", &props,
            ],
        )
        .json();
        assert_eq!(created["$relationshipId"], rel);
        assert_eq!(created["$targetId"], target);
        assert_eq!(created["position"], pos.parse::<i64>().unwrap());
    }
    let out = cli(&node, None, &["rel", "list", "line-1"]).json();
    assert_eq!(ids(&out, "$relationshipId"), vec!["r1", "r2"]);
    let named = cli(&node, None, &["rel", "list", "line-1", "--name", "has"]).json();
    assert_eq!(named.as_array().unwrap().len(), 2);
    let incoming = cli(&node, None, &["rel", "list", "st-2", "--incoming"]).json();
    assert_eq!(ids(&incoming, "$relationshipId"), vec!["r2"]);
    assert_eq!(incoming[0]["$sourceId"], "line-1");
    fails(
        &cli(
            &node,
            None,
            &[
                "rel", "put", "st-1", "back", "--target", "line-1", "--name", "has",
            ],
        ),
        1,
        "ValidationFailed",
    );

    // Errors: the server's refusals exit 1, unusable input exits 2.
    fails(
        &cli(&node, None, &["twins", "get", "nope"]),
        1,
        "DigitalTwinNotFound",
    );
    fails(
        &cli(
            &node,
            None,
            &["twins", "put", "x", "--model", LINE, "--json", "{not json"],
        ),
        2,
        "--json",
    );
    fails(
        &cli(&node, None, &["twins", "patch", "line-1", "--json", "{}"]),
        2,
        "JSON Patch array",
    );
    let state = node.api().get("/digitaltwins/line-1").await.unwrap();
    assert_eq!(state.etag.as_deref(), Some(new_etag.as_str()));
}

#[tokio::test]
async fn tokens_are_created_listed_and_revoked_through_the_cli() {
    let node = Node::start().expect("node");
    let created = cli(
        &node,
        None,
        &[
            "tokens", "create", "--name", "ci", "--role", "reader", "--role", "writer",
        ],
    );
    assert!(
        created.stderr.contains("shown only once"),
        "stderr: {}",
        created.stderr
    );
    let created = created.json();
    assert_eq!(created["name"], "ci");
    assert_eq!(created["tenant"], "default");
    assert_eq!(created["roles"], json!(["reader", "writer"]));
    let secret = created["token"].as_str().expect("secret").to_owned();
    let id = created["id"].as_str().unwrap().to_owned();

    let listed = cli(&node, None, &["tokens", "list"]).json();
    assert_eq!(ids(&listed, "name"), vec!["admin", "ci"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("token").is_none()),
        "tokens list shows secrets: {listed}"
    );

    // The new token works for what its roles allow, and not for the rest.
    let twins = cli(&node, Some(&secret), &["twins", "list"]).json();
    assert_eq!(twins, json!([]));
    fails(&cli(&node, Some(&secret), &["tokens", "list"]), 1, "403");

    let revoked = cli(&node, None, &["tokens", "revoke", &id]);
    assert_eq!(revoked.code, Some(0), "stderr: {}", revoked.stderr);
    assert_eq!(revoked.stdout.trim(), format!("revoked {id}"));
    let after = cli(&node, Some(&secret), &["twins", "list"]);
    fails(&after, 1, "401");
    assert!(after.stderr.contains("hint:"), "stderr: {}", after.stderr);
    fails(
        &cli(&node, None, &["tokens", "revoke", &id]),
        1,
        "TokenNotFound",
    );

    // The operator's token creates a token for another tenant.
    let acme = cli(
        &node,
        None,
        &[
            "tokens", "create", "--name", "acme", "--role", "admin", "--tenant", "acme",
        ],
    )
    .json();
    assert_eq!(acme["tenant"], "acme");
    let acme_list = cli(&node, acme["token"].as_str(), &["tokens", "list"]).json();
    assert_eq!(ids(&acme_list, "name"), vec!["acme"]);
}

#[tokio::test]
async fn the_cli_exits_2_when_it_cannot_reach_the_node_and_1_without_a_token() {
    let mut node = Node::start().expect("node");
    // No token at all: the request goes out, the node says 401, the CLI hints.
    let out = run_doppel(
        &["twins", "list"],
        &[("DOPPEL_URL", &node.url)],
        Duration::from_secs(30),
    )
    .unwrap();
    fails(&out, 1, "401");
    assert!(
        out.stderr.contains("DOPPEL_TOKEN"),
        "stderr: {}",
        out.stderr
    );
    // --url wins over DOPPEL_URL.
    let out = run_doppel(
        &["models", "list", "--url", &node.url],
        &[
            ("DOPPEL_URL", "http://127.0.0.1:1"),
            ("DOPPEL_TOKEN", &node.token),
        ],
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(out.json(), json!([]));

    let url = node.url.clone();
    node.kill9().unwrap();
    let out = run_doppel(
        &["twins", "list"],
        &[("DOPPEL_URL", &url), ("DOPPEL_TOKEN", &node.token)],
        Duration::from_secs(30),
    )
    .unwrap();
    fails(&out, 2, "cannot reach");
}
