//! A leader crashed mid-run comes back from its own disk: reopened (and still cut off)
//! it holds exactly what it had applied before the crash; once reconnected it catches
//! up on everything committed while it was down, by snapshot, because the others
//! purged the log it missed.

use super::fixture::{seed, Options, TestCluster};
use super::router::{Decision, RpcKind, TraceEntry};
use std::time::Duration;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn crashed_node_catches_up_from_disk() {
    let opts = Options {
        snapshot_every: 20,
        logs_to_keep: 5,
        ..Options::default()
    };
    let mut c = TestCluster::start("crashed_node_catches_up_from_disk", seed(), opts).await;
    let t = Duration::from_secs(5);
    for id in 1..=10 {
        c.write(0, id, t)
            .await
            .unwrap_or_else(|e| panic!("write {id}: {e:?}"));
    }
    c.wait_converged(0, t)
        .await
        .expect("converged before the crash");
    let victim = c.leader(0, &c.up()).expect("a leader");
    let before = c.stored_ids(victim, 0);
    assert_eq!(before, (1..=10).collect::<Vec<_>>());

    c.crash(victim).await;
    for id in 11..=60 {
        c.write(0, id, t)
            .await
            .unwrap_or_else(|e| panic!("write {id} with node {victim} down: {e:?}"));
    }

    c.isolate(victim);
    c.restart(victim).await;
    assert_eq!(
        c.stored_ids(victim, 0),
        before,
        "node {victim} reopened from disk"
    );

    c.heal();
    c.wait_converged(0, Duration::from_secs(20))
        .await
        .expect("the restarted node catches up");
    for n in c.ids() {
        assert_eq!(
            c.stored_ids(n, 0),
            (1..=60).collect::<Vec<_>>(),
            "node {n}'s writes"
        );
    }
    let trace = c.trace();
    let restarted_at = trace
        .iter()
        .rposition(|e| matches!(e, TraceEntry::Fault { what, .. } if *what == format!("start node {victim}")))
        .expect("the restart is in the trace");
    assert!(
        trace[restarted_at..].iter().any(|e| matches!(
            e,
            TraceEntry::Message { to, kind: RpcKind::Snapshot, decision: Decision::Deliver { .. }, .. }
                if *to == victim
        )),
        "node {victim} caught up without a snapshot, so the test did not exercise one"
    );
    c.shutdown().await;
}
