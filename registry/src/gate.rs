//! Who may hold a connection, as a sans-io state machine: the registry's
//! connection limits in a form an attacker cannot turn against servers and
//! the load balancer (issue 16). A connection is *pending* until it sends
//! its first valid line (with a key, a line with a valid proof) and
//! *proven* after. Limits:
//!
//! * at most `max_connections` in all and `max_per_ip` from one address;
//! * at most `max_pending` pending connections, and `max_pending_per_ip`
//!   from one address.
//!
//! A new connection that would pass a pending limit, or a total limit while
//! pending connections hold part of it, takes the place of the *oldest*
//! pending connection concerned, which is closed. Pending connections are
//! the only ones an outsider without the key can hold, so they can never
//! fill the registry: a real server or load balancer connecting proves
//! itself with its first line, a moment after connecting, and from then on
//! no newcomer displaces it. Only when proven connections alone fill a
//! limit is a newcomer refused.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use crate::state::ConnId;

/// The limits (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_ip: usize,
    pub max_pending: usize,
    pub max_pending_per_ip: usize,
}

/// Why a connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` proven connections are open.
    Full,
    /// `max_per_ip` proven connections from this address are open.
    PerAddress,
}

/// What [`Gate::admit`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted (as pending); close these older pending connections.
    Admit {
        evict: Vec<ConnId>,
    },
    Refuse(Refusal),
}

#[derive(Debug, Default)]
struct Address {
    open: usize,
    /// Pending connections from this address, oldest (lowest id) first.
    pending: BTreeSet<ConnId>,
}

/// The connections open and which of them are pending, by address.
#[derive(Debug)]
pub struct Gate {
    limits: Limits,
    conns: HashMap<ConnId, IpAddr>,
    /// Every pending connection, oldest first (ids only grow).
    pending: BTreeSet<ConnId>,
    addresses: HashMap<IpAddr, Address>,
}

impl Gate {
    pub fn new(limits: Limits) -> Gate {
        Gate {
            limits,
            conns: HashMap::new(),
            pending: BTreeSet::new(),
            addresses: HashMap::new(),
        }
    }

    /// Connections open.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Pending connections open.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether `id` is open and pending.
    pub fn is_pending(&self, id: ConnId) -> bool {
        self.pending.contains(&id)
    }

    /// A connection `id` (higher than any before) from `ip`.
    pub fn admit(&mut self, id: ConnId, ip: IpAddr) -> Verdict {
        let l = self.limits;
        let (open_here, pending_here) = self
            .addresses
            .get(&ip)
            .map_or((0, 0), |a| (a.open, a.pending.len()));
        if open_here >= l.max_per_ip && pending_here == 0 {
            return Verdict::Refuse(Refusal::PerAddress);
        }
        if self.conns.len() >= l.max_connections && self.pending.is_empty() {
            return Verdict::Refuse(Refusal::Full);
        }
        let mut evict = Vec::new();
        loop {
            let here = self.addresses.get(&ip);
            let over = here
                .is_some_and(|a| a.open >= l.max_per_ip || a.pending.len() >= l.max_pending_per_ip);
            let oldest = here.and_then(|a| a.pending.first().copied());
            match (over, oldest) {
                (true, Some(old)) => {
                    self.remove(old);
                    evict.push(old);
                }
                _ => break,
            }
        }
        while self.conns.len() >= l.max_connections || self.pending.len() >= l.max_pending {
            let Some(old) = self.pending.first().copied() else {
                break;
            };
            self.remove(old);
            evict.push(old);
        }
        self.conns.insert(id, ip);
        self.pending.insert(id);
        let address = self.addresses.entry(ip).or_default();
        address.open += 1;
        address.pending.insert(id);
        Verdict::Admit { evict }
    }

    /// `id` sent a valid first line: it no longer counts as pending.
    pub fn prove(&mut self, id: ConnId) {
        if self.pending.remove(&id) {
            if let Some(a) = self
                .conns
                .get(&id)
                .and_then(|ip| self.addresses.get_mut(ip))
            {
                a.pending.remove(&id);
            }
        }
    }

    /// `id` closed (for whatever reason).
    pub fn remove(&mut self, id: ConnId) {
        let Some(ip) = self.conns.remove(&id) else {
            return;
        };
        self.pending.remove(&id);
        if let Some(a) = self.addresses.get_mut(&ip) {
            a.open -= 1;
            a.pending.remove(&id);
            if a.open == 0 {
                self.addresses.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn gate() -> Gate {
        Gate::new(Limits {
            max_connections: 10,
            max_per_ip: 4,
            max_pending: 6,
            max_pending_per_ip: 2,
        })
    }

    fn admitted(v: Verdict) -> Vec<ConnId> {
        match v {
            Verdict::Admit { evict } => evict,
            other => panic!("refused: {other:?}"),
        }
    }

    #[test]
    fn pending_connections_from_one_address_displace_the_oldest() {
        let mut g = gate();
        assert!(admitted(g.admit(1, ip(1))).is_empty());
        assert!(admitted(g.admit(2, ip(1))).is_empty());
        assert_eq!(admitted(g.admit(3, ip(1))), vec![1]);
        assert_eq!(admitted(g.admit(4, ip(1))), vec![2]);
        assert_eq!(g.len(), 2);
        // Another address is not affected.
        assert!(admitted(g.admit(5, ip(2))).is_empty());
    }

    #[test]
    fn proven_connections_are_never_displaced() {
        let mut g = gate();
        for id in 1..=4 {
            admitted(g.admit(id, ip(1)));
            g.prove(id);
        }
        // Four proven from ip(1): the per-address cap refuses a fifth.
        assert_eq!(g.admit(5, ip(1)), Verdict::Refuse(Refusal::PerAddress));
        g.remove(4);
        admitted(g.admit(6, ip(1)));
        // At the cap with one pending: a newcomer takes the pending one's place.
        assert_eq!(admitted(g.admit(7, ip(1))), vec![6]);
        assert!(!g.is_pending(1) && g.is_pending(7));
    }

    #[test]
    fn the_pending_share_is_bounded_and_the_rest_kept_for_proven_ones() {
        let mut g = gate();
        // Six addresses' pending connections fill the pending share ...
        for id in 1..=6 {
            admitted(g.admit(id, ip(id as u8)));
        }
        // ... so the next one displaces the oldest pending anywhere.
        assert_eq!(admitted(g.admit(7, ip(7))), vec![1]);
        assert_eq!(g.pending(), 6);

        // Proven connections fill the total: only then is a newcomer refused.
        let mut g = gate();
        for id in 1..=10 {
            assert!(admitted(g.admit(id, ip(id as u8))).is_empty());
            g.prove(id);
        }
        assert_eq!(g.admit(11, ip(11)), Verdict::Refuse(Refusal::Full));
        g.remove(10);
        assert!(admitted(g.admit(12, ip(12))).is_empty());
        // Full again, but with a pending one: the newcomer takes its place.
        assert_eq!(admitted(g.admit(13, ip(13))), vec![12]);
        assert_eq!(g.len(), 10);
    }
}
