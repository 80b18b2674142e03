//! Specification: a write whose Raft log append was written but not yet fsynced is never
//! acknowledged, and a crash in that window loses no acknowledged write and leaves a
//! store that opens cleanly.
//!
//! Schedule (deterministic; no seed): one node; a twin PATCHed `n = 1..=20` with every
//! PATCH acknowledged; then failpoint `raft_log_after_write_before_sync` (in the log
//! store, after the entries are written and before the WAL fsync that acknowledges
//! them) is set to `panic`, and PATCH `n = 21` is sent; the node is killed with SIGKILL
//! and restarted on the same data directory without failpoints. Then:
//!
//! ```text
//!   PATCH 21 was not answered 204                   never acked before its fsync
//!   counter == mirror, 20 <= counter <= 21          acked writes kept; nothing half-applied
//!   a new PATCH is acked and read back              the store works after the crash
//! ```
//!
//! Needs a binary built with failpoints (see `doppel_tests::failpoints_or_skip`).

use doppel_tests::{failpoints_or_skip, interface, set_failpoint, Node};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

const MODEL: &str = "dtmi:doppel:test:fsync:Counter;1";
const ACKED: u64 = 20;

fn patch(n: u64) -> serde_json::Value {
    json!([
        {"op": "replace", "path": "/counter", "value": n},
        {"op": "replace", "path": "/mirror", "value": n},
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_crashed_between_log_write_and_fsync_is_not_acked_and_acked_writes_survive() {
    let test = "a_write_crashed_between_log_write_and_fsync_is_not_acked_and_acked_writes_survive";
    let mut node = Node::start().expect("node starts");
    if !failpoints_or_skip(&node, test).await {
        return;
    }
    let api = node.api();
    api.upload_models(&json!([interface(
        MODEL,
        json!([
            {"@type": "Property", "name": "counter", "schema": "integer"},
            {"@type": "Property", "name": "mirror", "schema": "integer"},
        ])
    )]))
    .await
    .expect("model upload");
    api.put_twin(
        "meter",
        &json!({"$metadata": {"$model": MODEL}, "counter": 0, "mirror": 0}),
    )
    .await
    .expect("twin create");
    for n in 1..=ACKED {
        let r = api
            .patch("/digitaltwins/meter", &patch(n))
            .await
            .expect("PATCH");
        assert_eq!(r.status, StatusCode::NO_CONTENT, "PATCH {n}: {}", r.text);
    }

    set_failpoint(&node, "raft_log_after_write_before_sync", "panic").await;
    // The append panics after writing, so its fsync callback never runs: the write
    // must come back as an error (or not at all), never as 204.
    let unsynced = tokio::time::timeout(
        Duration::from_secs(30),
        api.patch("/digitaltwins/meter", &patch(ACKED + 1)),
    )
    .await;
    let answer = match unsynced {
        Ok(Ok(r)) => {
            assert_ne!(
                r.status,
                StatusCode::NO_CONTENT,
                "a write was acknowledged before its log entry was fsynced: {}\n{}",
                r.text,
                node.log()
            );
            format!("{} {}", r.status, r.text)
        }
        Ok(Err(e)) => format!("transport error: {e}"),
        Err(_) => "no answer within 30 s".into(),
    };
    assert!(
        node.log().contains("raft_log_after_write_before_sync"),
        "the failpoint never fired; node log:\n{}",
        node.log()
    );

    node.kill9().expect("kill -9");
    node.restart()
        .expect("the store opens cleanly after the crash");
    let api = node.api();
    let r = api.get("/digitaltwins/meter").await.expect("GET twin");
    let twin = r.expect(StatusCode::OK);
    let counter = twin["counter"].as_u64().expect("counter is an integer");
    let mirror = twin["mirror"].as_u64().expect("mirror is an integer");
    println!("the unsynced PATCH was answered: {answer}; after restart counter = {counter}");
    assert_eq!(counter, mirror, "a half-applied patch");
    assert!(
        (ACKED..=ACKED + 1).contains(&counter),
        "counter {counter}: acked writes reach {ACKED}, and only {} more was sent",
        ACKED + 1
    );

    let r = api
        .patch("/digitaltwins/meter", &patch(ACKED + 2))
        .await
        .expect("PATCH after restart");
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let twin = api.get("/digitaltwins/meter").await.expect("GET twin");
    assert_eq!(twin.expect(StatusCode::OK)["counter"], ACKED + 2);
}
