//! Which server gets the next attempt: round-robin over the snapshot's
//! servers ([`RoundRobin`]), skipping those passively ejected for failing
//! ([`HealthTable`], keyed by MAC, with one [`Health`] state machine per
//! server).
//!
//! The rotation position is the rotation key (id, MAC) of the server last
//! picked, not an index: after the list changes, the rotation continues with
//! the first server whose key follows it, so no server is served twice in a
//! row or skipped because servers came or went.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ipcs_common::wire::MacAddr;

use crate::metrics::ServerCounters;
use crate::snapshot::{Backend, ServerSnapshot};

/// When a failing server is taken out of rotation, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EjectionPolicy {
    /// Failures in a row that eject a server (at least 1).
    pub after_failures: u32,
    /// The first cool-down.
    pub cooldown: Duration,
    /// Cool-downs double on each repeated ejection up to this.
    pub max_cooldown: Duration,
}

impl Default for EjectionPolicy {
    fn default() -> Self {
        EjectionPolicy {
            after_failures: 3,
            cooldown: Duration::from_secs(5),
            max_cooldown: Duration::from_secs(60),
        }
    }
}

/// The passive health of one server.
///
/// Healthy → (after `after_failures` failures in a row) ejected until the
/// cool-down ends → on probation: back in rotation, and its first failure
/// ejects it again for twice as long, while its first success makes it
/// healthy and resets the cool-down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Health {
    failures: u32,
    ejected_until: Option<Instant>,
    /// Ejections since the server last answered; sets the cool-down.
    level: u32,
}

impl Health {
    /// Whether the server may be picked at `now`.
    pub fn available(&self, now: Instant) -> bool {
        !matches!(self.ejected_until, Some(until) if now < until)
    }

    pub fn is_ejected(&self, now: Instant) -> bool {
        !self.available(now)
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The server answered in time.
    pub fn record_success(&mut self) {
        self.failures = 0;
        self.level = 0;
        self.ejected_until = None;
    }

    /// The server failed an attempt. Returns the cool-down when this failure
    /// ejects it.
    pub fn record_failure(&mut self, now: Instant, policy: &EjectionPolicy) -> Option<Duration> {
        if self.is_ejected(now) {
            // Attempts sent before the ejection may still time out; they do
            // not extend it.
            return None;
        }
        self.failures = self.failures.saturating_add(1);
        let on_probation = self.level > 0;
        if !on_probation && self.failures < policy.after_failures.max(1) {
            return None;
        }
        let cooldown = policy
            .cooldown
            .saturating_mul(1u32 << self.level.min(16))
            .min(policy.max_cooldown.max(policy.cooldown));
        self.level = self.level.saturating_add(1);
        self.failures = 0;
        self.ejected_until = Some(now + cooldown);
        Some(cooldown)
    }
}

/// What the load balancer tracks per server (by MAC).
#[derive(Debug, Clone)]
pub struct ServerState {
    pub id: u8,
    pub mac: MacAddr,
    pub health: Health,
    /// The most request records the server said it reads from one frame
    /// (its capability record); 1 until it says anything.
    pub max_records: u8,
    /// This worker's counters for the server, read by the metrics renderer.
    pub counters: Arc<ServerCounters>,
}

/// Per-server state for the servers of the current snapshot, sorted by MAC.
#[derive(Debug, Default)]
pub struct HealthTable {
    entries: Vec<ServerState>,
}

impl HealthTable {
    pub fn new() -> HealthTable {
        HealthTable::default()
    }

    /// Follows a new snapshot: keeps the state of servers still listed,
    /// starts fresh for new ones, forgets those gone (a server that
    /// registers again starts healthy). Returns whether membership changed.
    pub fn sync(&mut self, snapshot: &ServerSnapshot) -> bool {
        let mut next: Vec<ServerState> = snapshot
            .servers
            .iter()
            .map(|b| match self.find(b.mac) {
                // A new id at the same MAC is another server: it has said
                // nothing yet about records.
                Some(i) if self.entries[i].id != b.id => ServerState {
                    id: b.id,
                    max_records: 1,
                    ..self.entries[i].clone()
                },
                Some(i) => self.entries[i].clone(),
                None => ServerState {
                    id: b.id,
                    mac: b.mac,
                    health: Health::default(),
                    max_records: 1,
                    counters: Arc::new(ServerCounters::default()),
                },
            })
            .collect();
        next.sort_by_key(|s| s.mac);
        let changed = next.len() != self.entries.len()
            || next
                .iter()
                .zip(&self.entries)
                .any(|(a, b)| a.mac != b.mac || a.id != b.id);
        self.entries = next;
        changed
    }

    fn find(&self, mac: MacAddr) -> Option<usize> {
        self.entries.binary_search_by_key(&mac, |s| s.mac).ok()
    }

    pub fn get(&self, mac: MacAddr) -> Option<&ServerState> {
        self.find(mac).map(|i| &self.entries[i])
    }

    pub fn get_mut(&mut self, mac: MacAddr) -> Option<&mut ServerState> {
        self.find(mac).map(move |i| &mut self.entries[i])
    }

    /// Whether `mac` may be picked at `now`; unknown servers may not.
    pub fn available(&self, mac: MacAddr, now: Instant) -> bool {
        self.get(mac).is_some_and(|s| s.health.available(now))
    }

    pub fn iter(&self) -> impl Iterator<Item = &ServerState> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Servers not ejected at `now`.
    pub fn available_count(&self, now: Instant) -> usize {
        self.entries
            .iter()
            .filter(|s| s.health.available(now))
            .count()
    }
}

/// The rotation: remembers the key of the server last picked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundRobin {
    last: Option<(u8, MacAddr)>,
}

impl RoundRobin {
    pub fn new() -> RoundRobin {
        RoundRobin::default()
    }

    /// The key of the server last picked.
    pub fn last(&self) -> Option<(u8, MacAddr)> {
        self.last
    }

    /// Picks the next server in rotation order for which `eligible` holds,
    /// starting after the one last picked, and makes it the last picked.
    /// `servers` must be in rotation order (as [`ServerSnapshot`] keeps it).
    pub fn next<'a>(
        &mut self,
        servers: &'a [Backend],
        mut eligible: impl FnMut(&Backend) -> bool,
    ) -> Option<&'a Backend> {
        let n = servers.len();
        if n == 0 {
            return None;
        }
        let start = match self.last {
            None => 0,
            Some(key) => servers.partition_point(|b| b.rotation_key() <= key) % n,
        };
        let picked = (0..n)
            .map(|k| &servers[(start + k) % n])
            .find(|b| eligible(b))?;
        self.last = Some(picked.rotation_key());
        Some(picked)
    }

    /// Picks a server for a new request: the next available one; when every
    /// listed server is ejected, the next one regardless (an ejected server
    /// is a better bet than refusing every request).
    pub fn pick<'a>(
        &mut self,
        servers: &'a [Backend],
        health: &HealthTable,
        now: Instant,
    ) -> Option<&'a Backend> {
        self.next(servers, |b| health.available(b.mac, now))
            .or_else(|| self.next(servers, |_| true))
    }

    /// Picks a server for a retry of a request already sent to `tried`
    /// (the last of which just failed): preferably an available server not
    /// tried yet, then any available server but the last one, then any
    /// server but the last one, and the last one only if it is the only one.
    pub fn pick_retry<'a>(
        &mut self,
        servers: &'a [Backend],
        health: &HealthTable,
        tried: &[MacAddr],
        now: Instant,
    ) -> Option<&'a Backend> {
        let last = tried.last().copied();
        self.next(servers, |b| {
            health.available(b.mac, now) && !tried.contains(&b.mac)
        })
        .or_else(|| {
            self.next(servers, |b| {
                health.available(b.mac, now) && Some(b.mac) != last
            })
        })
        .or_else(|| self.next(servers, |b| Some(b.mac) != last))
        .or_else(|| self.next(servers, |_| true))
    }
}

#[cfg(test)]
#[path = "pick_tests.rs"]
mod tests;
