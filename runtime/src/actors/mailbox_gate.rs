//! [`MailboxGate`]: the bound on a twin actor's mailbox, and the latch that makes
//! passivation race-free.
//!
//! ractor mailboxes are unbounded, so callers pass through the gate *before* sending:
//! [`MailboxGate::try_enter`] counts the request in (or refuses it when `limit` requests
//! are already in flight), and the actor calls [`MailboxGate::leave`] once it has
//! answered. The count therefore covers queued *and* running requests.
//!
//! The same word doubles as a latch: an idle actor passivates only by swinging the count
//! from 0 to `CLOSED` ([`MailboxGate::try_close_idle`]). Once closed, no caller can enter
//! any more, so no request can be stranded in the mailbox of an actor that is stopping;
//! callers that find the gate closed ask the tenant supervisor for a fresh actor.
//!
//! ```text
//!   0 ──enter──▶ 1 ──enter──▶ … ▶ limit (enter → Full)
//!   ▲            │
//!   └───leave────┘        0 ──try_close_idle──▶ CLOSED (enter → Closed, forever)
//! ```

use std::sync::atomic::{AtomicU32, Ordering};

const CLOSED: u32 = u32::MAX;

/// The answer to a caller knocking on a twin actor's mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Counted in; the caller must send (or [`MailboxGate::leave`] if the send fails).
    Admitted,
    /// `limit` requests are already in flight: push back, do not queue.
    Full,
    /// The actor passivated or failed; activate a new one.
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

    /// Counts a request in unless `limit` are in flight or the gate is closed.
    pub fn try_enter(&self, limit: u32) -> Admission {
        let limit = limit.min(CLOSED - 1);
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            if cur == CLOSED {
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

    /// Counts a request out (answered, or never delivered). A closed gate stays closed.
    pub fn leave(&self) {
        let mut cur = self.state.load(Ordering::Acquire);
        while cur != CLOSED && cur > 0 {
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

    /// Closes the gate if nothing is in flight; true if this call closed it.
    pub fn try_close_idle(&self) -> bool {
        self.state
            .compare_exchange(0, CLOSED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Closes the gate whatever is in flight (the actor failed; its mailbox is gone).
    pub fn close(&self) {
        self.state.store(CLOSED, Ordering::Release);
    }

    pub fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) == CLOSED
    }

    /// Requests counted in and not yet answered (0 once closed).
    pub fn in_flight(&self) -> u32 {
        match self.state.load(Ordering::Acquire) {
            CLOSED => 0,
            n => n,
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
}
