//! Safety under a seeded fault schedule: two groups on three nodes, every message
//! subject to loss (request or answer, 5% each) and delay (0–40 ms), and eight steps
//! that each heal, isolate a random node or isolate a group's leader, then write.
//! After healing:
//! - every acknowledged write is on every node's disk;
//! - every node applied each write at most once, and the acknowledged ones in the order
//!   they were acknowledged (writes are sequential per group, so ack order is log order);
//! - every node applied the same sequence (one log);
//! - no two nodes led one group in the same term.

use super::fixture::{seed, Options, TestCluster, WriteError};
use super::router::{draw, Rule};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn acked_writes_survive_random_faults() {
    let seed = seed();
    let opts = Options {
        groups: vec![0, 1],
        ..Options::default()
    };
    let c = TestCluster::start("acked_writes_survive_random_faults", seed, opts).await;
    c.add_rule(Rule::any().drop(0.05).drop_reply(0.05).delay_ms(0..=40));

    let mut acked: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut attempts = 0;
    let mut id = 0;
    for step in 0..8 {
        c.heal();
        match draw(seed, step, 0, 0, 100) % 3 {
            0 => {}
            1 => c.isolate(1 + draw(seed, step, 0, 0, 101) % 3),
            _ => {
                if let Some(l) = c.leader(step as u32 % 2, &c.up()) {
                    c.isolate(l);
                }
            }
        }
        for _ in 0..6 {
            id += 1;
            attempts += 1;
            let g = (id % 2) as u32;
            match c.write(g, id, Duration::from_millis(1500)).await {
                Ok(_) => acked.entry(g).or_default().push(id),
                Err(WriteError::NotLeader) => {}
                Err(WriteError::Ambiguous(why)) => println!("write {id}: ambiguous ({why})"),
            }
        }
    }
    c.heal();
    c.clear_rules();

    let total: usize = acked.values().map(Vec::len).sum();
    println!("{total} of {attempts} writes acknowledged");
    assert!(
        total >= attempts / 4,
        "only {total} of {attempts} writes acknowledged"
    );
    for g in c.groups() {
        c.wait_converged(g, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let acked = acked.get(&g).cloned().unwrap_or_default();
        let reference = c.applied_ids(1, g);
        for n in c.ids() {
            let stored: BTreeSet<u64> = c.stored_ids(n, g).into_iter().collect();
            let missing: Vec<u64> = acked
                .iter()
                .copied()
                .filter(|i| !stored.contains(i))
                .collect();
            assert!(
                missing.is_empty(),
                "node {n} group {g} lost acknowledged writes {missing:?}"
            );

            let applied = c.applied_ids(n, g);
            let distinct: BTreeSet<u64> = applied.iter().copied().collect();
            assert_eq!(
                distinct.len(),
                applied.len(),
                "node {n} group {g} applied a write twice: {applied:?}"
            );
            let positions: Vec<usize> = acked
                .iter()
                .map(|i| {
                    applied
                        .iter()
                        .position(|a| a == i)
                        .expect("applied, as stored")
                })
                .collect();
            assert!(
                positions.windows(2).all(|w| w[0] < w[1]),
                "node {n} group {g} applied acknowledged writes out of order: {applied:?} (acked {acked:?})"
            );
            assert_eq!(
                applied, reference,
                "node {n} and node 1 applied different logs of group {g}"
            );
        }
    }
    for ((g, term), leaders) in c.leaders_by_term() {
        assert_eq!(
            leaders.len(),
            1,
            "group {g} term {term} had leaders {leaders:?}"
        );
    }
    c.shutdown().await;
}
