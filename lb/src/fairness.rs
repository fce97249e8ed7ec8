//! Per-source fairness: how much of one worker's table of requests in
//! flight, and of its error-reply budget, one client source may take.
//!
//! Sources are grouped by network prefix (an IPv4 /24, an IPv6 /48: what
//! one party usually holds) and the prefixes are hashed into a fixed table
//! of [`BUCKETS`] buckets, so memory is bounded whatever the number of
//! sources. The hash is SipHash-1-3 keyed with a secret drawn at start, so
//! a flooder cannot choose prefixes that share a bucket with a victim.
//! Each bucket counts its requests in flight and has its own error-reply
//! token bucket:
//!
//! * a bucket may hold at most `share` of the slots: a flood from one
//!   prefix fills its share and then gets status 5 (overloaded), while the
//!   other prefixes keep the rest of the table;
//! * a bucket may send at most `share` of the worker's error rate (and
//!   burst): one flooder of malformed datagrams cannot use up the error
//!   replies every other client is owed. The worker-wide bucket still caps
//!   the total (the load balancer must never amplify).
//!
//! Two prefixes that meet in one bucket share its allowance; with 1,024
//! buckets that is rare and costs them at most half of a share.

use std::net::IpAddr;
use std::time::Instant;

use siphasher::sip::SipHasher13;

use crate::ratelimit::TokenBucket;

/// Buckets per worker.
pub const BUCKETS: usize = 1024;

/// A source's bucket, as returned by [`SourceTable::bucket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket(u16);

impl Bucket {
    /// No bucket: the source of a free slot of the table of requests in
    /// flight (and of requests in tests that do not care).
    pub const NONE: Bucket = Bucket(u16::MAX);
}

#[derive(Debug, Clone)]
struct Entry {
    in_flight: u32,
    errors: TokenBucket,
}

/// The fixed table of per-prefix buckets of one worker.
#[derive(Debug)]
pub struct SourceTable {
    hasher: SipHasher13,
    entries: Box<[Entry]>,
    max_in_flight: u32,
    /// Requests in flight over every bucket, and the level from which the
    /// shares apply: below it the table has room for everyone, and refusing
    /// a busy client then would only waste capacity.
    total_in_flight: u32,
    contended_from: u32,
}

impl SourceTable {
    /// A table for a worker of `capacity` slots and an error budget of
    /// `error_rate`/s (`error_burst` at once), giving each bucket `share`
    /// (0 < share <= 1) of both, at least one slot and one error.
    pub fn new(
        key: &[u8; 16],
        capacity: usize,
        share: f64,
        error_rate: f64,
        error_burst: f64,
        now: Instant,
    ) -> SourceTable {
        let share = share.clamp(f64::MIN_POSITIVE, 1.0);
        let max_in_flight = ((capacity as f64 * share).ceil() as u32).max(1);
        let contended_from = u32::try_from(capacity / 2).unwrap_or(u32::MAX);
        let errors = TokenBucket::new(error_rate * share, (error_burst * share).max(1.0), now);
        SourceTable {
            hasher: SipHasher13::new_with_key(key),
            entries: vec![
                Entry {
                    in_flight: 0,
                    errors,
                };
                BUCKETS
            ]
            .into_boxed_slice(),
            max_in_flight,
            total_in_flight: 0,
            contended_from,
        }
    }

    /// The most requests in flight one bucket may have.
    #[cfg(test)]
    pub fn max_in_flight(&self) -> u32 {
        self.max_in_flight
    }

    /// The bucket of `source`'s prefix.
    pub fn bucket(&self, source: IpAddr) -> Bucket {
        let hash = match source {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                self.hasher.hash(&[4, o[0], o[1], o[2]])
            }
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => return self.bucket(IpAddr::V4(v4)),
                None => {
                    let mut input = [6u8; 7];
                    input[1..].copy_from_slice(&v6.octets()[..6]);
                    self.hasher.hash(&input)
                }
            },
        };
        Bucket((hash % BUCKETS as u64) as u16)
    }

    /// Takes a slot for a request from `bucket`, unless the table is half
    /// full or more and the bucket already holds its share. Work-conserving,
    /// as a fair queue is: one busy client may use an idle table, but once
    /// slots grow scarce every other prefix still finds half the table that
    /// no over-share bucket can take.
    pub fn try_acquire(&mut self, bucket: Bucket) -> bool {
        let contended = self.total_in_flight >= self.contended_from;
        let Some(entry) = self.entries.get_mut(usize::from(bucket.0)) else {
            return true;
        };
        if contended && entry.in_flight >= self.max_in_flight {
            return false;
        }
        entry.in_flight += 1;
        self.total_in_flight += 1;
        true
    }

    /// Gives back the slot of a finished request from `bucket`.
    pub fn release(&mut self, bucket: Bucket) {
        if let Some(entry) = self.entries.get_mut(usize::from(bucket.0)) {
            if entry.in_flight > 0 {
                entry.in_flight -= 1;
                self.total_in_flight -= 1;
            }
        }
    }

    /// Requests in flight from `bucket`.
    #[cfg(test)]
    pub fn in_flight(&self, bucket: Bucket) -> u32 {
        self.entries
            .get(usize::from(bucket.0))
            .map_or(0, |e| e.in_flight)
    }

    /// Takes one of `bucket`'s error replies, if it has one left.
    pub fn try_error(&mut self, bucket: Bucket, now: Instant) -> bool {
        match self.entries.get_mut(usize::from(bucket.0)) {
            Some(entry) => entry.errors.try_take(now),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn table(capacity: usize, share: f64) -> SourceTable {
        SourceTable::new(&[7; 16], capacity, share, 100.0, 10.0, Instant::now())
    }

    #[test]
    fn one_prefix_one_bucket_and_different_prefixes_mostly_differ() {
        let t = table(100, 0.25);
        assert_eq!(t.bucket(ip("10.1.2.3")), t.bucket(ip("10.1.2.250")));
        assert_eq!(t.bucket(ip("10.1.2.3")), t.bucket(ip("::ffff:10.1.2.9")));
        assert_eq!(
            t.bucket(ip("2001:db8:1::1")),
            t.bucket(ip("2001:db8:1:ff::2"))
        );
        let distinct: std::collections::HashSet<_> = (0..=255u8)
            .map(|i| t.bucket(IpAddr::from([10, 0, i, 1])).0)
            .collect();
        // 256 prefixes in 1,024 buckets: a few collisions at most.
        assert!(distinct.len() > 200, "{}", distinct.len());
        // Another key, another placement.
        let other = SourceTable::new(&[8; 16], 100, 0.25, 1.0, 1.0, Instant::now());
        let moved = (0..=255u8)
            .filter(|i| {
                let a = IpAddr::from([10, 0, *i, 1]);
                t.bucket(a) != other.bucket(a)
            })
            .count();
        assert!(moved > 200, "{moved}");
    }

    #[test]
    fn a_flooder_fills_an_idle_half_then_only_its_share_and_others_still_get_slots() {
        let mut t = table(100, 0.25);
        assert_eq!(t.max_in_flight(), 25);
        let flooder = t.bucket(ip("192.0.2.7"));
        // Alone, it may use the table up to half (50 slots): no one waits.
        let taken = (0..1000).filter(|_| t.try_acquire(flooder)).count();
        assert_eq!(taken, 50);
        let victim = t.bucket(ip("198.51.100.7"));
        assert_ne!(flooder, victim);
        assert!(t.try_acquire(victim));
        // Contended now (51 of 100): the victim, under its share, still gets
        // slots; the flooder, over it, gets none.
        assert!((0..19).all(|_| t.try_acquire(victim)));
        t.release(flooder);
        assert_eq!(t.in_flight(flooder), 49);
        assert!(!t.try_acquire(flooder));
        // Back under half full (25 + 20 = 45), the flooder may take the room
        // up to half again (5 slots), and no more.
        for _ in 0..24 {
            t.release(flooder);
        }
        assert_eq!(t.in_flight(flooder), 25);
        let taken = (0..100).filter(|_| t.try_acquire(flooder)).count();
        assert_eq!(taken, 5);
    }

    #[test]
    fn a_flooder_cannot_use_up_other_sources_error_replies() {
        let t0 = Instant::now();
        let mut t = SourceTable::new(&[7; 16], 100, 0.25, 100.0, 40.0, t0);
        let flooder = t.bucket(ip("192.0.2.7"));
        let victim = t.bucket(ip("198.51.100.7"));
        let sent = (0..1000).filter(|_| t.try_error(flooder, t0)).count();
        assert_eq!(sent, 10, "a quarter of the burst");
        assert!(t.try_error(victim, t0));
        // The flooder's bucket refills at a quarter of the rate.
        let later = t0 + Duration::from_millis(400);
        assert_eq!((0..100).filter(|_| t.try_error(flooder, later)).count(), 10);
    }

    #[test]
    fn every_bucket_gets_at_least_one_slot_and_one_error() {
        let t0 = Instant::now();
        let mut t = SourceTable::new(&[1; 16], 2, 0.01, 0.0, 0.0, t0);
        let b = t.bucket(ip("10.0.0.1"));
        assert!(t.try_acquire(b));
        assert!(!t.try_acquire(b));
        assert!(t.try_error(b, t0));
        assert!(!t.try_error(b, t0 + Duration::from_secs(10)));
        // NONE is counted nowhere and never refused.
        assert!(t.try_acquire(Bucket::NONE));
        assert!(t.try_error(Bucket::NONE, t0));
    }
}
