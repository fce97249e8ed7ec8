//! The retry budget: retries may be at most a fixed share of the requests
//! over a sliding window, plus a small floor per second, as Finagle's
//! `RetryBudget` (20 % plus 10 per second over 10 s), Envoy's
//! `retry_budget` and gRPC's retry throttling do. Past it, a request whose
//! attempt timed out is not sent again: it waits for the answer already
//! asked for, and its client gets status 4 at the request deadline. So a
//! slow pool gets at most 1.2 times its load, not a retry storm.
//!
//! The window is ten buckets; counting and checking are O(1) and allocate
//! nothing.

use std::time::{Duration, Instant};

const BUCKETS: usize = 10;

/// How many retries the budget allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetPolicy {
    /// Retries allowed per request over the window (0.2: one in five).
    pub ratio: f64,
    /// Retries allowed per second on top, so a quiet LB can still retry.
    pub min_per_sec: u32,
    /// The sliding window the counts cover.
    pub window: Duration,
}

impl Default for BudgetPolicy {
    fn default() -> Self {
        BudgetPolicy {
            ratio: 0.2,
            min_per_sec: 10,
            window: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    requests: u64,
    retries: u64,
}

/// Requests and retries over the last window.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    policy: BudgetPolicy,
    width: Duration,
    buckets: [Bucket; BUCKETS],
    /// Index of the bucket counting now, and when it started.
    head: usize,
    head_start: Instant,
    requests: u64,
    retries: u64,
}

impl RetryBudget {
    pub fn new(policy: BudgetPolicy, now: Instant) -> RetryBudget {
        let width = (policy.window / BUCKETS as u32).max(Duration::from_millis(1));
        RetryBudget {
            policy,
            width,
            buckets: [Bucket::default(); BUCKETS],
            head: 0,
            head_start: now,
            requests: 0,
            retries: 0,
        }
    }

    /// A new request (a first attempt) was sent.
    pub fn on_request(&mut self, now: Instant) {
        self.advance(now);
        self.buckets[self.head].requests += 1;
        self.requests += 1;
    }

    /// Takes one retry from the budget if it allows one.
    pub fn try_retry(&mut self, now: Instant) -> bool {
        self.advance(now);
        let window_secs = self.policy.window.as_secs_f64();
        let allowed = self.policy.ratio * self.requests as f64
            + f64::from(self.policy.min_per_sec) * window_secs;
        if (self.retries as f64) < allowed {
            self.buckets[self.head].retries += 1;
            self.retries += 1;
            true
        } else {
            false
        }
    }

    fn advance(&mut self, now: Instant) {
        if now.saturating_duration_since(self.head_start) >= self.width * BUCKETS as u32 {
            // Idle for a whole window: start afresh.
            self.buckets = [Bucket::default(); BUCKETS];
            self.requests = 0;
            self.retries = 0;
            self.head_start = now;
            return;
        }
        while now >= self.head_start + self.width {
            self.head = (self.head + 1) % BUCKETS;
            let old = std::mem::take(&mut self.buckets[self.head]);
            self.requests -= old.requests;
            self.retries -= old.retries;
            self.head_start += self.width;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_floor_allows_a_few_retries_without_requests() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(BudgetPolicy::default(), t0);
        let granted = (0..1000).filter(|_| b.try_retry(t0)).count();
        // 10 per second over a 10 s window.
        assert_eq!(granted, 100);
    }

    #[test]
    fn retries_are_a_fifth_of_requests_plus_the_floor() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(BudgetPolicy::default(), t0);
        for _ in 0..10_000 {
            b.on_request(t0);
        }
        let granted = (0..10_000).filter(|_| b.try_retry(t0)).count();
        assert_eq!(granted, 2_000 + 100);
    }

    #[test]
    fn the_window_slides() {
        let t0 = Instant::now();
        let policy = BudgetPolicy {
            ratio: 0.2,
            min_per_sec: 0,
            window: Duration::from_secs(1),
        };
        let mut b = RetryBudget::new(policy, t0);
        for _ in 0..100 {
            b.on_request(t0);
        }
        assert_eq!((0..100).filter(|_| b.try_retry(t0)).count(), 20);
        // Half a window later the old requests still count, so no more.
        assert!(!b.try_retry(t0 + 500 * MS));
        // A whole window later both the requests and the retries are gone.
        for _ in 0..10 {
            b.on_request(t0 + 1_050 * MS);
        }
        assert_eq!((0..100).filter(|_| b.try_retry(t0 + 1_050 * MS)).count(), 2);
        // After a long idle gap, everything starts afresh.
        assert!(!b.try_retry(t0 + 60_000 * MS));
    }
}
