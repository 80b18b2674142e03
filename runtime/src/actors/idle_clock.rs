//! [`IdleClock`]: when an active twin actor passivates.
//!
//! A twin actor is passivated (stopped; its state stays on disk) once it has handled
//! nothing for `idle`. The actor keeps one timer outstanding: each check either decides
//! to passivate or says when to look again, so a busy twin costs no timer per message.
//! Nothing in flight is a precondition (a check while requests wait in the mailbox
//! just looks again later).

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleDecision {
    Passivate,
    CheckAgainIn(Duration),
}

#[derive(Debug, Clone)]
pub struct IdleClock {
    idle: Duration,
    last_activity: Instant,
}

impl IdleClock {
    pub fn new(idle: Duration, now: Instant) -> Self {
        IdleClock {
            idle,
            last_activity: now,
        }
    }

    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// The actor did something at `now`.
    pub fn touch(&mut self, now: Instant) {
        self.last_activity = now;
    }

    /// Decides at `now`, with `in_flight` requests counted in the mailbox gate.
    pub fn decide(&self, now: Instant, in_flight: u32) -> IdleDecision {
        if in_flight > 0 {
            return IdleDecision::CheckAgainIn(self.idle);
        }
        let quiet = now.saturating_duration_since(self.last_activity);
        if quiet >= self.idle {
            IdleDecision::Passivate
        } else {
            IdleDecision::CheckAgainIn(self.idle - quiet)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(60);

    #[test]
    fn an_untouched_actor_passivates_after_the_idle_time() {
        let t0 = Instant::now();
        let c = IdleClock::new(IDLE, t0);
        assert_eq!(
            c.decide(t0 + Duration::from_secs(59), 0),
            IdleDecision::CheckAgainIn(Duration::from_secs(1))
        );
        assert_eq!(c.decide(t0 + IDLE, 0), IdleDecision::Passivate);
    }

    #[test]
    fn activity_pushes_passivation_back() {
        let t0 = Instant::now();
        let mut c = IdleClock::new(IDLE, t0);
        c.touch(t0 + Duration::from_secs(50));
        assert_eq!(
            c.decide(t0 + IDLE, 0),
            IdleDecision::CheckAgainIn(Duration::from_secs(50))
        );
        assert_eq!(
            c.decide(t0 + Duration::from_secs(110), 0),
            IdleDecision::Passivate
        );
    }

    #[test]
    fn requests_in_flight_keep_the_actor_alive() {
        let t0 = Instant::now();
        let c = IdleClock::new(IDLE, t0);
        assert_eq!(c.decide(t0 + 2 * IDLE, 1), IdleDecision::CheckAgainIn(IDLE));
    }

    #[test]
    fn a_clock_that_goes_backwards_is_treated_as_no_time_passed() {
        let t0 = Instant::now() + Duration::from_secs(5);
        let c = IdleClock::new(IDLE, t0);
        assert_eq!(
            c.decide(t0 - Duration::from_secs(5), 0),
            IdleDecision::CheckAgainIn(IDLE)
        );
    }
}
