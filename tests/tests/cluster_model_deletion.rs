//! Deleting a model on a cluster asks every shard's leader, not the meta leader's own
//! replicas (which may trail): with the meta leader cut off from the leader of a
//! shard where a twin of the model was just created, the DELETE must not succeed, and
//! the twin keeps a model that exists. Real processes, real QUIC, fault injection.

use doppel_tests::cluster::Cluster;
use doppel_tests::interface;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

const MODEL: &str = "dtmi:doppel:test:cluster:Meter;1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_is_not_deleted_while_a_shard_that_uses_it_cannot_be_asked() {
    let cluster = Cluster::start(3, 8).await.expect("cluster");
    cluster
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("healthy");
    cluster
        .api(1)
        .upload_models(&json!([interface(
            MODEL,
            json!([{"@type": "Property", "name": "serial", "schema": "string"}])
        )]))
        .await
        .expect("upload");
    // The node that formed the cluster leads every group at first: cut the meta
    // leader off for a while until some shard is led by another node than meta.
    let mut pick = None;
    let mut meta = 0;
    for attempt in 0..4 {
        if attempt > 0 {
            cluster.isolate(meta, true).await.expect("isolate");
            tokio::time::sleep(Duration::from_secs(3)).await;
            cluster.isolate(meta, false).await.expect("heal");
            cluster
                .wait_healthy(Duration::from_secs(30))
                .await
                .expect("healthy");
        }
        meta = cluster
            .leader_of(1, "meta")
            .await
            .unwrap()
            .expect("meta leader");
        for i in 0..64 {
            let id = format!("meter-{i}");
            let shard = cluster.shard_of(&id).to_string();
            let leader = cluster.leader_of(meta, &shard).await.unwrap();
            if let Some(leader) = leader.filter(|l| *l != meta) {
                pick = Some((id, leader));
                break;
            }
        }
        if pick.is_some() {
            break;
        }
    }
    let (twin, shard_leader) = pick.expect("a shard led by another node");
    // The shard leader has the model in its replica of the meta group (a
    // linearizable read waits for that).
    let r = cluster
        .api(shard_leader)
        .get(&format!("/models/{MODEL}"))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    cluster.cut(meta, shard_leader, true).await.expect("cut");
    // Created through the shard's leader, committed with the third node: the meta
    // leader's replica of the shard never hears of it while the cut lasts.
    let r = cluster
        .api(shard_leader)
        .put(
            &format!("/digitaltwins/{twin}"),
            &json!({"$metadata": {"$model": MODEL}}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "create: {}", r.text);
    let del = cluster
        .api(meta)
        .delete(&format!("/models/{MODEL}"))
        .await
        .unwrap();
    assert_ne!(
        del.status,
        StatusCode::NO_CONTENT,
        "the model was deleted although twin {twin} uses it"
    );
    println!(
        "DELETE of a model in use on an unreachable shard leader: {} {}",
        del.status, del.text
    );
    cluster.cut(meta, shard_leader, false).await.expect("heal");

    // The model is there, its twin takes changes, and the deletion's mark is gone
    // (or is lifted by the repeated DELETE, which now sees the twin).
    let mut last = None;
    for _ in 0..50 {
        let r = cluster
            .api(meta)
            .delete(&format!("/models/{MODEL}"))
            .await
            .unwrap();
        if r.status == StatusCode::CONFLICT {
            last = Some(r);
            break;
        }
        last = Some(r);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let last = last.unwrap();
    assert_eq!(last.status, StatusCode::CONFLICT, "{}", last.text);
    assert!(last.text.contains("ModelInUse"), "{}", last.text);
    for node in 1..=3 {
        let r = cluster
            .api(node)
            .get(&format!("/models/{MODEL}"))
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK, "node {node}: {}", r.text);
    }
    let r = cluster
        .api(meta)
        .patch(
            &format!("/digitaltwins/{twin}"),
            &json!([{"op": "add", "path": "/serial", "value": "S-1"}]),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = cluster
        .api(meta)
        .put(
            "/digitaltwins/after-abort",
            &json!({"$metadata": {"$model": MODEL}}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "the mark was lifted: {}", r.text);

    // Unused at last: deleted.
    for id in [twin.as_str(), "after-abort"] {
        let r = cluster
            .api(meta)
            .delete(&format!("/digitaltwins/{id}"))
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    }
    let r = cluster
        .api(meta)
        .delete(&format!("/models/{MODEL}"))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
}
