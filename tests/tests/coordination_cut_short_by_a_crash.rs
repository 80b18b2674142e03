//! Specification: a change across shards (deleting a model or a twin) cut short by a
//! crash of the node running it leaves no half-done coordination behind.
//!
//! The crash windows are failpoints in `runtime/node/src/coordination.rs`:
//! `coordination_after_mark` (the thing is marked; no shard has checked yet) and
//! `coordination_after_check` (every shard agreed; the change is not made). Each is set
//! to `panic` through `FAILPOINTS`, the DELETE is sent, the node is killed with SIGKILL
//! and restarted on the same data directory without failpoints. Then:
//!
//! ```text
//!   the DELETE was not answered 204
//!   repeating the DELETE finishes it          (coordination.rs: begin and abort are
//!                                              idempotent, a cut-short change is
//!                                              finished by repeating it)
//!   without a repeat, the thing is deleted or usable again: no mark outlives the
//!   crash                                     (ignored: see below)
//! ```
//!
//! Known defect, kept as the ignored tests below: nothing lifts a mark whose change
//! died with its node. The mark (`ModelRecord::deleting` on the meta group, the
//! `twin_deleting` key on the twin's shard) stays until a client repeats the request;
//! until then no twin of the model can be created (409 ModelBeingDeleted) and no
//! relationship can target the twin (409 DigitalTwinBeingDeleted). Lifting marks at
//! start-up is not safe on a cluster as they stand: a mark does not say which node
//! (and which run of it) owns it, and the finishing steps (`DeleteModel`,
//! `DeleteTwin`) do not require the mark, so lifting another node's live mark would let
//! a twin of a model being deleted slip in between its checks and its finish.
//!
//! Needs a binary built with failpoints (see `doppel_tests::failpoints_or_skip`).

use doppel_tests::{failpoints_or_skip, interface, Api, Node};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

const SENSOR: &str = "dtmi:doppel:test:coord:Sensor;1";
const LINE: &str = "dtmi:doppel:test:coord:Line;1";

async fn setup(api: &Api) {
    api.upload_models(&json!([
        interface(
            SENSOR,
            json!([{"@type": "Property", "name": "t", "schema": "double"}])
        ),
        interface(LINE, json!([{"@type": "Relationship", "name": "feeds"}])),
    ]))
    .await
    .expect("model upload");
    for id in ["line-1", "line-2"] {
        api.put_twin(id, &json!({"$metadata": {"$model": LINE}}))
            .await
            .expect("twin create");
    }
}

/// Sends `DELETE path` to a node whose failpoint crashes it; returns what came back.
async fn crashed_delete(node: &Node, path: &str) -> String {
    let r = tokio::time::timeout(Duration::from_secs(30), node.api().delete(path)).await;
    let answer = match r {
        Ok(Ok(r)) => {
            assert_ne!(
                r.status,
                StatusCode::NO_CONTENT,
                "DELETE {path} was acknowledged though its node crashed first: {}",
                r.text
            );
            format!("{} {}", r.status, r.text)
        }
        Ok(Err(e)) => format!("transport error: {e}"),
        Err(_) => "no answer within 30 s".into(),
    };
    println!("DELETE {path} through the crash window answered: {answer}");
    answer
}

/// Starts a node whose failpoint `window` panics, makes the coordination of `path`
/// crash there, and restarts the node without failpoints. `None`: skipped.
async fn crash_in(window: &str, path: &str, test: &str) -> Option<Node> {
    let failpoints = format!("{window}=panic");
    let mut node = Node::start_with_env(&[], &[("FAILPOINTS", &failpoints)]).expect("node");
    if !failpoints_or_skip(&node, test).await {
        return None;
    }
    setup(&node.api()).await;
    crashed_delete(&node, path).await;
    assert!(
        node.log().contains(window),
        "failpoint {window} never fired; node log:\n{}",
        node.log()
    );
    node.kill9().expect("kill -9");
    node.set_env(&[]);
    node.restart().expect("restart after the crash");
    Some(node)
}

/// Whether a model delete left its mark: the model is there and refuses new twins.
async fn model_mark_outlived(api: &Api) -> Option<String> {
    let model = api
        .get(&format!("/models/{SENSOR}"))
        .await
        .expect("GET model");
    if model.status == StatusCode::NOT_FOUND {
        return None; // finished
    }
    let r = api
        .put(
            "/digitaltwins/sensor-new",
            &json!({"$metadata": {"$model": SENSOR}, "t": 1.0}),
        )
        .await
        .expect("PUT twin");
    (r.status != StatusCode::OK).then(|| format!("{} {}", r.status, r.text))
}

/// Whether a twin delete left its mark: the twin is there and refuses new
/// relationships to it.
async fn twin_mark_outlived(api: &Api) -> Option<String> {
    let twin = api.get("/digitaltwins/line-2").await.expect("GET twin");
    if twin.status == StatusCode::NOT_FOUND {
        return None; // finished
    }
    let r = api
        .put(
            "/digitaltwins/line-1/relationships/r1",
            &json!({"$targetId": "line-2", "$relationshipName": "feeds"}),
        )
        .await
        .expect("PUT relationship");
    (r.status != StatusCode::OK).then(|| format!("{} {}", r.status, r.text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_delete_crashed_after_its_mark_is_finished_by_repeating_it() {
    let test = "a_model_delete_crashed_after_its_mark_is_finished_by_repeating_it";
    let path = format!("/models/{SENSOR}");
    let Some(node) = crash_in("coordination_after_mark", &path, test).await else {
        return;
    };
    let api = node.api();
    let r = api.delete(&path).await.expect("DELETE again");
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    api.get(&path)
        .await
        .expect("GET model")
        .assert_error(StatusCode::NOT_FOUND, "ModelNotFound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twin_delete_crashed_after_its_checks_is_finished_by_repeating_it() {
    let test = "a_twin_delete_crashed_after_its_checks_is_finished_by_repeating_it";
    let path = "/digitaltwins/line-2";
    let Some(node) = crash_in("coordination_after_check", path, test).await else {
        return;
    };
    let api = node.api();
    let r = api.delete(path).await.expect("DELETE again");
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    api.get(path)
        .await
        .expect("GET twin")
        .assert_error(StatusCode::NOT_FOUND, "DigitalTwinNotFound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known defect: a mark whose change died with its node is never lifted (module docs)"]
async fn no_model_delete_mark_outlives_a_crash_after_it() {
    let test = "no_model_delete_mark_outlives_a_crash_after_it";
    let path = format!("/models/{SENSOR}");
    let Some(node) = crash_in("coordination_after_mark", &path, test).await else {
        return;
    };
    let left = model_mark_outlived(&node.api()).await;
    assert!(
        left.is_none(),
        "the model is neither deleted nor usable: a twin of it answered {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known defect: a mark whose change died with its node is never lifted (module docs)"]
async fn no_twin_delete_mark_outlives_a_crash_after_its_checks() {
    let test = "no_twin_delete_mark_outlives_a_crash_after_its_checks";
    let path = "/digitaltwins/line-2";
    let Some(node) = crash_in("coordination_after_check", path, test).await else {
        return;
    };
    let left = twin_mark_outlived(&node.api()).await;
    assert!(
        left.is_none(),
        "the twin is neither deleted nor a valid target: a relationship to it answered \
         {left:?}"
    );
}
