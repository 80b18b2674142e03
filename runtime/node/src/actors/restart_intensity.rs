//! [`RestartIntensity`]: when a tenant supervisor restarts a failed twin, and when it
//! gives up on the tenant for a while.
//!
//! Contract: more than `max_restarts` failures of the tenant's twins within `window`
//! suspend the tenant until `cool_off` has passed. While suspended every failure is
//! answered with the same suspension (no restarts); when the cool-off ends the history
//! is forgotten, so the tenant starts over with a full budget.
//!
//! Pure decision logic: the caller passes the clock in, so tests need no sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The limits; built from the node config (`tenant_max_restarts`,
/// `tenant_restart_window_ms`, `tenant_suspend_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntensityLimit {
    pub max_restarts: u32,
    pub window: Duration,
    pub cool_off: Duration,
}

/// What a supervisor does about one failed twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureDecision {
    /// Restart the twin from durable state.
    Restart,
    /// Stop restarting: the tenant is suspended until `until`. `newly` is true for the
    /// failure that tripped the limit (log the event once, not per failure).
    Suspend { until: Instant, newly: bool },
}

#[derive(Debug)]
pub struct RestartIntensity {
    limit: IntensityLimit,
    recent: VecDeque<Instant>,
    suspended_until: Option<Instant>,
}

impl RestartIntensity {
    pub fn new(limit: IntensityLimit) -> Self {
        RestartIntensity {
            limit,
            recent: VecDeque::new(),
            suspended_until: None,
        }
    }

    pub fn limit(&self) -> IntensityLimit {
        self.limit
    }

    /// Records one failure at `now` and decides what to do about it.
    pub fn on_failure(&mut self, now: Instant) -> FailureDecision {
        if let Some(until) = self.suspended_until(now) {
            return FailureDecision::Suspend {
                until,
                newly: false,
            };
        }
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.limit.window)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        if self.recent.len() > self.limit.max_restarts as usize {
            let until = now + self.limit.cool_off;
            self.recent.clear();
            self.suspended_until = Some(until);
            FailureDecision::Suspend { until, newly: true }
        } else {
            FailureDecision::Restart
        }
    }

    /// The end of the current suspension, if the tenant is suspended at `now`.
    pub fn suspended_until(&mut self, now: Instant) -> Option<Instant> {
        match self.suspended_until {
            Some(until) if now < until => Some(until),
            Some(_) => {
                self.suspended_until = None;
                None
            }
            None => None,
        }
    }
}

/// Whole seconds to put in `Retry-After` (at least 1).
pub fn retry_after_s(d: std::time::Duration) -> u32 {
    let ms = d.as_millis().max(1);
    ms.div_ceil(1000).min(u32::MAX as u128) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit() -> IntensityLimit {
        IntensityLimit {
            max_restarts: 3,
            window: Duration::from_secs(10),
            cool_off: Duration::from_secs(30),
        }
    }

    #[test]
    fn failures_within_the_limit_are_restarted() {
        let t0 = Instant::now();
        let mut r = RestartIntensity::new(limit());
        for i in 0..3 {
            assert_eq!(
                r.on_failure(t0 + Duration::from_secs(i)),
                FailureDecision::Restart
            );
        }
        assert_eq!(r.suspended_until(t0 + Duration::from_secs(3)), None);
    }

    #[test]
    fn one_failure_too_many_within_the_window_suspends_for_the_cool_off() {
        let t0 = Instant::now();
        let mut r = RestartIntensity::new(limit());
        for i in 0..3 {
            r.on_failure(t0 + Duration::from_secs(i));
        }
        let t3 = t0 + Duration::from_secs(3);
        let until = t3 + Duration::from_secs(30);
        assert_eq!(
            r.on_failure(t3),
            FailureDecision::Suspend { until, newly: true }
        );
        assert_eq!(r.suspended_until(t3), Some(until));
        // Further failures while suspended do not extend it, and are not "new".
        assert_eq!(
            r.on_failure(t3 + Duration::from_secs(1)),
            FailureDecision::Suspend {
                until,
                newly: false
            }
        );
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_suspend() {
        let t0 = Instant::now();
        let mut r = RestartIntensity::new(limit());
        for i in 0..100 {
            // One failure every 4 s: at most 3 in any 10 s window.
            assert_eq!(
                r.on_failure(t0 + Duration::from_secs(4 * i)),
                FailureDecision::Restart,
                "failure {i}"
            );
        }
    }

    #[test]
    fn after_the_cool_off_the_tenant_starts_with_a_full_budget() {
        let t0 = Instant::now();
        let mut r = RestartIntensity::new(limit());
        for _ in 0..4 {
            r.on_failure(t0);
        }
        let later = t0 + Duration::from_secs(30);
        assert_eq!(r.suspended_until(later), None);
        for _ in 0..3 {
            assert_eq!(r.on_failure(later), FailureDecision::Restart);
        }
        assert!(matches!(
            r.on_failure(later),
            FailureDecision::Suspend { newly: true, .. }
        ));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_s(std::time::Duration::ZERO), 1);
        assert_eq!(retry_after_s(std::time::Duration::from_millis(1)), 1);
        assert_eq!(retry_after_s(std::time::Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_s(std::time::Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_s(std::time::Duration::from_secs(30)), 30);
    }
}
