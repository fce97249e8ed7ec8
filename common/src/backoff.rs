//! The reconnect delay every IPCS client of the registry uses (a server's
//! heartbeat thread, the load balancer's registry link): exponential from a
//! least to a greatest delay, each delay drawn from the upper half of its
//! step at random, so a fleet restarted together does not reconnect in
//! lockstep. Pure arithmetic; the caller owns the clock and the waiting.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    /// The step the next delay is drawn from.
    next: Duration,
    rng: fastrand::Rng,
}

impl Backoff {
    /// Steps from `min`, doubling after each delay, never above `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff::with_rng(min, max, fastrand::Rng::new())
    }

    /// The same with a seeded generator, for reproducible tests.
    pub fn with_rng(min: Duration, max: Duration, rng: fastrand::Rng) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            next: min,
            rng,
        }
    }

    /// After a success: the next delay is the shortest again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// The delay before the next attempt, in `[step / 2, step)`, where the
    /// step starts at `min` and doubles with each call up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (step * 2).min(self.max);
        let half = step / 2;
        half + half.mul_f64(self.rng.f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_within_the_upper_half_of_each_step_up_to_the_cap() {
        let mut backoff = Backoff::with_rng(100 * MS, 700 * MS, fastrand::Rng::with_seed(7));
        for step in [100, 200, 400, 700, 700, 700] {
            let delay = backoff.next_delay();
            let step = step * MS;
            assert!(
                delay >= step / 2 && delay < step,
                "{delay:?} outside [{:?}, {step:?})",
                step / 2
            );
        }
    }

    #[test]
    fn reset_starts_from_the_least_delay_again() {
        let mut backoff = Backoff::with_rng(10 * MS, 10_000 * MS, fastrand::Rng::with_seed(1));
        for _ in 0..8 {
            backoff.next_delay();
        }
        backoff.reset();
        assert!(backoff.next_delay() < 10 * MS);
    }

    #[test]
    fn delays_are_spread_not_fixed() {
        let mut backoff = Backoff::with_rng(MS * 1000, MS * 1000, fastrand::Rng::with_seed(3));
        let delays: Vec<Duration> = (0..16).map(|_| backoff.next_delay()).collect();
        assert!(delays.iter().any(|d| *d != delays[0]), "{delays:?}");
    }
}
