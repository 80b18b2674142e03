//! Deleting a model or a twin on a cluster asks every shard's leader, not the deleting
//! node's own replicas (which may trail):
//! - with the meta leader cut off from the leader of a shard where a twin of the model
//!   was just created, the model's DELETE must not succeed, and the twin keeps a model
//!   that exists;
//! - with a twin's leader cut off from the leader of a shard where a relationship to
//!   it was just created, the twin's DELETE must not succeed, and the relationship
//!   keeps its target.
//!
//! Real processes, real QUIC, fault injection.

use doppel_tests::cluster::Cluster;
use doppel_tests::interface;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

const MODEL: &str = "dtmi:doppel:test:cluster:Meter;1";

/// Cuts `node` off from the others for a while, so that other nodes take over some
/// of its groups, and waits until the cluster is whole again.
async fn shake(cluster: &Cluster, node: u64) {
    cluster.isolate(node, true).await.expect("isolate");
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.isolate(node, false).await.expect("heal");
    cluster
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("healthy");
}

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
    // The node that formed the cluster leads every group at first, and a cut between
    // two nodes can move leaders (the cut-off follower campaigns): each attempt picks
    // afresh, and is repeated if the create does not go through.
    let mut pick = None;
    let mut meta = 1;
    let mut tried = Vec::new();
    for attempt in 0..6 {
        if attempt > 0 {
            shake(&cluster, meta).await;
        }
        meta = cluster
            .leader_of(1, "meta")
            .await
            .unwrap()
            .expect("meta leader");
        let mut candidate = None;
        for i in 0..64 {
            let id = format!("meter-{attempt}-{i}");
            let shard = cluster.shard_of(&id).to_string();
            let leader = cluster.leader_of(meta, &shard).await.unwrap();
            if let Some(y) = leader.filter(|l| *l != meta) {
                if cluster.leader_of(y, &shard).await.unwrap() == Some(y) {
                    candidate = Some((id, y));
                    break;
                }
            }
        }
        let Some((twin, y)) = candidate else { continue };
        // The shard leader has the model in its replica of the meta group (a
        // linearizable read waits for that).
        let r = cluster
            .api(y)
            .get(&format!("/models/{MODEL}"))
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        cluster.cut(meta, y, true).await.expect("cut");
        // Created through the shard's leader, committed with the third node: the meta
        // leader's replica of the shard never hears of it while the cut lasts.
        tried.push(twin.clone());
        let r = cluster
            .api(y)
            .put(
                &format!("/digitaltwins/{twin}"),
                &json!({"$metadata": {"$model": MODEL}}),
            )
            .await
            .unwrap();
        if r.status == StatusCode::OK {
            pick = Some((twin, y));
            break;
        }
        println!(
            "attempt {attempt}: create through node {y} answered {}; again",
            r.status
        );
        cluster.cut(meta, y, false).await.expect("heal");
    }
    let (twin, shard_leader) = pick.expect("a twin created on a shard led apart from meta");
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

    // Unused at last: deleted (with any twin an earlier attempt may have made).
    assert!(tried.contains(&twin));
    for id in tried.iter().map(String::as_str).chain(["after-abort"]) {
        let r = cluster
            .api(meta)
            .delete(&format!("/digitaltwins/{id}"))
            .await
            .unwrap();
        assert!(
            [StatusCode::NO_CONTENT, StatusCode::NOT_FOUND].contains(&r.status),
            "{id}: {}",
            r.text
        );
    }
    let r = cluster
        .api(meta)
        .delete(&format!("/models/{MODEL}"))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
}

const PUMP: &str = "dtmi:doppel:test:cluster:Pump;1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twin_is_not_deleted_while_a_shard_that_targets_it_cannot_be_asked() {
    let cluster = Cluster::start(3, 8).await.expect("cluster");
    cluster
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("healthy");
    let api = cluster.api(1);
    api.upload_models(&json!([interface(
        PUMP,
        json!([{"@type": "Relationship", "name": "feeds"}])
    )]))
    .await
    .expect("upload");
    let body = json!({"$metadata": {"$model": PUMP}});
    // Two twins whose shards different nodes lead (the target and the source), each
    // leader confirming it; repeated if the relationship does not go through.
    let mut pick = None;
    let mut made = Vec::new();
    for attempt in 0..6 {
        if attempt > 0 {
            let lead = cluster.leader_of(1, "0").await.unwrap().unwrap_or(1);
            shake(&cluster, lead).await;
        }
        let mut leaders = Vec::new();
        for i in 0..16 {
            let id = format!("pump-{attempt}-{i}");
            let r = api
                .put(&format!("/digitaltwins/{id}"), &body)
                .await
                .unwrap();
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            made.push(id.clone());
            let shard = cluster.shard_of(&id).to_string();
            if let Some(l) = cluster.leader_of(1, &shard).await.unwrap() {
                if cluster.leader_of(l, &shard).await.unwrap() == Some(l) {
                    leaders.push((id, l));
                }
            }
        }
        let found = leaders.iter().find_map(|(t, lt)| {
            leaders
                .iter()
                .find(|(_, ls)| ls != lt)
                .map(|(s, ls)| (t.clone(), *lt, s.clone(), *ls))
        });
        let Some((target, t, source, s)) = found else {
            continue;
        };
        // The source's leader has the target in its own replica of the target's shard.
        let mut seen = false;
        for _ in 0..100 {
            let local = cluster.api(s);
            let r = local
                .send_with(
                    local
                        .request(Method::GET, &format!("/digitaltwins/{target}"))
                        .header("x-doppel-consistency", "local"),
                )
                .await;
            if r.status == StatusCode::OK {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(seen, "node {s} never saw {target}");
        cluster.cut(t, s, true).await.expect("cut");
        let r = cluster
            .api(s)
            .put(
                &format!("/digitaltwins/{source}/relationships/r1"),
                &json!({"$targetId": target, "$relationshipName": "feeds"}),
            )
            .await
            .unwrap();
        if r.status == StatusCode::OK {
            pick = Some((target, t, source, s));
            break;
        }
        println!(
            "attempt {attempt}: relationship through node {s} answered {}; again",
            r.status
        );
        cluster.cut(t, s, false).await.expect("heal");
        // Whatever became of it, it goes.
        let r = api
            .delete(&format!("/digitaltwins/{source}/relationships/r1"))
            .await
            .unwrap();
        assert!([StatusCode::NO_CONTENT, StatusCode::NOT_FOUND].contains(&r.status));
    }
    let (target, target_leader, source, source_leader) =
        pick.expect("a relationship made across a cut");
    let rel = format!("/digitaltwins/{source}/relationships/r1");
    let del = cluster
        .api(target_leader)
        .delete(&format!("/digitaltwins/{target}"))
        .await
        .unwrap();
    assert_ne!(
        del.status,
        StatusCode::NO_CONTENT,
        "{target} was deleted although {source}'s relationship targets it"
    );
    println!(
        "DELETE of a twin targeted from an unreachable shard leader: {} {}",
        del.status, del.text
    );
    cluster
        .cut(target_leader, source_leader, false)
        .await
        .expect("heal");

    // Healed: the DELETE is refused for the incoming relationship, which still
    // resolves; the mark is gone, so relationships may target the twin again.
    let mut last = None;
    for _ in 0..50 {
        let r = api
            .delete(&format!("/digitaltwins/{target}"))
            .await
            .unwrap();
        let done = r.status == StatusCode::CONFLICT;
        last = Some(r);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let last = last.unwrap();
    assert_eq!(last.status, StatusCode::CONFLICT, "{}", last.text);
    assert!(
        last.text.contains("DigitalTwinHasRelationships"),
        "{}",
        last.text
    );
    let r = api.get(&rel).await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = api.get(&format!("/digitaltwins/{target}")).await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = api
        .put(
            &format!("/digitaltwins/{source}/relationships/r2"),
            &json!({"$targetId": target, "$relationshipName": "feeds"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "the mark was lifted: {}", r.text);
    // Unreferenced at last: deleted.
    for r_id in ["r1", "r2"] {
        let r = api
            .delete(&format!("/digitaltwins/{source}/relationships/{r_id}"))
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    }
    let r = api
        .delete(&format!("/digitaltwins/{target}"))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    for id in &made {
        let r = api.delete(&format!("/digitaltwins/{id}")).await.unwrap();
        assert!(
            [StatusCode::NO_CONTENT, StatusCode::NOT_FOUND].contains(&r.status),
            "{id}: {}",
            r.text
        );
    }
}
