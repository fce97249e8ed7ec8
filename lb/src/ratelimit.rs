//! A token bucket, so error replies to clients are bounded in rate: an error
//! answers a datagram whose source address may be forged, and the load
//! balancer must never become an amplifier aimed at someone else.

use std::time::Instant;

/// Allows `rate` events per second on average, `burst` at once.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. A rate of 0 allows nothing.
    pub fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        let rate = rate.max(0.0);
        let burst = burst.max(0.0);
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if now > self.last {
            let elapsed = now.duration_since(self.last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
            self.last = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(100.0, 10.0, t0);
        let burst = (0..50).filter(|_| bucket.try_take(t0)).count();
        assert_eq!(burst, 10);
        // 100/s: 50 ms gives 5 more.
        let later = t0 + Duration::from_millis(50);
        let more = (0..50).filter(|_| bucket.try_take(later)).count();
        assert_eq!(more, 5);
        // A long pause refills only up to the burst.
        let much_later = later + Duration::from_secs(60);
        let refill = (0..50).filter(|_| bucket.try_take(much_later)).count();
        assert_eq!(refill, 10);
    }

    #[test]
    fn zero_rate_allows_nothing_and_time_going_backwards_is_harmless() {
        let t0 = Instant::now();
        let mut none = TokenBucket::new(0.0, 0.0, t0);
        assert!(!none.try_take(t0 + Duration::from_secs(5)));
        let mut bucket = TokenBucket::new(10.0, 1.0, t0 + Duration::from_secs(1));
        assert!(bucket.try_take(t0 + Duration::from_secs(1)));
        assert!(!bucket.try_take(t0));
    }
}
