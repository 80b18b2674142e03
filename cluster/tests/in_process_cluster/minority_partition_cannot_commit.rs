//! A leader cut off in a minority cannot commit: its write is never acknowledged and
//! never applied anywhere, it cannot serve a linearizable read, while the majority
//! elects a new leader in a later term and keeps committing. After healing, every
//! node holds exactly the majority's writes.

use super::fixture::{seed, Options, TestCluster};
use std::time::Duration;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn minority_partition_cannot_commit() {
    let c = TestCluster::start(
        "minority_partition_cannot_commit",
        seed(),
        Options::default(),
    )
    .await;
    let all: Vec<u64> = c.ids().collect();
    c.write(0, 1, Duration::from_secs(5))
        .await
        .expect("write 1 before the partition");

    let old = c.leader(0, &all).expect("a leader");
    let old_term = c.raft(old, 0).metrics().borrow().current_term;
    let majority: Vec<u64> = all.iter().copied().filter(|&n| n != old).collect();
    c.partition(&[old], &majority);

    let minority_write = c.write_via(old, 0, 2, Duration::from_secs(2)).await;
    assert!(
        minority_write.is_err(),
        "node {old}, cut off from {majority:?}, acknowledged a write"
    );
    let read = c.linearizable_read(old, 0, Duration::from_secs(1)).await;
    assert!(
        read.is_err(),
        "node {old} served a linearizable read alone: {read:?}"
    );

    let new = c
        .wait_leader(0, &majority, Duration::from_secs(5))
        .await
        .expect("the majority elects a leader");
    let new_term = c.raft(new, 0).metrics().borrow().current_term;
    assert!(
        new_term > old_term,
        "new leader {new} in term {new_term} ≤ {old_term}"
    );
    c.write_via(new, 0, 3, Duration::from_secs(2))
        .await
        .expect("the majority commits");

    c.heal();
    c.wait_converged(0, Duration::from_secs(10))
        .await
        .expect("converges after healing");
    for n in c.ids() {
        assert_eq!(c.stored_ids(n, 0), vec![1, 3], "node {n}'s writes");
        assert_eq!(c.applied_ids(n, 0), vec![1, 3], "node {n}'s applied writes");
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
