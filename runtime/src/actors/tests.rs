//! Actor-level tests: a real RocksDB in a temp dir, the real group-commit Proposer,
//! the real actor tree. Waits are on conditions with deadlines.

use super::directory::TwinHandle;
use super::messages::TwinMsg;
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
    let proposer = Proposer::start(storage.clone(), SHARDS, 10_000, 512);
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

    async fn snapshot(&self, tenant: &str, id: &str) -> Option<TwinRecord> {
        let (tx, rx) = oneshot::channel();
        self.actors
            .send_raw(tenant, id, TwinMsg::Snapshot(tx))
            .await
            .unwrap();
        rx.await.unwrap()
    }

    fn actor_of(&self, tenant: &str, id: &str) -> Option<TwinHandle> {
        self.actors.lookup(tenant, id)
    }

    /// Crashes the twin's actor and, unless the tenant gets suspended by it, waits
    /// for its restart (a new actor in the directory).
    async fn crash(&self, tenant: &str, id: &str) {
        let before = self.actor_of(tenant, id).map(|h| h.actor.get_id());
        self.actors
            .send_raw(tenant, id, TwinMsg::Crash)
            .await
            .unwrap();
        let gone = || {
            self.actor_of(tenant, id).map(|h| h.actor.get_id()) != before
                || self
                    .actors
                    .tenants
                    .get(tenant)
                    .is_some_and(|t| t.shared.suspended_for(Instant::now()).is_some())
        };
        wait_until("the crashed actor to be replaced", gone).await;
    }
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
    assert_eq!(copy, h.durable("acme", "t1"), "activation reads storage");
    assert_eq!(h.actors.active_twins(), 1);

    let after = outcome_twin(h.actors.execute(patch("acme", "t1", 21.0)).await.unwrap());
    let copy = h.snapshot("acme", "t1").await.unwrap();
    assert_eq!(Some(&copy), h.durable("acme", "t1").as_ref());
    assert_eq!(copy.etag, after.etag);
    assert_eq!(temp_of(&copy), Some(21.0));
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
    // An actor for a twin that does not exist does not stay around.
    wait_until("the actor of a missing twin to stop", || {
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
    h.actors.execute(put("acme", "p1", 1.0)).await.unwrap();
    h.actors.execute(put("acme", "p2", 2.0)).await.unwrap();
    let p1_before = h.actor_of("acme", "p1").unwrap().actor.get_id();
    let p2_before = h.actor_of("acme", "p2").unwrap().actor.get_id();

    h.crash("acme", "p1").await;

    let p1_after = h.actor_of("acme", "p1").expect("restarted eagerly");
    assert_ne!(p1_after.actor.get_id(), p1_before);
    assert_eq!(
        h.snapshot("acme", "p1").await,
        h.durable("acme", "p1"),
        "the restarted actor holds what is durable"
    );
    let p1 = outcome_twin(h.actors.execute(patch("acme", "p1", 1.5)).await.unwrap());
    assert_eq!(temp_of(&p1), Some(1.5));

    assert_eq!(
        h.actor_of("acme", "p2").unwrap().actor.get_id(),
        p2_before,
        "the neighbour was not restarted"
    );
    let p2 = outcome_twin(h.actors.execute(patch("acme", "p2", 2.5)).await.unwrap());
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
    let first = h.actor_of("acme", "t1").unwrap().actor.get_id();
    let started = Instant::now();
    wait_until("the idle twin to passivate", || {
        h.actors.active_twins() == 0
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(90));

    let t = outcome_twin(h.actors.execute(patch("acme", "t1", 2.0)).await.unwrap());
    assert_eq!(temp_of(&t), Some(2.0));
    let second = h.actor_of("acme", "t1").expect("re-activated");
    assert_ne!(second.actor.get_id(), first);
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
        .send_raw("acme", "t1", TwinMsg::Hold(hold))
        .await
        .unwrap();
    let id = h.actor_of("acme", "t1").unwrap().actor.get_id();
    // Well past the idle time while a request is in flight: still the same actor.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.actor_of("acme", "t1").unwrap().actor.get_id(), id);
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
        .send_raw("acme", "t1", TwinMsg::Hold(hold_a))
        .await
        .unwrap();
    h.actors
        .send_raw("acme", "t1", TwinMsg::Hold(hold_b))
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
            .is_some_and(|a| a.gate.in_flight() == 0)
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

// Density (resident memory per active twin actor, activation time) is measured by
// `doppel bench density`, beside a plain-map baseline, not in a test.
