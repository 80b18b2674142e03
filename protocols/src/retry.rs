//! [`Backoff`]: the one way the node and its adapters wait between attempts
//! (dispatch and HTTP forwarding to a moving leader, reconnecting to a broker, storing a
//! message again, delivering desired state) — exponential back-off with jitter, bounded
//! by a deadline or by a number of attempts.
//!
//! Contract: [`Backoff::wait`] never sleeps past the deadline and answers `false`
//! (without sleeping) once no attempt is left, so every retry loop ends.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    deadline: Option<Instant>,
    attempts_left: Option<u32>,
}

impl Backoff {
    /// Waits of `first`, doubling up to `max`, until `deadline`.
    pub fn until(deadline: Instant, first: Duration, max: Duration) -> Self {
        Backoff {
            next: first,
            max,
            deadline: Some(deadline),
            attempts_left: None,
        }
    }

    /// At most `retries` waits of `first`, doubling up to `max`.
    pub fn attempts(retries: u32, first: Duration, max: Duration) -> Self {
        Backoff {
            next: first,
            max,
            deadline: None,
            attempts_left: Some(retries),
        }
    }

    /// The wait before the next attempt, or `None` when no attempt is left. Jitter of
    /// ±25% keeps callers that failed together from retrying together.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if let Some(left) = &mut self.attempts_left {
            if *left == 0 {
                return None;
            }
            *left -= 1;
        }
        let jitter = 0.75 + rand::random::<f64>() * 0.5;
        let mut delay = self.next.mul_f64(jitter);
        if let Some(deadline) = self.deadline {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return None;
            }
            delay = delay.min(remaining);
        }
        self.next = (self.next * 2).min(self.max);
        Some(delay)
    }

    /// Sleeps before the next attempt; `false` (at once) when none is left.
    pub async fn wait(&mut self) -> bool {
        match self.next_delay() {
            Some(d) => {
                tokio::time::sleep(d).await;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_the_attempts_run_out() {
        let ms = Duration::from_millis;
        let mut b = Backoff::attempts(5, ms(100), ms(300));
        let got: Vec<Duration> = std::iter::from_fn(|| b.next_delay()).collect();
        assert_eq!(got.len(), 5);
        for (d, base) in got.iter().zip([100, 200, 300, 300, 300]) {
            assert!(
                *d >= ms(base * 3 / 4) && *d <= ms(base * 5 / 4),
                "{d:?} vs {base}"
            );
        }
    }

    #[test]
    fn a_deadline_bounds_every_wait_and_ends_the_retries() {
        let deadline = Instant::now() + Duration::from_millis(50);
        let mut b = Backoff::until(deadline, Duration::from_secs(10), Duration::from_secs(10));
        let first = b.next_delay().expect("time is left");
        assert!(first <= Duration::from_millis(50), "{first:?}");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.next_delay(), None);
    }
}
