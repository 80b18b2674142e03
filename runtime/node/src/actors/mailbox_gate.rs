//! [`MailboxGate`]: the bound on one twin's queue, and the latch that makes passivation
//! race-free.
//!
//! A twin host's mailbox is unbounded (ractor's are), so callers pass through the twin's
//! gate *before* sending: [`MailboxGate::try_enter`] counts the request in (or refuses it
//! when `limit` requests are already in flight), and the request's answerer calls
//! [`MailboxGate::leave`] just before answering. The count therefore covers requests on
//! their way to the host, queued behind the twin's running command, and running.
//!
//! The same word doubles as a latch: a twin is passivated only by swinging the count from
//! 0 to `CLOSED` ([`MailboxGate::try_close_idle`]). Once closed, no caller can enter any
//! more, so no request can be stranded on its way to a twin that is being dropped;
//! callers that find the gate closed ask the host for a fresh activation.
//!
//! Draining ([`MailboxGate::drain`], when the node stops leading the twin's shard) stops
//! new admissions at once but keeps counting the requests already admitted; the twin is
//! dropped when the last of them has been answered (the count reaches 0 and the host
//! closes the gate).
//!
//! ```text
//!   0 ──enter──▶ 1 ──enter──▶ … ▶ limit (enter → Full)
//!   ▲            │
//!   └───leave────┘        0 ──try_close_idle──▶ CLOSED (enter → Closed, forever)
//!   n ──drain──▶ n|DRAINING (enter → Closed) ──leave…──▶ DRAINING ──try_close_idle──▶ CLOSED
//! ```

use std::sync::atomic::{AtomicU32, Ordering};

const CLOSED: u32 = u32::MAX;
/// Set while draining: no new admissions; the low bits still count requests in flight.
const DRAINING: u32 = 1 << 31;
const COUNT: u32 = DRAINING - 1;

/// The answer to a caller knocking on a twin's gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Counted in; the caller must send (or [`MailboxGate::leave`] if the send fails).
    Admitted,
    /// `limit` requests are already in flight: push back, do not queue.
    Full,
    /// The twin passivated, failed or is draining; look it up (activate it) again.
    Closed,
}

#[derive(Debug, Default)]
pub struct MailboxGate {
    state: AtomicU32,
}

impl MailboxGate {
    pub fn new() -> Self {
        MailboxGate::default()
    }

    /// Counts a request in unless `limit` are in flight or the gate is closed/draining.
    pub fn try_enter(&self, limit: u32) -> Admission {
        let limit = limit.min(COUNT);
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            if cur == CLOSED || cur & DRAINING != 0 {
                return Admission::Closed;
            }
            if cur >= limit {
                return Admission::Full;
            }
            match self.state.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Admission::Admitted,
                Err(now) => cur = now,
            }
        }
    }

    /// Counts a request out (answered, or never delivered). A closed gate stays closed;
    /// a draining one keeps draining.
    pub fn leave(&self) {
        let mut cur = self.state.load(Ordering::Acquire);
        while cur != CLOSED && cur & COUNT > 0 {
            match self.state.compare_exchange_weak(
                cur,
                cur - 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }

    /// Closes the gate if nothing is in flight (draining or not); true if this call
    /// closed it.
    pub fn try_close_idle(&self) -> bool {
        let mut cur = self.state.load(Ordering::Acquire);
        while cur != CLOSED && cur & COUNT == 0 {
            match self
                .state
                .compare_exchange_weak(cur, CLOSED, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
        false
    }

    /// Stops admitting new requests; those in flight are still counted out.
    pub fn drain(&self) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (cur != CLOSED).then_some(cur | DRAINING)
            });
    }

    /// Closes the gate whatever is in flight (the twin failed; its queue is gone).
    pub fn close(&self) {
        self.state.store(CLOSED, Ordering::Release);
    }

    /// Whether the gate refuses new requests (closed, or draining).
    pub fn is_closed(&self) -> bool {
        let cur = self.state.load(Ordering::Acquire);
        cur == CLOSED || cur & DRAINING != 0
    }

    /// Whether the gate is draining (refusing new requests, not yet closed).
    pub fn is_draining(&self) -> bool {
        let cur = self.state.load(Ordering::Acquire);
        cur != CLOSED && cur & DRAINING != 0
    }

    /// Requests counted in and not yet answered (0 once closed).
    pub fn in_flight(&self) -> u32 {
        match self.state.load(Ordering::Acquire) {
            CLOSED => 0,
            n => n & COUNT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_then_refuses_instead_of_queueing() {
        let gate = MailboxGate::new();
        for _ in 0..3 {
            assert_eq!(gate.try_enter(3), Admission::Admitted);
        }
        assert_eq!(gate.try_enter(3), Admission::Full);
        assert_eq!(gate.in_flight(), 3);
        gate.leave();
        assert_eq!(gate.try_enter(3), Admission::Admitted);
        assert_eq!(gate.try_enter(3), Admission::Full);
    }

    #[test]
    fn an_idle_gate_closes_and_then_admits_nobody() {
        let gate = MailboxGate::new();
        assert!(gate.try_close_idle());
        assert!(gate.is_closed());
        assert_eq!(gate.try_enter(10), Admission::Closed);
        gate.leave();
        assert!(gate.is_closed(), "leave must not reopen a closed gate");
        assert_eq!(gate.in_flight(), 0);
    }

    #[test]
    fn a_busy_gate_does_not_close_for_idleness() {
        let gate = MailboxGate::new();
        assert_eq!(gate.try_enter(10), Admission::Admitted);
        assert!(!gate.try_close_idle());
        gate.leave();
        assert!(gate.try_close_idle());
    }

    #[test]
    fn a_failed_actor_closes_its_gate_even_when_busy() {
        let gate = MailboxGate::new();
        assert_eq!(gate.try_enter(10), Admission::Admitted);
        gate.close();
        assert_eq!(gate.try_enter(10), Admission::Closed);
    }

    #[test]
    fn leave_never_underflows() {
        let gate = MailboxGate::new();
        gate.leave();
        assert_eq!(gate.in_flight(), 0);
        assert_eq!(gate.try_enter(1), Admission::Admitted);
    }

    #[test]
    fn concurrent_callers_never_exceed_the_limit() {
        let gate = std::sync::Arc::new(MailboxGate::new());
        let admitted = std::sync::Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (gate, admitted) = (gate.clone(), admitted.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        if gate.try_enter(5) == Admission::Admitted {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(admitted.load(Ordering::Relaxed), 5);
        assert_eq!(gate.in_flight(), 5);
    }

    #[test]
    fn a_draining_gate_refuses_newcomers_but_counts_out_those_admitted() {
        let gate = MailboxGate::new();
        assert_eq!(gate.try_enter(10), Admission::Admitted);
        assert_eq!(gate.try_enter(10), Admission::Admitted);
        gate.drain();
        assert!(gate.is_closed() && gate.is_draining());
        assert_eq!(gate.try_enter(10), Admission::Closed);
        assert_eq!(gate.in_flight(), 2);
        assert!(!gate.try_close_idle(), "two requests are still in flight");
        gate.leave();
        gate.leave();
        gate.leave();
        assert_eq!(gate.in_flight(), 0);
        assert!(gate.is_draining(), "leave must not end the draining");
        assert!(gate.try_close_idle());
        assert!(!gate.is_draining());
        gate.drain();
        assert_eq!(gate.try_enter(10), Admission::Closed);
        assert!(!gate.try_close_idle(), "already closed");
    }
}
