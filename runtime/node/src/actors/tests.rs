//! Actor-level tests: a real RocksDB in a temp dir, the real group-commit Proposer,
//! the real actor tree (node → tenant supervisors → twin hosts → twins). Waits are on
//! conditions with deadlines.

use super::directory::TwinHandle;
use super::messages::TwinOp;
use super::twin_entity::CommittedTwin;
use super::{ActorError, ActorSettings, IntensityLimit, TwinActors};
use doppel_cluster::{ProposeError, Proposer, Storage, StorageConfig};
use doppel_twins::keys::shard_of;
use doppel_twins::{load_twin, Command, Condition, Outcome, TwinError, TwinRecord};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const SHARDS: u32 = 4;
const MODEL: &str = "dtmi:test:Thermo;1";
const DEADLINE: Duration = Duration::from_secs(10);

struct Harness {
    _dir: tempfile::TempDir,
    storage: Storage,
    proposer: Proposer,
    actors: TwinActors,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.actors.stop();
    }
}

async fn harness(settings: ActorSettings) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path(), SHARDS, &StorageConfig::default()).unwrap();
    let proposer = Proposer::start(
        storage.clone(),
        doppel_cluster::node::ClusterConfig::single(1, SHARDS),
        10_000,
        512,
    )
    .await
    .unwrap();
    let model = json!({
        "@context": "dtmi:dtdl:context;3", "@id": MODEL, "@type": "Interface",
        "contents": [
            {"@type": "Property", "name": "temp", "schema": "double"},
            {"@type": "Telemetry", "name": "reading", "schema": "double"}
        ]
    });
    for tenant in ["acme", "globex"] {
        proposer
            .propose(Command::EnsureTenant {
                tenant: tenant.into(),
            })
            .await
            .unwrap();
        proposer
            .propose(Command::UploadModels {
                tenant: tenant.into(),
                documents: vec![model.clone()],
            })
            .await
            .unwrap();
    }
    let actors = TwinActors::start(storage.clone(), proposer.clone(), SHARDS, settings)
        .await
        .unwrap();
    Harness {
        _dir: dir,
        storage,
        proposer,
        actors,
    }
}

fn put(tenant: &str, id: &str, temp: f64) -> Command {
    Command::PutTwin {
        tenant: tenant.into(),
        twin_id: id.into(),
        body: json!({"$metadata": {"$model": MODEL}, "temp": temp}),
        condition: Condition::Always,
    }
}

fn patch(tenant: &str, id: &str, temp: f64) -> Command {
    Command::PatchTwin {
        tenant: tenant.into(),
        twin_id: id.into(),
        patch: json!([{"op": "replace", "path": "/temp", "value": temp}]),
        condition: Condition::Always,
    }
}

fn temp_of(twin: &TwinRecord) -> Option<f64> {
    twin.root.values.get("temp").and_then(|v| v.as_f64())
}

impl Harness {
    fn durable(&self, tenant: &str, id: &str) -> Option<TwinRecord> {
        load_twin(&self.storage, shard_of(tenant, id, SHARDS), tenant, id).unwrap()
    }

    /// What storage holds of the twin, as an active twin keeps it.
    fn durable_copy(&self, tenant: &str, id: &str) -> Option<CommittedTwin> {
        self.durable(tenant, id).as_ref().map(CommittedTwin::of)
    }

    /// The active twin's in-memory copy (through its queue, as a request would go).
    async fn snapshot(&self, tenant: &str, id: &str) -> Option<CommittedTwin> {
        let (tx, rx) = oneshot::channel();
        self.actors
            .send_raw(tenant, id, TwinOp::Snapshot(tx))
            .await
            .unwrap();
        rx.await.unwrap()
    }

    fn actor_of(&self, tenant: &str, id: &str) -> Option<TwinHandle> {
        self.actors.lookup(tenant, id)
    }

    /// Crashes the twin and, unless the tenant gets suspended by it, waits for its
    /// restart (a new activation in the directory).
    async fn crash(&self, tenant: &str, id: &str) {
        let before = self.actor_of(tenant, id);
        self.actors
            .send_raw(tenant, id, TwinOp::Crash)
            .await
            .unwrap();
        let gone = || {
            !same(&self.actor_of(tenant, id), &before)
                || self
                    .actors
                    .tenants
                    .get(tenant)
                    .is_some_and(|t| t.shared.suspended_for(Instant::now()).is_some())
        };
        wait_until("the crashed actor to be replaced", gone).await;
    }
}

/// Whether both are the same activation of a twin (or both absent).
fn same(a: &Option<TwinHandle>, b: &Option<TwinHandle>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.same_activation(b),
        (None, None) => true,
        _ => false,
    }
}

/// A twin id other than `of` that lives in the same shard, so on the same host.
fn same_shard_neighbour(tenant: &str, of: &str) -> String {
    let shard = shard_of(tenant, of, SHARDS);
    (0..)
        .map(|i| format!("n{i}"))
        .find(|n| shard_of(tenant, n, SHARDS) == shard)
        .unwrap()
}

/// A twin id that lives in another shard than `of`.
fn other_shard_twin(tenant: &str, of: &str) -> String {
    let shard = shard_of(tenant, of, SHARDS);
    (0..)
        .map(|i| format!("o{i}"))
        .find(|n| shard_of(tenant, n, SHARDS) != shard)
        .unwrap()
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn outcome_twin(o: Outcome) -> TwinRecord {
    match o {
        Outcome::Twin { twin, .. } => twin,
        other => panic!("expected a twin outcome, got {other:?}"),
    }
}

#[tokio::test]
async fn activation_loads_durable_state_and_writes_update_the_copy() {
    let h = harness(ActorSettings::default()).await;
    // Written behind the actors' back, before any actor exists.
    h.proposer.propose(put("acme", "t1", 20.5)).await.unwrap();
    assert_eq!(h.actors.active_twins(), 0);

    let copy = h.snapshot("acme", "t1").await;
    assert!(copy.is_some());
    assert_eq!(
        copy,
        h.durable_copy("acme", "t1"),
        "activation reads storage"
    );
    assert_eq!(h.actors.active_twins(), 1);

    let after = outcome_twin(h.actors.execute(patch("acme", "t1", 21.0)).await.unwrap());
    let copy = h.snapshot("acme", "t1").await.unwrap();
    assert_eq!(Some(&copy), h.durable_copy("acme", "t1").as_ref());
    assert_eq!(&*copy.etag, after.etag);
    assert_eq!(
        h.durable("acme", "t1").as_ref().and_then(temp_of),
        Some(21.0)
    );
}

#[tokio::test]
async fn errors_of_the_state_machine_pass_through_unchanged() {
    let h = harness(ActorSettings::default()).await;
    let err = h
        .actors
        .execute(patch("acme", "missing", 1.0))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ActorError::Propose(ProposeError::Rejected(TwinError::TwinNotFound { .. }))
        ),
        "{err:?}"
    );
    // A twin that does not exist does not stay around.
    wait_until("the missing twin to be dropped", || {
        h.actor_of("acme", "missing").is_none()
    })
    .await;
    let err = h
        .actors
        .execute(Command::EnsureTenant {
            tenant: "acme".into(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ActorError::NotATwinCommand { .. }), "{err:?}");
}

#[tokio::test]
async fn a_panicking_twin_is_restarted_from_durable_state_and_its_neighbour_does_not_notice() {
    let h = harness(ActorSettings::default()).await;
    // p2 shares p1's host (same tenant and shard); p3 is on another host.
    let p2 = same_shard_neighbour("acme", "p1");
    let p3 = other_shard_twin("acme", "p1");
    for (id, t) in [("p1", 1.0), (p2.as_str(), 2.0), (p3.as_str(), 3.0)] {
        h.actors.execute(put("acme", id, t)).await.unwrap();
    }
    let p1_before = h.actor_of("acme", "p1").unwrap();
    let p2_before = h.actor_of("acme", &p2).unwrap();
    let p3_before = h.actor_of("acme", &p3).unwrap();
    // A request of the neighbour is running while p1 crashes on the same host.
    let (release, hold) = oneshot::channel();
    h.actors
        .send_raw("acme", &p2, TwinOp::Hold(hold))
        .await
        .unwrap();
    let queued = {
        let actors = h.actors.clone();
        let cmd = patch("acme", &p2, 2.25);
        tokio::spawn(async move { actors.execute(cmd).await })
    };
    wait_until("the neighbour's patch to queue", || {
        h.actor_of("acme", &p2)
            .is_some_and(|a| a.slot.gate.in_flight() == 2)
    })
    .await;

    h.crash("acme", "p1").await;

    let p1_after = h.actor_of("acme", "p1").expect("restarted eagerly");
    assert!(!p1_after.same_activation(&p1_before));
    assert_eq!(
        h.snapshot("acme", "p1").await,
        h.durable_copy("acme", "p1"),
        "the restarted twin holds what is durable"
    );
    let p1 = outcome_twin(h.actors.execute(patch("acme", "p1", 1.5)).await.unwrap());
    assert_eq!(temp_of(&p1), Some(1.5));

    for (id, before) in [(&p2, &p2_before), (&p3, &p3_before)] {
        assert!(
            h.actor_of("acme", id).unwrap().same_activation(before),
            "the neighbour {id} was not restarted"
        );
    }
    release.send(()).unwrap();
    let queued = outcome_twin(queued.await.unwrap().expect("the queued request survived"));
    assert_eq!(temp_of(&queued), Some(2.25));
    let p2 = outcome_twin(h.actors.execute(patch("acme", &p2, 2.5)).await.unwrap());
    assert_eq!(temp_of(&p2), Some(2.5));
}

#[tokio::test]
async fn a_crash_looping_tenant_is_suspended_while_another_runs_on_and_it_resumes_after_the_cool_off(
) {
    let cool_off = Duration::from_millis(500);
    let settings = ActorSettings {
        intensity: IntensityLimit {
            max_restarts: 2,
            window: Duration::from_secs(60),
            cool_off,
        },
        ..ActorSettings::default()
    };
    let h = harness(settings).await;
    h.actors.execute(put("acme", "bad", 1.0)).await.unwrap();
    h.actors.execute(put("globex", "good", 1.0)).await.unwrap();

    // Two failures are restarted; the third trips the limit.
    h.crash("acme", "bad").await;
    h.crash("acme", "bad").await;
    assert!(h.actor_of("acme", "bad").is_some());
    let third_crash = Instant::now();
    h.crash("acme", "bad").await;

    let err = h
        .actors
        .execute(patch("acme", "bad", 2.0))
        .await
        .unwrap_err();
    match &err {
        ActorError::TenantSuspended {
            tenant,
            retry_after_s,
            ..
        } => {
            assert_eq!(tenant, "acme");
            assert_eq!(*retry_after_s, 1);
        }
        other => panic!("expected TenantSuspended, got {other:?}"),
    }
    // Every twin of the tenant is refused, not only the crashing one.
    assert!(matches!(
        h.actors.execute(put("acme", "other", 1.0)).await,
        Err(ActorError::TenantSuspended { .. })
    ));
    // The other tenant runs on.
    let good = outcome_twin(
        h.actors
            .execute(patch("globex", "good", 3.0))
            .await
            .unwrap(),
    );
    assert_eq!(temp_of(&good), Some(3.0));

    // After the cool-off the tenant works again, from durable state.
    let end = Instant::now() + DEADLINE;
    let resumed = loop {
        match h.actors.execute(patch("acme", "bad", 4.0)).await {
            Ok(o) => break outcome_twin(o),
            Err(ActorError::TenantSuspended { .. }) if Instant::now() < end => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("tenant did not resume: {e:?}"),
        }
    };
    // (Suspension times are kept in whole milliseconds.)
    assert!(third_crash.elapsed() + Duration::from_millis(2) >= cool_off);
    assert_eq!(temp_of(&resumed), Some(4.0));
    assert_eq!(h.durable("acme", "bad"), Some(resumed));
}

#[tokio::test]
async fn an_idle_twin_is_passivated_and_reactivated_on_next_use() {
    let settings = ActorSettings {
        idle_passivate: Duration::from_millis(100),
        ..ActorSettings::default()
    };
    let h = harness(settings).await;
    h.actors.execute(put("acme", "t1", 1.0)).await.unwrap();
    let first = h.actor_of("acme", "t1").unwrap();
    let started = Instant::now();
    wait_until("the idle twin to passivate", || {
        h.actors.active_twins() == 0
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(90));

    let t = outcome_twin(h.actors.execute(patch("acme", "t1", 2.0)).await.unwrap());
    assert_eq!(temp_of(&t), Some(2.0));
    let second = h.actor_of("acme", "t1").expect("re-activated");
    assert!(!second.same_activation(&first));
    assert_eq!(h.snapshot("acme", "t1").await, h.durable_copy("acme", "t1"));
}

#[tokio::test]
async fn a_busy_twin_is_not_passivated() {
    let settings = ActorSettings {
        idle_passivate: Duration::from_millis(50),
        ..ActorSettings::default()
    };
    let h = harness(settings).await;
    h.actors.execute(put("acme", "t1", 1.0)).await.unwrap();
    let (release, hold) = oneshot::channel();
    h.actors
        .send_raw("acme", "t1", TwinOp::Hold(hold))
        .await
        .unwrap();
    let first = h.actor_of("acme", "t1").unwrap();
    // Well past the idle time while a request is in flight: still the same activation.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(h.actor_of("acme", "t1").unwrap().same_activation(&first));
    drop(release);
    wait_until("the twin to passivate once idle", || {
        h.actors.active_twins() == 0
    })
    .await;
}

#[tokio::test]
async fn a_full_mailbox_rejects_instead_of_queueing() {
    let settings = ActorSettings {
        mailbox_limit: 2,
        ..ActorSettings::default()
    };
    let h = harness(settings).await;
    h.actors.execute(put("acme", "t1", 1.0)).await.unwrap();
    h.actors.execute(put("acme", "t2", 1.0)).await.unwrap();
    // One request running (held), one queued behind it: the bound is reached.
    let (release_a, hold_a) = oneshot::channel();
    let (release_b, hold_b) = oneshot::channel();
    h.actors
        .send_raw("acme", "t1", TwinOp::Hold(hold_a))
        .await
        .unwrap();
    h.actors
        .send_raw("acme", "t1", TwinOp::Hold(hold_b))
        .await
        .unwrap();

    let refused = tokio::time::timeout(
        Duration::from_secs(2),
        h.actors.execute(patch("acme", "t1", 9.0)),
    )
    .await
    .expect("refused at once, not queued");
    match refused {
        Err(ActorError::TwinOverloaded { twin, limit, .. }) => {
            assert_eq!(twin, "t1");
            assert_eq!(limit, 2);
        }
        other => panic!("expected TwinOverloaded, got {other:?}"),
    }
    // Other twins are not affected by t1's full mailbox.
    h.actors.execute(patch("acme", "t2", 5.0)).await.unwrap();

    release_a.send(()).unwrap();
    release_b.send(()).unwrap();
    wait_until("the held requests to finish", || {
        h.actor_of("acme", "t1")
            .is_some_and(|a| a.slot.gate.in_flight() == 0)
    })
    .await;
    let t = outcome_twin(h.actors.execute(patch("acme", "t1", 3.0)).await.unwrap());
    assert_eq!(temp_of(&t), Some(3.0));
    // The refused request (9.0) never reached the state.
    assert_eq!(
        h.durable("acme", "t1").as_ref().and_then(temp_of),
        Some(3.0)
    );
}

#[tokio::test]
async fn a_twins_commands_run_one_at_a_time_in_arrival_order() {
    let h = harness(ActorSettings::default()).await;
    h.actors.execute(put("acme", "t1", 0.0)).await.unwrap();
    let (release, hold) = oneshot::channel();
    h.actors
        .send_raw("acme", "t1", TwinOp::Hold(hold))
        .await
        .unwrap();
    // Five patches, each sent (first poll) before the next: they queue behind the hold.
    let patches = (1..=5).map(|i| h.actors.execute(patch("acme", "t1", f64::from(i))));
    let all = futures_util::future::join_all(patches);
    tokio::pin!(all);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), all.as_mut())
            .await
            .is_err(),
        "nothing runs while the twin is busy"
    );
    assert_eq!(
        h.durable("acme", "t1").as_ref().and_then(temp_of),
        Some(0.0)
    );
    release.send(()).unwrap();
    let outcomes: Vec<TwinRecord> = all
        .await
        .into_iter()
        .map(|o| outcome_twin(o.unwrap()))
        .collect();
    let temps: Vec<Option<f64>> = outcomes.iter().map(temp_of).collect();
    assert_eq!(
        temps,
        [Some(1.0), Some(2.0), Some(3.0), Some(4.0), Some(5.0)],
        "each saw exactly the ones before it"
    );
    assert_eq!(
        h.durable("acme", "t1").as_ref().and_then(temp_of),
        Some(5.0)
    );
    assert_eq!(h.snapshot("acme", "t1").await, h.durable_copy("acme", "t1"));
}

#[tokio::test]
async fn passivating_a_shard_drops_its_twins_and_they_come_back_from_storage() {
    let h = harness(ActorSettings::default()).await;
    let near = same_shard_neighbour("acme", "t1");
    let far = other_shard_twin("acme", "t1");
    let shard = shard_of("acme", "t1", SHARDS);
    for (tenant, id) in [
        ("acme", "t1"),
        ("acme", &near),
        ("acme", &far),
        ("globex", "t1"),
    ] {
        h.actors.execute(put(tenant, id, 1.0)).await.unwrap();
    }
    let globex_t1 = h.actor_of("globex", "t1").unwrap();
    let far_before = h.actor_of("acme", &far).unwrap();
    let near_before = h.actor_of("acme", &near).unwrap();
    // t1 is busy when the shard goes; a request is queued behind its running one.
    let (release, hold) = oneshot::channel();
    h.actors
        .send_raw("acme", "t1", TwinOp::Hold(hold))
        .await
        .unwrap();
    let queued = {
        let actors = h.actors.clone();
        tokio::spawn(async move { actors.execute(patch("acme", "t1", 2.0)).await })
    };
    wait_until("the patch to queue", || {
        h.actor_of("acme", "t1")
            .is_some_and(|a| a.slot.gate.in_flight() == 2)
    })
    .await;
    let t1_before = h.actor_of("acme", "t1").unwrap();

    h.actors.passivate_shard(shard);

    // New requests no longer reach the old activations.
    assert!(h.actor_of("acme", "t1").is_none());
    assert!(h.actor_of("acme", &near).is_none());
    // Left: t1 (draining until its admitted requests are answered), far, and globex's
    // t1 unless it is on the passivated shard too.
    let globex_same_shard = shard_of("globex", "t1", SHARDS) == shard;
    let left = if globex_same_shard { 2 } else { 3 };
    wait_until("the idle twins of the shard to be dropped", || {
        h.actors.active_twins() == left
    })
    .await;
    // A later request waits for the busy twin's drain, then runs on a fresh activation.
    let later = {
        let actors = h.actors.clone();
        tokio::spawn(async move { actors.execute(patch("acme", "t1", 3.0)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!later.is_finished(), "waits for the drain");
    release.send(()).unwrap();
    let queued = outcome_twin(queued.await.unwrap().expect("admitted before: answered"));
    assert_eq!(temp_of(&queued), Some(2.0));
    let later = outcome_twin(later.await.unwrap().unwrap());
    assert_eq!(temp_of(&later), Some(3.0));
    let t1_after = h.actor_of("acme", "t1").expect("re-activated");
    assert!(!t1_after.same_activation(&t1_before));
    assert_eq!(h.snapshot("acme", "t1").await, h.durable_copy("acme", "t1"));

    // Other shards and other tenants' other shards are untouched.
    assert!(h
        .actor_of("acme", &far)
        .unwrap()
        .same_activation(&far_before));
    if !globex_same_shard {
        assert!(h
            .actor_of("globex", "t1")
            .unwrap()
            .same_activation(&globex_t1));
    }
    // The idle neighbour comes back from storage on its next use.
    let n = outcome_twin(h.actors.execute(patch("acme", &near, 4.0)).await.unwrap());
    assert_eq!(temp_of(&n), Some(4.0));
    assert!(!h
        .actor_of("acme", &near)
        .unwrap()
        .same_activation(&near_before));
}

#[tokio::test]
async fn a_failed_host_is_replaced_and_its_twins_come_back_from_storage_once_their_commands_end() {
    let h = harness(ActorSettings::default()).await;
    let t2 = same_shard_neighbour("acme", "t1");
    let far = other_shard_twin("acme", "t1");
    for (tenant, id) in [
        ("acme", "t1"),
        ("acme", &t2),
        ("acme", &far),
        ("globex", "g1"),
    ] {
        h.actors.execute(put(tenant, id, 1.0)).await.unwrap();
    }
    let far_before = h.actor_of("acme", &far).unwrap();
    let g1_before = h.actor_of("globex", "g1").unwrap();
    // t1 has an operation running in its own task when its host dies.
    let (release, hold) = oneshot::channel();
    h.actors
        .send_raw("acme", "t1", TwinOp::Hold(hold))
        .await
        .unwrap();
    let host = h.actor_of("acme", "t1").unwrap().host;
    host.send_message(super::messages::HostMsg::CrashHost)
        .unwrap();
    wait_until("the failed host's twins to be dropped", || {
        h.actor_of("acme", "t1").is_none() && h.actor_of("acme", &t2).is_none()
    })
    .await;

    // A request for the shard waits for the running operation before a new host
    // re-reads any twin of it.
    let later = {
        let (actors, cmd) = (h.actors.clone(), patch("acme", &t2, 2.0));
        tokio::spawn(async move { actors.execute(cmd).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!later.is_finished(), "waits for the old host's operation");
    release.send(()).unwrap();
    let t = outcome_twin(later.await.unwrap().unwrap());
    assert_eq!(temp_of(&t), Some(2.0));
    assert_eq!(h.snapshot("acme", &t2).await, h.durable_copy("acme", &t2));
    assert_eq!(h.snapshot("acme", "t1").await, h.durable_copy("acme", "t1"));

    // Other hosts of the tenant, and other tenants, did not notice.
    assert!(h
        .actor_of("acme", &far)
        .unwrap()
        .same_activation(&far_before));
    assert!(h
        .actor_of("globex", "g1")
        .unwrap()
        .same_activation(&g1_before));
}

// Density (resident memory per active twin, activation time) is measured by
// `doppel bench density`, beside a plain-map baseline, not in a test.
