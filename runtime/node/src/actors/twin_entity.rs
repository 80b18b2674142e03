//! [`TwinEntity`]: one active twin, as its host keeps it in memory. Its size is the
//! density figure (`doppel bench density`), so it holds only what the runtime needs:
//!
//! - [`CommittedTwin`]: the committed twin's etag and desired-property version (enough
//!   to tell a stale `If-Match` or a stale device ack from a current one) — not the
//!   whole JSON record, which stays in storage and is read by whoever needs it;
//! - the last activity (an 8-byte stamp, for the host's idle sweep);
//! - whether one of its commands is running, and a backlog of requests queued behind
//!   it (allocated only while there is one: an idle twin holds a null pointer).
//!
//! Correctness contract: [`CommittedTwin`] is only ever what storage returned at
//! activation or what a committed `Outcome` said ([`Change::of`]); it never runs ahead
//! of what is durable. At most one operation of a twin runs at a time, and queued
//! operations run in arrival order ([`TwinEntity::offer`] / [`TwinEntity::next_queued`]).
//!
//! Pure state: no I/O, no clock reads — the host passes time in.

pub use super::committed::{Change, CommittedTwin};
use super::idle_clock::IdleClock;
use super::messages::{ActivationReply, TwinOp};
use std::collections::VecDeque;

/// Requests waiting for a busy (or draining) twin. Boxed and optional: most active
/// twins are idle and must not pay for two empty collections.
#[derive(Default)]
struct Backlog {
    ops: VecDeque<TwinOp>,
    /// Activations asked for while the twin drains; answered once it has been dropped
    /// and re-read from storage.
    activations: Vec<ActivationReply>,
}

pub struct TwinEntity {
    /// `None`: the twin does not exist (yet).
    committed: Option<CommittedTwin>,
    last_active: u64,
    busy: bool,
    backlog: Option<Box<Backlog>>,
}

impl TwinEntity {
    /// A twin activated at stamp `now` with its durable state.
    pub fn new(committed: Option<CommittedTwin>, now: u64) -> Self {
        TwinEntity {
            committed,
            last_active: now,
            busy: false,
            backlog: None,
        }
    }

    pub fn committed(&self) -> Option<&CommittedTwin> {
        self.committed.as_ref()
    }

    /// Whether the twin exists; a twin that does not is dropped as soon as it is
    /// quiescent (a 404 must not pin memory).
    pub fn exists(&self) -> bool {
        self.committed.is_some()
    }

    pub fn is_busy(&self) -> bool {
        self.busy
    }

    /// Nothing running and nothing queued.
    pub fn is_quiescent(&self) -> bool {
        !self.busy && self.backlog.as_ref().is_none_or(|b| b.ops.is_empty())
    }

    pub fn touch(&mut self, now: u64) {
        self.last_active = now;
    }

    /// Whether the host may passivate the twin at stamp `now`.
    pub fn is_idle(&self, clock: &IdleClock, now: u64) -> bool {
        self.is_quiescent() && clock.is_idle(self.last_active, now)
    }

    /// A request arrives: `Some(op)` to start it now, or `None` if it was queued behind
    /// the running one (or behind earlier queued ones: arrival order is kept).
    pub fn offer(&mut self, op: TwinOp) -> Option<TwinOp> {
        if self.is_quiescent() {
            return Some(op);
        }
        self.backlog.get_or_insert_default().ops.push_back(op);
        None
    }

    /// The operation just started runs on after this call returns (its result comes
    /// back through [`TwinEntity::finish`]).
    pub fn mark_running(&mut self) {
        self.busy = true;
    }

    /// The running operation finished with `change` at stamp `now`.
    pub fn finish(&mut self, change: Change, now: u64) {
        match change {
            Change::Replaced(c) => self.committed = Some(c),
            Change::Deleted => self.committed = None,
            Change::Unchanged => {}
        }
        self.busy = false;
        self.touch(now);
    }

    /// The next queued operation, if nothing runs.
    pub fn next_queued(&mut self) -> Option<TwinOp> {
        if self.busy {
            return None;
        }
        let backlog = self.backlog.as_mut()?;
        let op = backlog.ops.pop_front();
        self.shrink();
        op
    }

    /// Parks an activation until the draining twin has been dropped.
    pub fn wait_for_activation(&mut self, reply: ActivationReply) {
        self.backlog.get_or_insert_default().activations.push(reply);
    }

    /// The parked activations (the twin is being dropped).
    pub fn take_waiting_activations(&mut self) -> Vec<ActivationReply> {
        let waiting = self
            .backlog
            .as_mut()
            .map(|b| std::mem::take(&mut b.activations))
            .unwrap_or_default();
        self.shrink();
        waiting
    }

    fn shrink(&mut self) {
        if self
            .backlog
            .as_ref()
            .is_some_and(|b| b.ops.is_empty() && b.activations.is_empty())
        {
            self.backlog = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use doppel_cluster::ProposeError;
    use doppel_twins::{Command, Outcome, TwinError, TwinRecord};
    use std::time::{Duration, Instant};
    use tokio::sync::oneshot;

    fn record(etag: &str) -> TwinRecord {
        TwinRecord {
            id: "t".into(),
            etag: etag.into(),
            model: "dtmi:x:T;1".into(),
            last_update_time: "2025-01-01T00:00:00Z".into(),
            desired_version: 7,
            root: Default::default(),
            components: Default::default(),
            connection: None,
        }
    }

    fn entity(etag: Option<&str>) -> TwinEntity {
        TwinEntity::new(etag.map(|e| CommittedTwin::of(&record(e))), 0)
    }

    fn etag(e: &TwinEntity) -> Option<&str> {
        e.committed().map(|c| &*c.etag)
    }

    fn twin_outcome(etag: &str) -> Result<Outcome, ProposeError> {
        Ok(Outcome::Twin {
            twin: record(etag),
            created: false,
            changed: true,
        })
    }

    fn execute(n: u32) -> (TwinOp, oneshot::Receiver<Result<Outcome, ProposeError>>) {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::DeleteTwin {
            tenant: "acme".into(),
            twin_id: format!("t{n}"),
            condition: doppel_twins::Condition::Always,
        };
        (
            TwinOp::Execute {
                cmd: Box::new(cmd),
                reply,
            },
            rx,
        )
    }

    fn twin_of(op: &TwinOp) -> &str {
        match op {
            TwinOp::Execute { cmd, .. } => cmd.twin().map(|(_, t)| t).unwrap_or(""),
            _ => "",
        }
    }

    #[test]
    fn the_copy_is_small_and_keeps_etag_and_desired_version() {
        let c = CommittedTwin::of(&record("W/\"00000000000000ab\""));
        assert_eq!(&*c.etag, "W/\"00000000000000ab\"");
        assert_eq!(c.desired_version, 7);
        assert!(
            std::mem::size_of::<TwinEntity>() <= 48,
            "an idle twin's entity grew to {} bytes",
            std::mem::size_of::<TwinEntity>()
        );
    }

    #[test]
    fn a_committed_twin_outcome_replaces_the_copy() {
        let mut e = entity(Some("a"));
        e.mark_running();
        e.finish(Change::of(false, &twin_outcome("b")), 5);
        assert_eq!(etag(&e), Some("b"));
        assert!(e.exists());
    }

    #[test]
    fn a_rejected_command_leaves_the_copy_as_it_was() {
        let mut e = entity(Some("a"));
        let rejected = Err(ProposeError::Rejected(TwinError::PreconditionFailed(
            "etag".into(),
        )));
        e.finish(Change::of(true, &rejected), 1);
        e.finish(Change::of(false, &Err(ProposeError::Overloaded)), 2);
        assert_eq!(etag(&e), Some("a"));
    }

    #[test]
    fn a_committed_delete_empties_the_copy_and_the_twin_is_not_worth_keeping() {
        let mut e = entity(Some("a"));
        e.finish(Change::of(true, &Ok(Outcome::Done)), 1);
        assert_eq!(etag(&e), None);
        assert!(!e.exists());
    }

    #[test]
    fn telemetry_outcomes_do_not_touch_the_copy() {
        let mut e = entity(Some("a"));
        e.finish(Change::of(false, &Ok(Outcome::Done)), 1);
        assert_eq!(etag(&e), Some("a"));
    }

    #[test]
    fn one_operation_runs_at_a_time_and_the_queue_keeps_arrival_order() {
        let mut e = entity(Some("a"));
        let (op1, _r1) = execute(1);
        let first = e.offer(op1).expect("an idle twin starts at once");
        assert_eq!(twin_of(&first), "t1");
        e.mark_running();
        let mut receivers = Vec::new();
        for n in 2..=4 {
            let (op, rx) = execute(n);
            assert!(e.offer(op).is_none(), "queued behind the running one");
            receivers.push(rx);
        }
        assert!(e.next_queued().is_none(), "nothing starts while one runs");
        assert!(!e.is_quiescent());
        e.finish(Change::Unchanged, 1);
        let mut order = Vec::new();
        while let Some(op) = e.next_queued() {
            order.push(twin_of(&op).to_owned());
            e.mark_running();
            e.finish(Change::Unchanged, 2);
        }
        assert_eq!(order, ["t2", "t3", "t4"]);
        assert!(e.is_quiescent());
        assert!(e.backlog.is_none(), "an emptied backlog is freed");
    }

    #[test]
    fn a_newcomer_never_overtakes_queued_requests() {
        let mut e = entity(Some("a"));
        e.mark_running();
        let (op2, _r2) = execute(2);
        assert!(e.offer(op2).is_none());
        e.finish(Change::Unchanged, 1);
        // Finished but the queue is not yet pumped: a new arrival queues behind t2.
        let (op3, _r3) = execute(3);
        assert!(e.offer(op3).is_none());
        assert_eq!(
            e.next_queued().map(|op| twin_of(&op).to_owned()),
            Some("t2".into())
        );
    }

    #[test]
    fn only_a_quiescent_twin_goes_idle() {
        let clock = IdleClock::new(Duration::from_millis(100), Instant::now());
        let mut e = entity(Some("a"));
        assert!(!e.is_idle(&clock, 99));
        assert!(e.is_idle(&clock, 100));
        e.mark_running();
        assert!(!e.is_idle(&clock, 1_000));
        e.finish(Change::Unchanged, 1_000);
        assert!(!e.is_idle(&clock, 1_050));
        assert!(e.is_idle(&clock, 1_100));
    }

    #[test]
    fn parked_activations_are_handed_back_once() {
        let mut e = entity(Some("a"));
        let (tx, _rx) = oneshot::channel();
        e.wait_for_activation(tx);
        assert!(
            e.is_quiescent(),
            "waiting activations are not work of this twin"
        );
        assert_eq!(e.take_waiting_activations().len(), 1);
        assert!(e.take_waiting_activations().is_empty());
        assert!(e.backlog.is_none());
    }
}
