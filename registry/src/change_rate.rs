//! A bound on how fast one peer can change the server list (and so make
//! the registry push it to every watcher): a token bucket per source
//! address, as a sans-io state machine fed `now`. A registration that would
//! change the list needs a token; tokens come back one per `refill`, up to
//! `burst`. Buckets outlive connections (reconnecting buys nothing); full
//! buckets are forgotten when room is needed, and at most `max_buckets`
//! are kept: past that, a new address is refused until one fills up.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

/// The per-address buckets.
#[derive(Debug)]
pub struct ChangeLimiter {
    burst: u32,
    refill: Duration,
    max_buckets: usize,
    buckets: HashMap<IpAddr, Bucket>,
}

impl Bucket {
    /// The bucket at `now`, with the tokens earned since, at most `burst`.
    fn refilled(self, burst: u32, refill: Duration, now: Instant) -> Bucket {
        let elapsed = now.saturating_duration_since(self.at);
        let earned = (elapsed.as_nanos() / refill.as_nanos()).min(u128::from(burst));
        let tokens = (self.tokens + earned as u32).min(burst);
        let at = if tokens == burst {
            now
        } else {
            self.at + refill * earned as u32
        };
        Bucket { tokens, at }
    }
}

impl ChangeLimiter {
    /// `burst` (at least 1) changes at once, then one per `refill` (not zero).
    pub fn new(burst: u32, refill: Duration, max_buckets: usize) -> ChangeLimiter {
        ChangeLimiter {
            burst: burst.max(1),
            refill: refill.max(Duration::from_micros(1)),
            max_buckets: max_buckets.max(1),
            buckets: HashMap::new(),
        }
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> Bucket {
        bucket.refilled(self.burst, self.refill, now)
    }

    /// Whether `ip` may make one change now.
    pub fn allowed(&mut self, ip: IpAddr, now: Instant) -> bool {
        match self.buckets.get(&ip) {
            Some(&b) => self.refilled(b, now).tokens > 0,
            None => {
                if self.buckets.len() >= self.max_buckets {
                    // Full buckets say nothing a fresh one would not.
                    let (burst, refill) = (self.burst, self.refill);
                    self.buckets
                        .retain(|_, b| b.refilled(burst, refill, now).tokens < burst);
                }
                self.buckets.len() < self.max_buckets
            }
        }
    }

    /// `ip` made a change: takes a token (call after [`allowed`](Self::allowed)).
    pub fn spend(&mut self, ip: IpAddr, now: Instant) {
        let full = Bucket {
            tokens: self.burst,
            at: now,
        };
        let current = self.buckets.get(&ip).copied().unwrap_or(full);
        let mut b = self.refilled(current, now);
        b.tokens = b.tokens.saturating_sub(1);
        self.buckets.insert(ip, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_change_per_refill() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let a = IpAddr::from([10, 0, 0, 1]);
        let mut limiter = ChangeLimiter::new(3, Duration::from_millis(100), 16);
        for _ in 0..3 {
            assert!(limiter.allowed(a, ms(0)));
            limiter.spend(a, ms(0));
        }
        assert!(!limiter.allowed(a, ms(99)));
        assert!(limiter.allowed(a, ms(100)));
        limiter.spend(a, ms(100));
        assert!(!limiter.allowed(a, ms(150)));
        // Another address has its own bucket.
        assert!(limiter.allowed(IpAddr::from([10, 0, 0, 2]), ms(150)));
        // Long quiet refills to the burst, not beyond.
        for _ in 0..3 {
            assert!(limiter.allowed(a, ms(10_000)));
            limiter.spend(a, ms(10_000));
        }
        assert!(!limiter.allowed(a, ms(10_000)));
    }

    #[test]
    fn buckets_are_bounded_and_full_ones_forgotten() {
        let t0 = Instant::now();
        let mut limiter = ChangeLimiter::new(1, Duration::from_secs(1), 2);
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        limiter.spend(ip(1), t0);
        limiter.spend(ip(2), t0);
        // Both buckets empty, none to forget: a third address waits.
        assert!(!limiter.allowed(ip(3), t0));
        // Once they refill they are forgotten and make room.
        assert!(limiter.allowed(ip(3), t0 + Duration::from_secs(1)));
    }
}
