//! The registry's replay window, as a sans-io state machine fed the wall
//! clock: a proof is fresh when its time is within `window` of the
//! registry's clock and its (time, nonce) pair has not been seen. Seen pairs
//! are kept only while they are inside the window, and at most `capacity`
//! of them: when full, the oldest is forgotten and every proof not newer
//! than it is refused from then on (the floor), so a full table refuses
//! fresh-looking old lines rather than accepting a replay. Check the tag
//! first: only lines made with the key may take room here.

use std::collections::BTreeSet;

/// Why a proof's time or nonce is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Outside the window (either way), or not newer than a forgotten pair.
    #[error("stale proof (clock skew over the window, or too old)")]
    Stale,
    /// The same (time, nonce) was accepted before.
    #[error("replayed proof")]
    Replayed,
}

/// Proofs accepted within the window.
#[derive(Debug)]
pub struct ReplayGuard {
    window_ms: u64,
    capacity: usize,
    /// (unix_ms, nonce) of every proof accepted within the window.
    seen: BTreeSet<(u64, u64)>,
    /// Proofs at or before this time are refused (a pair was forgotten for
    /// room, not for age).
    floor: u64,
}

impl ReplayGuard {
    /// A guard accepting proofs within `window_ms` of the clock, remembering
    /// at most `capacity` (at least 1) of them.
    pub fn new(window_ms: u64, capacity: usize) -> ReplayGuard {
        ReplayGuard {
            window_ms,
            capacity: capacity.max(1),
            seen: BTreeSet::new(),
            floor: 0,
        }
    }

    /// Pairs remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Checks a proof made at `unix_ms` with `nonce` against the clock
    /// `now_ms`, and records it if fresh.
    pub fn check(&mut self, unix_ms: u64, nonce: u64, now_ms: u64) -> Result<(), ReplayError> {
        let oldest = now_ms.saturating_sub(self.window_ms);
        // Forget what the window refuses anyway.
        while let Some(&first) = self.seen.first() {
            if first.0 >= oldest {
                break;
            }
            self.seen.pop_first();
        }
        if unix_ms < oldest || unix_ms > now_ms.saturating_add(self.window_ms) {
            return Err(ReplayError::Stale);
        }
        if unix_ms <= self.floor {
            return Err(ReplayError::Stale);
        }
        if self.seen.contains(&(unix_ms, nonce)) {
            return Err(ReplayError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            if let Some((at, _)) = self.seen.pop_first() {
                self.floor = self.floor.max(at);
            }
            if unix_ms <= self.floor {
                return Err(ReplayError::Stale);
            }
        }
        self.seen.insert((unix_ms, nonce));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn a_proof_is_accepted_once_within_the_window() {
        let mut guard = ReplayGuard::new(30_000, 100);
        assert_eq!(guard.check(NOW, 1, NOW), Ok(()));
        assert_eq!(guard.check(NOW, 1, NOW + 10), Err(ReplayError::Replayed));
        assert_eq!(guard.check(NOW, 2, NOW + 10), Ok(()));
        // Both edges of the window are inside it; one past is not.
        assert_eq!(guard.check(NOW - 30_000, 3, NOW), Ok(()));
        assert_eq!(guard.check(NOW + 30_000, 4, NOW), Ok(()));
        assert_eq!(guard.check(NOW - 30_001, 5, NOW), Err(ReplayError::Stale));
        assert_eq!(guard.check(NOW + 30_001, 6, NOW), Err(ReplayError::Stale));
    }

    #[test]
    fn pairs_are_forgotten_once_the_window_refuses_them_anyway() {
        let mut guard = ReplayGuard::new(1_000, 100);
        for nonce in 0..50 {
            guard.check(NOW, nonce, NOW).unwrap();
        }
        assert_eq!(guard.len(), 50);
        // Later, the old pairs are gone and a replay of them is stale.
        assert_eq!(guard.check(NOW, 0, NOW + 1_001), Err(ReplayError::Stale));
        assert!(guard.is_empty());
    }

    #[test]
    fn a_full_guard_refuses_rather_than_forgets_a_replay() {
        let mut guard = ReplayGuard::new(30_000, 3);
        for (i, nonce) in [10, 11, 12].into_iter().enumerate() {
            guard.check(NOW + i as u64, nonce, NOW + 10).unwrap();
        }
        // Room is made by forgetting the oldest (NOW, 10) ...
        guard.check(NOW + 5, 13, NOW + 10).unwrap();
        assert_eq!(guard.len(), 3);
        // ... whose replay is then refused as stale, not accepted.
        assert_eq!(guard.check(NOW, 10, NOW + 10), Err(ReplayError::Stale));
        assert_eq!(
            guard.check(NOW + 1, 11, NOW + 10),
            Err(ReplayError::Replayed)
        );
        assert_eq!(guard.check(NOW + 6, 14, NOW + 10), Ok(()));
    }
}
