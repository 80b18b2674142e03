//! The same seed gives the same fault decisions: one schedule (loss and delay rules, a
//! leader isolated mid-run, heal) is run several times on fresh paused runtimes with
//! one seed. Asserted: every message that two runs sent as the k-th on a link under the
//! same faults (the same count of rule, partition and node changes before it) got the
//! same decision, over 100 of them at least, and the next seed decides differently.
//! Printed: how much of the whole trace (which message was the k-th, at what virtual
//! time) is identical across runs, exactly and up to the order of sends at one virtual
//! instant; see the module doc of `main.rs` for why that part is not guaranteed.

use super::fixture::{seed, Options, TestCluster};
use super::router::{Decision, Rule, TraceEntry};
use std::collections::BTreeMap;
use std::time::Duration;

/// Runs of one seed (`DOPPEL_REPLAY_RUNS` to measure with more).
fn runs() -> usize {
    std::env::var("DOPPEL_REPLAY_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
}

fn run(seed: u64) -> Vec<TraceEntry> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let opts = Options {
            rules: vec![Rule::any().drop(0.1).drop_reply(0.05).delay_ms(0..=30)],
            ..Options::default()
        };
        let c = TestCluster::start("fault_schedule_replays_from_seed", seed, opts).await;
        let t = Duration::from_secs(3);
        for id in 1..=10 {
            let _ = c.write(0, id, t).await;
        }
        if let Some(l) = c.leader(0, &c.up()) {
            c.isolate(l);
        }
        for id in 11..=20 {
            let _ = c.write(0, id, t).await;
        }
        c.heal();
        c.clear_rules();
        c.wait_converged(0, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let trace = c.trace();
        c.shutdown().await;
        trace
    })
}

/// Per link, each message's fault epoch and decision, in message order.
fn by_link(trace: &[TraceEntry]) -> BTreeMap<(u64, u64), Vec<(u64, Decision)>> {
    let mut out: BTreeMap<(u64, u64), Vec<(u64, Decision)>> = BTreeMap::new();
    for e in trace {
        if let TraceEntry::Message {
            from,
            to,
            k,
            epoch,
            decision,
            ..
        } = e
        {
            let link = out.entry((*from, *to)).or_default();
            assert_eq!(
                link.len() as u64,
                *k,
                "link {from}→{to} numbers its messages in order"
            );
            link.push((*epoch, *decision));
        }
    }
    out
}

/// The trace with each run of messages sent at one virtual instant sorted by link: two
/// tasks woken at the same instant may run in either order (see `main.rs`).
fn canonical(trace: &[TraceEntry]) -> Vec<TraceEntry> {
    let key = |e: &TraceEntry| match e {
        TraceEntry::Message {
            at_ms, from, to, k, ..
        } => Some((*at_ms, *from, *to, *k)),
        TraceEntry::Fault { .. } => None,
    };
    let mut out = trace.to_vec();
    for run in out.chunk_by_mut(|a, b| matches!((key(a), key(b)), (Some(x), Some(y)) if x.0 == y.0))
    {
        run.sort_by_key(key);
    }
    out
}

/// How many messages both traces decided under the same faults, and the first of them
/// that was decided differently.
fn compare(a: &[TraceEntry], b: &[TraceEntry]) -> (usize, Option<String>) {
    let (a, b) = (by_link(a), by_link(b));
    let mut same_epoch = 0;
    for (link, da) in &a {
        let db = b.get(link).map(Vec::as_slice).unwrap_or_default();
        for (k, (x, y)) in da.iter().zip(db).enumerate() {
            if x.0 == y.0 {
                if x.1 != y.1 {
                    return (
                        same_epoch,
                        Some(format!("link {link:?} #{k}: {x:?} vs {y:?}")),
                    );
                }
                same_epoch += 1;
            }
        }
    }
    (same_epoch, None)
}

#[test]
fn fault_schedule_replays_from_seed() {
    let seed = seed();
    let traces: Vec<Vec<TraceEntry>> = (0..runs()).map(|_| run(seed)).collect();
    let first = &traces[0];
    let mut compared = 0;
    for (i, other) in traces.iter().enumerate().skip(1) {
        let same = first.iter().zip(other).take_while(|(a, b)| a == b).count();
        let (ca, cb) = (canonical(first), canonical(other));
        let same_canonical = ca.iter().zip(&cb).take_while(|(a, b)| a == b).count();
        let whole = |n: usize| n == first.len() && first.len() == other.len();
        println!(
            "seed {seed}: run {i} vs run 0: {same} of {}/{} trace entries identical{}; \
             {same_canonical} up to the order of sends at one virtual instant{}",
            first.len(),
            other.len(),
            if whole(same) { " (all)" } else { "" },
            if whole(same_canonical) { " (all)" } else { "" },
        );
        if !whole(same_canonical) {
            println!(
                "  first difference: {:?} vs {:?}",
                ca.get(same_canonical).map(ToString::to_string),
                cb.get(same_canonical).map(ToString::to_string)
            );
        }
        let (n, differs) = compare(first, other);
        assert_eq!(
            differs, None,
            "seed {seed}: run {i} decided a message differently"
        );
        compared += n;
    }
    assert!(compared > 100, "only {compared} decisions compared");

    let other_seed = run(seed.wrapping_add(1));
    assert!(
        compare(first, &other_seed).1.is_some(),
        "seeds {seed} and {} decided every message alike",
        seed.wrapping_add(1)
    );
}
