//! The server list as the forwarding path sees it: an immutable
//! [`ServerSnapshot`] published through an [`ArcSwap`], so the registry poller
//! can replace it while every worker keeps reading without a lock. Whoever
//! reads the list (the forwarding path, metrics, the summary log) reads the
//! same snapshot.

use std::net::Ipv4Addr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ipcs_common::wire::MacAddr;

/// One live server, as the registry listed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backend {
    /// What the server puts in its replies (1..=255).
    pub id: u8,
    /// Where frames for this server are sent; the server's identity.
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    /// The server's own UDP port, if it has one (the LB never uses it).
    pub udp: Option<u16>,
}

impl Backend {
    /// The order of the rotation: by id, then MAC (ids need not be unique,
    /// MACs are). A stable order lets round-robin resume "after the server
    /// last served" in a list it has never seen before.
    pub fn rotation_key(&self) -> (u8, MacAddr) {
        (self.id, self.mac)
    }
}

/// An immutable server list with the registry version it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSnapshot {
    /// The registry's list version; `0` before any list arrived.
    pub version: u64,
    /// Sorted by [`Backend::rotation_key`], one entry per MAC.
    pub servers: Vec<Backend>,
}

impl ServerSnapshot {
    /// Builds a snapshot, sorting the servers into rotation order and
    /// keeping only the first entry of any repeated MAC (a registry never
    /// lists one twice, but a list from the wire is not trusted to).
    pub fn new(version: u64, mut servers: Vec<Backend>) -> ServerSnapshot {
        servers.sort_by_key(|b| b.mac);
        servers.dedup_by_key(|b| b.mac);
        servers.sort_by_key(Backend::rotation_key);
        ServerSnapshot { version, servers }
    }

    /// The empty list a load balancer starts with before the registry
    /// answered.
    pub fn empty() -> ServerSnapshot {
        ServerSnapshot::default()
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Index of the server with this MAC.
    pub fn position(&self, mac: MacAddr) -> Option<usize> {
        self.servers.iter().position(|b| b.mac == mac)
    }
}

/// The one shared, swappable snapshot.
pub type SharedSnapshot = Arc<ArcSwap<ServerSnapshot>>;

/// A shared snapshot holding the empty list.
pub fn shared_empty() -> SharedSnapshot {
    Arc::new(ArcSwap::from_pointee(ServerSnapshot::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(id: u8, last: u8) -> Backend {
        Backend {
            id,
            mac: MacAddr([2, 0, 0, 0, 0, last]),
            ip: Ipv4Addr::new(172, 16, 238, last),
            udp: None,
        }
    }

    #[test]
    fn new_sorts_by_id_then_mac_and_drops_repeated_macs() {
        let snap = ServerSnapshot::new(
            7,
            vec![
                backend(3, 13),
                backend(1, 11),
                backend(1, 9),
                backend(2, 11),
            ],
        );
        let keys: Vec<_> = snap.servers.iter().map(|b| (b.id, b.mac.0[5])).collect();
        // MAC ..:0b appeared twice (ids 1 and 2); one survives.
        assert_eq!(keys.len(), 3);
        assert_eq!(keys[0], (1, 9));
        assert!(keys.contains(&(3, 13)));
        assert_eq!(snap.version, 7);
        assert_eq!(snap.position(MacAddr([2, 0, 0, 0, 0, 13])), Some(2));
        assert_eq!(snap.position(MacAddr([2, 0, 0, 0, 0, 99])), None);
    }

    #[test]
    fn swap_is_seen_by_readers() {
        let shared = shared_empty();
        let before = shared.load_full();
        shared.store(Arc::new(ServerSnapshot::new(2, vec![backend(1, 11)])));
        assert!(before.is_empty());
        assert_eq!(shared.load().version, 2);
        assert_eq!(shared.load().len(), 1);
    }
}
