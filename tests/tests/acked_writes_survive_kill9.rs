//! Specification: a write the node acknowledged survives `kill -9`, a write it did not
//! acknowledge is either wholly there or wholly absent, and nothing appears that no
//! client sent.
//!
//! Schedule: 50 twins of a model with two integer properties `counter` and `mirror`;
//! 16 writer tasks each own a few twins and loop, per twin, PATCHing both properties
//! to the same increasing `n`. For every twin the test records the last `n` answered
//! with 204 (acked) and the last `n` sent (attempted). After a seeded random load
//! time the node is killed with SIGKILL mid-load and restarted on the same data
//! directory; then, for every twin:
//!
//! ```text
//!   counter == mirror                  one patch is one atomic write
//!   acked <= counter <= attempted      durable after ack; nothing invented
//! ```
//!
//! Alongside, one more task creates new twins `extra-00001`, `extra-00002`, … one
//! after another; after the restart the extras present must be exactly
//! `1..=k` with `acked creates <= k <= attempted creates`.
//!
//! The cycle runs three times on the same directory. The seed is printed first; set
//! `DOPPEL_TEST_SEED` to replay a run's schedule.

use doppel_tests::{interface, Api, Node};
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MODEL: &str = "dtmi:doppel:test:crash:Counter;1";
const TWINS: usize = 50;
const WRITERS: usize = 16;
const CYCLES: usize = 3;

/// What the clients know about one twin.
#[derive(Default)]
struct Ledger {
    /// Highest `n` whose PATCH was answered 204.
    acked: AtomicU64,
    /// Highest `n` whose PATCH was sent (answered or not).
    attempted: AtomicU64,
}

fn extra_id(n: u64) -> String {
    format!("extra-{n:05}")
}

/// Creates twins `extra-<n>` in order until the node stops answering; `ledger`
/// counts creates attempted and acked. Returns the acked creates of this run.
async fn creator(api: Api, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) -> Result<u64, String> {
    let mut acked = 0;
    while !stop.load(Ordering::Relaxed) {
        let n = ledger.attempted.load(Ordering::SeqCst) + 1;
        ledger.attempted.store(n, Ordering::SeqCst);
        let body = json!({"$metadata": {"$model": MODEL}, "counter": 0, "mirror": 0});
        match api
            .put(&format!("/digitaltwins/{}", extra_id(n)), &body)
            .await
        {
            Ok(r) if r.status == StatusCode::OK => {
                ledger.acked.store(n, Ordering::SeqCst);
                acked += 1;
            }
            Ok(r) => {
                return Err(format!(
                    "PUT {} answered {} {}",
                    extra_id(n),
                    r.status,
                    r.text
                ))
            }
            Err(_) => return Ok(acked),
        }
    }
    Ok(acked)
}

fn twin_id(i: usize) -> String {
    format!("crash-{i:03}")
}

/// One writer: round-robin over its twins until the node stops answering.
/// Returns the number of acked writes, or the first unexpected answer.
async fn writer(
    api: Api,
    twins: Vec<usize>,
    ledgers: Arc<Vec<Ledger>>,
    stop: Arc<AtomicBool>,
) -> Result<u64, String> {
    let mut acked = 0u64;
    loop {
        for &i in &twins {
            if stop.load(Ordering::Relaxed) {
                return Ok(acked);
            }
            let ledger = &ledgers[i];
            let n = ledger.attempted.load(Ordering::SeqCst) + 1;
            ledger.attempted.store(n, Ordering::SeqCst);
            let patch = json!([
                {"op": "replace", "path": "/counter", "value": n},
                {"op": "replace", "path": "/mirror", "value": n},
            ]);
            match api
                .patch(&format!("/digitaltwins/{}", twin_id(i)), &patch)
                .await
            {
                Ok(r) if r.status == StatusCode::NO_CONTENT => {
                    ledger.acked.store(n, Ordering::SeqCst);
                    acked += 1;
                }
                Ok(r) => {
                    return Err(format!(
                        "PATCH {} n={n} answered {} {}",
                        twin_id(i),
                        r.status,
                        r.text
                    ))
                }
                // The node is gone (killed): this write's fate is unknown.
                Err(_) => return Ok(acked),
            }
        }
    }
}

/// Reads every twin back and checks the invariants; returns the counters read.
async fn check_invariants(api: &Api, ledgers: &[Ledger], cycle: usize) -> Vec<u64> {
    let mut counters = Vec::with_capacity(TWINS);
    let mut violations = Vec::new();
    for (i, ledger) in ledgers.iter().enumerate() {
        let id = twin_id(i);
        let r = api
            .get(&format!("/digitaltwins/{id}"))
            .await
            .expect("GET twin");
        if r.status != StatusCode::OK {
            violations.push(format!(
                "{id}: acked twin is missing after restart: {} {}",
                r.status, r.text
            ));
            counters.push(0);
            continue;
        }
        let counter = r.body["counter"].as_u64().expect("counter is an integer");
        let mirror = r.body["mirror"].as_u64().expect("mirror is an integer");
        let acked = ledger.acked.load(Ordering::SeqCst);
        let attempted = ledger.attempted.load(Ordering::SeqCst);
        if counter != mirror {
            violations.push(format!(
                "{id}: half-applied patch: counter {counter} != mirror {mirror}"
            ));
        }
        if counter < acked {
            violations.push(format!(
                "{id}: acked write lost: counter {counter} < last acked {acked}"
            ));
        }
        if counter > attempted {
            violations.push(format!(
                "{id}: invented write: counter {counter} > last attempted {attempted}"
            ));
        }
        counters.push(counter);
    }
    assert!(
        violations.is_empty(),
        "cycle {cycle}: {} violation(s):\n{}",
        violations.len(),
        violations.join("\n")
    );
    counters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acked_patches_and_creates_survive_kill9_and_none_is_half_applied_or_invented() {
    let seed: u64 = std::env::var("DOPPEL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let load_ms: Vec<u64> = (0..CYCLES).map(|_| rng.random_range(300..=1500)).collect();
    println!(
        "seed {seed} (replay with DOPPEL_TEST_SEED={seed}); kill after {load_ms:?} ms of load"
    );

    let mut node = Node::start().expect("node starts");
    let admin_token = node.token.clone();
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
    for i in 0..TWINS {
        api.put_twin(
            &twin_id(i),
            &json!({"$metadata": {"$model": MODEL}, "counter": 0, "mirror": 0}),
        )
        .await
        .expect("twin create");
    }
    let ledgers: Arc<Vec<Ledger>> = Arc::new((0..TWINS).map(|_| Ledger::default()).collect());
    let extras = Arc::new(Ledger::default());

    for (cycle, &load) in load_ms.iter().enumerate() {
        let cycle = cycle + 1;
        let api = node.api();
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let twins = (w..TWINS).step_by(WRITERS).collect();
                tokio::spawn(writer(api.clone(), twins, ledgers.clone(), stop.clone()))
            })
            .collect();
        let creates = tokio::spawn(creator(api.clone(), extras.clone(), stop.clone()));
        // The fault schedule: load for `load` ms, then SIGKILL whatever is in flight.
        tokio::time::sleep(Duration::from_millis(load)).await;
        let killed_at = Instant::now();
        node.kill9().expect("kill -9");
        stop.store(true, Ordering::Relaxed);
        let mut acked_writes = 0;
        for w in writers {
            let r = tokio::time::timeout(Duration::from_secs(30), w)
                .await
                .expect("writers notice the dead node within 30 s")
                .expect("writer task");
            acked_writes += r.unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        }
        let acked_creates = tokio::time::timeout(Duration::from_secs(30), creates)
            .await
            .expect("the creator notices the dead node within 30 s")
            .expect("creator task")
            .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        let in_flight = ledgers
            .iter()
            .filter(|l| l.attempted.load(Ordering::SeqCst) > l.acked.load(Ordering::SeqCst))
            .count();

        node.restart().expect("restart on the same data dir");
        let restarted_in = killed_at.elapsed();
        assert_eq!(
            node.token, admin_token,
            "admin.token changed across a restart"
        );
        let api = node.api();
        let counters = check_invariants(&api, &ledgers, cycle).await;
        let landed_unacked = ledgers
            .iter()
            .zip(&counters)
            .filter(|(l, &c)| c > l.acked.load(Ordering::SeqCst))
            .count();
        println!(
            "cycle {cycle}: {acked_writes} acked writes over {TWINS} twins in {load} ms; \
             {in_flight} in flight at the kill, {landed_unacked} of them landed; \
             back up {restarted_in:?} after the kill"
        );
        assert!(
            acked_writes > 0,
            "cycle {cycle}: no write was acked in {load} ms"
        );

        // Creates: the extras present are a prefix 1..=k of those sent, with every
        // acked one among them.
        let (twins, _) = api.get_all("/digitaltwins").await.expect("list twins");
        let mut present: Vec<u64> = twins
            .iter()
            .filter_map(|t| t["$dtId"].as_str()?.strip_prefix("extra-")?.parse().ok())
            .collect();
        present.sort_unstable();
        let k = present.len() as u64;
        let (c_acked, c_attempted) = (
            extras.acked.load(Ordering::SeqCst),
            extras.attempted.load(Ordering::SeqCst),
        );
        assert_eq!(
            present,
            (1..=k).collect::<Vec<_>>(),
            "cycle {cycle}: created twins are not a prefix of those sent"
        );
        assert!(
            c_acked <= k && k <= c_attempted,
            "cycle {cycle}: {k} extra twins exist; acked creates {c_acked}, attempted {c_attempted}"
        );
        assert_eq!(
            twins.len() as u64,
            TWINS as u64 + k,
            "twin count after restart"
        );
        println!(
            "cycle {cycle}: {acked_creates} acked creates; {k} extra twins exist \
             (acked {c_acked}, attempted {c_attempted})"
        );
        extras.acked.store(k, Ordering::SeqCst);
        extras.attempted.store(k, Ordering::SeqCst);

        // The model and the admin token came back too.
        let model = api
            .get(&format!("/models/{MODEL}"))
            .await
            .expect("GET model");
        assert_eq!(model.expect(StatusCode::OK)["id"], MODEL);

        // The next cycle continues from what is durable, so the ledger stays exact.
        for (ledger, &c) in ledgers.iter().zip(&counters) {
            ledger.acked.store(c, Ordering::SeqCst);
            ledger.attempted.store(c, Ordering::SeqCst);
        }
    }
    let tokens = node.api().get("/tokens").await.expect("GET /tokens");
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text);
}
