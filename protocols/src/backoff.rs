//! [`Backoff`]: how the adapters wait between attempts (reconnecting to a broker,
//! storing a message again, delivering desired state to a device that is still
//! subscribing) — waits that double from `first` up to `max`, for a bounded number of
//! attempts.
//!
//! Contract: [`Backoff::wait`] answers `false` at once, without sleeping, when no
//! attempt is left, so every retry loop ends.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    attempts_left: u32,
}

impl Backoff {
    /// At most `retries` waits of `first`, doubling up to `max`.
    pub fn attempts(retries: u32, first: Duration, max: Duration) -> Self {
        Backoff {
            next: first,
            max,
            attempts_left: retries,
        }
    }

    /// The wait before the next attempt, or `None` when no attempt is left.
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.attempts_left = self.attempts_left.checked_sub(1)?;
        let delay = self.next;
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
        let mut b = Backoff::attempts(4, ms(100), ms(300));
        let got: Vec<Duration> = std::iter::from_fn(|| b.next_delay()).collect();
        assert_eq!(got, [ms(100), ms(200), ms(300), ms(300)]);
        assert_eq!(b.next_delay(), None);
    }
}
