//! [`IdleClock`]: when an active twin is passivated.
//!
//! A twin that has handled nothing for `idle` is passivated (dropped from memory; its
//! state stays on disk). There is no timer per twin: each twin host sweeps its twins
//! every [`IdleClock::sweep_every`] (a quarter of `idle`, within bounds), so a twin
//! passivates between `idle` and `idle + sweep_every` after its last activity, and an
//! idle twin costs one 8-byte timestamp ([`IdleClock::stamp`]) instead of a timer.
//! Nothing in flight is a precondition the host checks before asking the clock.

use std::time::{Duration, Instant};

/// Bounds of the sweep period: often enough for short test idle times, and a twin
/// never outlives its idle time by more than `MAX_SWEEP`.
const MIN_SWEEP: Duration = Duration::from_millis(5);
const MAX_SWEEP: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub struct IdleClock {
    idle: Duration,
    epoch: Instant,
}

impl IdleClock {
    /// `epoch` is the origin of the compact timestamps.
    pub fn new(idle: Duration, epoch: Instant) -> Self {
        IdleClock { idle, epoch }
    }

    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// How often a host looks for idle twins.
    pub fn sweep_every(&self) -> Duration {
        (self.idle / 4).clamp(MIN_SWEEP, MAX_SWEEP)
    }

    /// `now` as milliseconds since the epoch (what a twin keeps as its last activity).
    pub fn stamp(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Whether a twin last active at stamp `last` has been idle long enough at `now`.
    /// A clock that goes backwards counts as no time passed.
    pub fn is_idle(&self, last: u64, now: u64) -> bool {
        u128::from(now.saturating_sub(last)) >= self.idle.as_millis()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(60);

    #[test]
    fn an_untouched_twin_is_idle_after_the_idle_time() {
        let t0 = Instant::now();
        let c = IdleClock::new(IDLE, t0);
        let last = c.stamp(t0);
        assert!(!c.is_idle(last, c.stamp(t0 + Duration::from_secs(59))));
        assert!(c.is_idle(last, c.stamp(t0 + IDLE)));
    }

    #[test]
    fn activity_pushes_passivation_back() {
        let t0 = Instant::now();
        let c = IdleClock::new(IDLE, t0);
        let last = c.stamp(t0 + Duration::from_secs(50));
        assert!(!c.is_idle(last, c.stamp(t0 + IDLE)));
        assert!(c.is_idle(last, c.stamp(t0 + Duration::from_secs(110))));
    }

    #[test]
    fn a_clock_that_goes_backwards_is_treated_as_no_time_passed() {
        let t0 = Instant::now();
        let c = IdleClock::new(IDLE, t0 + Duration::from_secs(1));
        let last = c.stamp(t0 + Duration::from_secs(5));
        assert!(!c.is_idle(last, c.stamp(t0 + Duration::from_secs(2))));
        assert_eq!(c.stamp(t0), 0, "before the epoch");
    }

    #[test]
    fn the_sweep_period_is_a_quarter_of_the_idle_time_within_bounds() {
        let t0 = Instant::now();
        let c = |ms| IdleClock::new(Duration::from_millis(ms), t0).sweep_every();
        assert_eq!(c(100), Duration::from_millis(25));
        assert_eq!(c(4), MIN_SWEEP);
        assert_eq!(c(3_600_000), MAX_SWEEP);
    }
}
