//! `Proposer::propose_many`: commands are queued in the order given before anything
//! is awaited (so a later command of a group sees the earlier ones applied), and once
//! one cannot be queued, no later command of its group overtakes it.

use doppel_cluster::node::ClusterConfig;
use doppel_cluster::{ProposeError, Proposer, Storage, StorageConfig};
use doppel_twins::keys::shard_of;
use doppel_twins::{Command, Condition, Outcome};
use serde_json::json;

const SHARDS: u32 = 4;
const MODEL: &str = "dtmi:test:Meter;1";

async fn node(dir: &std::path::Path, queue: usize) -> Proposer {
    let storage = Storage::open(dir, SHARDS, &StorageConfig::default()).unwrap();
    let proposer = Proposer::start(storage, ClusterConfig::single(1, SHARDS), queue, 512)
        .await
        .unwrap();
    proposer
        .propose(Command::UploadModels {
            tenant: "acme".into(),
            documents: vec![json!({
                "@context": "dtmi:dtdl:context;3", "@id": MODEL, "@type": "Interface",
                "contents": [{"@type": "Telemetry", "name": "temp", "schema": "double"}]
            })],
        })
        .await
        .unwrap();
    proposer
}

fn create(id: &str) -> Command {
    Command::PutTwin {
        tenant: "acme".into(),
        twin_id: id.into(),
        body: json!({"$metadata": {"$model": MODEL}}),
        condition: Condition::IfNoneMatchAny,
    }
}

fn telemetry(id: &str, temp: f64) -> Command {
    Command::RecordTelemetry {
        tenant: "acme".into(),
        twin_id: id.into(),
        body: json!({ "temp": temp }),
        source_time: None,
    }
}

/// Two twin ids of different shards.
fn ids_of_two_shards() -> (String, String) {
    let a = "m-0".to_owned();
    let sa = shard_of("acme", &a, SHARDS);
    let b = (1..)
        .map(|i| format!("m-{i}"))
        .find(|b| shard_of("acme", b, SHARDS) != sa)
        .unwrap();
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_of_a_group_are_evaluated_in_the_order_given() {
    let dir = tempfile::tempdir().unwrap();
    let p = node(dir.path(), 10_000).await;
    let results = p
        .propose_many(vec![
            telemetry("m-0", 1.0), // before the twin exists
            create("m-0"),
            telemetry("m-0", 2.0),
            create("m-0"), // exists by now
            telemetry("m-0", 3.0),
        ])
        .await;
    let codes: Vec<String> = results
        .iter()
        .map(|r| match r {
            Ok(Outcome::Done) => "done".to_owned(),
            Ok(Outcome::Twin { created, .. }) => format!("twin created={created}"),
            Ok(other) => format!("{other:?}"),
            Err(ProposeError::Rejected(e)) => e.code().to_string(),
            Err(e) => e.to_string(),
        })
        .collect();
    assert_eq!(
        codes,
        [
            "DigitalTwinNotFound",
            "twin created=true",
            "done",
            "PreconditionFailed",
            "done"
        ]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_command_that_cannot_be_queued_is_not_overtaken_by_a_later_one_of_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = ids_of_two_shards();
    let p = node(dir.path(), 2).await;
    for id in [&a, &b] {
        p.propose(create(id)).await.unwrap();
    }
    // One thread: the writers cannot drain their queues (capacity 2) while the
    // commands are being queued.
    let results = p
        .propose_many(vec![
            telemetry(&a, 1.0),
            telemetry(&a, 2.0),
            telemetry(&a, 3.0), // a's queue is full
            telemetry(&b, 1.0), // another group: still queued
            telemetry(&a, 4.0), // would fit later, but must not overtake 3.0
        ])
        .await;
    let overloaded: Vec<bool> = results
        .iter()
        .map(|r| matches!(r, Err(ProposeError::Overloaded)))
        .collect();
    assert_eq!(overloaded, [false, false, true, false, true], "{results:?}");
    assert!(results
        .iter()
        .zip(&overloaded)
        .all(|(r, o)| *o || matches!(r, Ok(Outcome::Done))));
}
