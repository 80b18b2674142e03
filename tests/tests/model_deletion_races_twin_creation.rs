//! Deleting a model while twins of it are being created on many shards: either the
//! deletion is refused (a twin uses the model) or it succeeds and no twin of the model
//! exists, then or later. Never a twin whose model is gone. Over a real node, through
//! the REST API, with creates racing the DELETE.

use doppel_tests::{interface, Node};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_is_never_deleted_from_under_a_twin_created_meanwhile() {
    let node = Node::start().expect("node");
    let api = node.api();
    let mut deleted = 0;
    let mut refused = 0;
    for round in 0..12 {
        let model = format!("dtmi:doppel:test:race:Meter{round};1");
        api.upload_models(&json!([interface(
            &model,
            json!([{"@type": "Property", "name": "serial", "schema": "string"}])
        )]))
        .await
        .expect("upload");
        // Creates spread over the shards, racing the DELETE.
        let creates: Vec<_> = (0..24)
            .map(|i| {
                let (api, model) = (api.clone(), model.clone());
                tokio::spawn(async move {
                    // Over 6 ms from the start of the round.
                    let after = i * 250;
                    tokio::time::sleep(Duration::from_micros(after as u64)).await;
                    let id = format!("r{round}-m{i}");
                    let body = json!({"$metadata": {"$model": model}});
                    let r = api
                        .put(&format!("/digitaltwins/{id}"), &body)
                        .await
                        .unwrap();
                    (id, r.status)
                })
            })
            .collect();
        // Even rounds: the DELETE as the creates start; odd ones: in their midst.
        tokio::time::sleep(Duration::from_millis(if round % 2 == 0 { 0 } else { 3 })).await;
        let del = api
            .delete(&format!("/models/{model}"))
            .await
            .expect("delete");
        let mut created = Vec::new();
        for c in creates {
            let (id, status) = c.await.unwrap();
            match status {
                StatusCode::OK => created.push(id),
                // Refused because the model is gone or going: the twin was not made.
                StatusCode::BAD_REQUEST | StatusCode::CONFLICT => {
                    let r = api.get(&format!("/digitaltwins/{id}")).await.unwrap();
                    assert_eq!(r.status, StatusCode::NOT_FOUND, "refused twin {id} exists");
                }
                other => panic!("create {id}: unexpected {other}"),
            }
        }
        let model_exists =
            api.get(&format!("/models/{model}")).await.unwrap().status == StatusCode::OK;
        match del.status {
            StatusCode::NO_CONTENT => {
                deleted += 1;
                assert!(!model_exists);
                assert!(
                    created.is_empty(),
                    "round {round}: model deleted while twins {created:?} were created of it"
                );
            }
            StatusCode::CONFLICT => {
                refused += 1;
                assert!(model_exists, "a refused deletion keeps the model");
                assert!(
                    !created.is_empty(),
                    "refused although no twin used it: {}",
                    del.text
                );
            }
            other => panic!("round {round}: DELETE answered {other}: {}", del.text),
        }
        // Every twin created uses a model that exists, and takes a change.
        for id in &created {
            let r = api
                .patch(
                    &format!("/digitaltwins/{id}"),
                    &json!([{"op": "add", "path": "/serial", "value": "S-1"}]),
                )
                .await
                .unwrap();
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{id}: {}", r.text);
        }
        // A refused deletion lifted its mark: the model takes new twins again.
        if model_exists {
            let r = api
                .put(
                    &format!("/digitaltwins/r{round}-late"),
                    &json!({"$metadata": {"$model": model}}),
                )
                .await
                .unwrap();
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        }
    }
    println!("model deletions racing creates: {deleted} deleted, {refused} refused");
    assert_eq!(deleted + refused, 12);
}
