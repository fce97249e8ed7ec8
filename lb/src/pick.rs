//! Which server gets the next attempt: round-robin over the snapshot's
//! servers ([`RoundRobin`], the default) or the power of two choices over a
//! peak-EWMA latency ([`PeakEwma`], `--policy p2c`), skipping those
//! passively ejected ([`HealthTable`], keyed by MAC, with one
//! [`Health`](crate::outlier::Health) state machine and one
//! [`RttEstimator`] per server) and, always, those the operator drained or
//! ejected ([`crate::operator`]).
//!
//! The rotation position is the rotation key (id, MAC) of the server last
//! picked, not an index: after the list changes, the rotation continues with
//! the first server whose key follows it, so no server is served twice in a
//! row or skipped because servers came or went.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ipcs_common::wire::MacAddr;

use crate::metrics::ServerCounters;
use crate::operator::{Mode, Overrides};
use crate::outlier::Health;
use crate::rtt::{PeakEwma, RttEstimator};
use crate::snapshot::{Backend, ServerSnapshot};

/// How fast the p2c latency forgets a slow spell: a server that turned
/// slow is avoided at once and trusted again within seconds.
const P2C_DECAY: Duration = Duration::from_secs(1);

/// How a new request's server is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Each server in turn: an exactly even spread, blind to latency.
    #[default]
    RoundRobin,
    /// Of two servers drawn at random, the one with the lower cost
    /// (peak-EWMA latency times requests in flight plus one), as Finagle
    /// and Linkerd balance: a slow server gets less load without being
    /// ejected.
    P2c,
}

/// What the load balancer tracks per server (by MAC).
#[derive(Debug, Clone)]
pub struct ServerState {
    pub id: u8,
    pub mac: MacAddr,
    pub health: Health,
    /// The round-trip estimate that sets this server's attempt deadline.
    pub rtt: RttEstimator,
    /// The latency the p2c policy compares.
    pub ewma: PeakEwma,
    /// Attempts sent to it and neither answered nor given up.
    pub in_flight: u32,
    /// The most request records the server said it reads from one frame
    /// (its capability record); 1 until it says anything.
    pub max_records: u8,
    /// This worker's counters for the server, read by the metrics renderer.
    pub counters: Arc<ServerCounters>,
    /// What the operator set for it (drain, eject), if anything.
    pub operator: Option<Mode>,
}

impl ServerState {
    /// Whether the operator allows new requests to it at `now`.
    pub fn allowed(&self, now: Instant) -> bool {
        self.operator.is_none_or(|m| !m.holds(now))
    }
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
                    rtt: RttEstimator::default(),
                    ewma: PeakEwma::new(P2C_DECAY),
                    in_flight: 0,
                    max_records: 1,
                    counters: Arc::new(ServerCounters::default()),
                    operator: None,
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

    /// Takes the operator's overrides (call after every [`sync`](Self::sync)
    /// and whenever they change).
    pub fn apply_overrides(&mut self, overrides: &Overrides, now: Instant) {
        for s in &mut self.entries {
            s.operator = overrides.mode_of(s.id, s.mac, now);
        }
    }

    /// Whether `mac` may be picked at `now`: not passively ejected and
    /// allowed by the operator; unknown servers may not.
    pub fn available(&self, mac: MacAddr, now: Instant) -> bool {
        self.get(mac)
            .is_some_and(|s| s.allowed(now) && s.health.available(now))
    }

    /// Whether `mac` may be picked at `now` as a last resort (every server
    /// is unavailable): any the operator has not drained or ejected.
    pub fn allowed(&self, mac: MacAddr, now: Instant) -> bool {
        self.get(mac).is_none_or(|s| s.allowed(now))
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

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut ServerState> {
        self.entries.iter_mut()
    }

    /// Servers available at `now` (neither ejected nor set aside by the
    /// operator).
    pub fn available_count(&self, now: Instant) -> usize {
        self.entries
            .iter()
            .filter(|s| s.allowed(now) && s.health.available(now))
            .count()
    }

    /// Whether a server other than `mac` answered after `since`.
    pub fn others_answered(&self, mac: MacAddr, since: Instant) -> bool {
        self.entries
            .iter()
            .any(|s| s.mac != mac && s.health.last_answer().is_some_and(|at| at > since))
    }
}

/// The power of two choices: draws two distinct available servers and
/// returns the cheaper; with one available server, that one; with none,
/// any server the operator allows (as [`RoundRobin::pick`] does).
pub fn pick_p2c<'a>(
    servers: &'a [Backend],
    health: &HealthTable,
    rng: &mut fastrand::Rng,
    now: Instant,
) -> Option<&'a Backend> {
    let cost = |b: &Backend| {
        health
            .get(b.mac)
            .map_or(0.0, |s| s.ewma.micros() * f64::from(s.in_flight + 1))
    };
    let available = servers
        .iter()
        .filter(|b| health.available(b.mac, now))
        .count();
    let nth_available = |k: usize| {
        servers
            .iter()
            .filter(|b| health.available(b.mac, now))
            .nth(k)
    };
    match available {
        0 => {
            let allowed = servers
                .iter()
                .filter(|b| health.allowed(b.mac, now))
                .count();
            if allowed == 0 {
                return None;
            }
            let k = rng.usize(..allowed);
            servers.iter().filter(|b| health.allowed(b.mac, now)).nth(k)
        }
        1 => nth_available(0),
        n => {
            let i = rng.usize(..n);
            let j = (i + 1 + rng.usize(..n - 1)) % n;
            let (a, b) = (nth_available(i)?, nth_available(j)?);
            Some(if cost(b) < cost(a) { b } else { a })
        }
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
    /// listed server is ejected, the next one the operator allows (an
    /// ejected server is a better bet than refusing every request; one the
    /// operator drained or ejected is never picked).
    pub fn pick<'a>(
        &mut self,
        servers: &'a [Backend],
        health: &HealthTable,
        now: Instant,
    ) -> Option<&'a Backend> {
        self.next(servers, |b| health.available(b.mac, now))
            .or_else(|| self.next(servers, |b| health.allowed(b.mac, now)))
    }

    /// Picks a server for a retry of a request already sent to `tried`
    /// (the last of which just failed): preferably an available server not
    /// tried yet, then any available server but the last one, then any
    /// server but the last one, and the last one only if it is the only one;
    /// never one the operator drained or ejected.
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
        .or_else(|| {
            self.next(servers, |b| {
                health.allowed(b.mac, now) && Some(b.mac) != last
            })
        })
        .or_else(|| self.next(servers, |b| health.allowed(b.mac, now)))
    }
}

#[cfg(test)]
#[path = "pick_tests.rs"]
mod tests;
