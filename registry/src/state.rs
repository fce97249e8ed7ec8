//! Who is alive: the registry's membership table as a sans-io state machine.
//! It is fed events (`hello`, `beat`, `closed`) with the connection they came
//! on and the current `Instant`, and answers with decisions (which connection
//! to close, whether the list changed). It owns the table, the id and MAC
//! indexes and the list version; it never touches a socket or a clock.
//!
//! Rules (see docs/PROTOCOL.md, "Registry protocol"):
//! * one registration per connection; the connection closing removes it;
//! * no `BEAT` for `ttl` removes it too (and its connection should be closed);
//! * a `HELLO` for a MAC already registered on another connection replaces
//!   that entry (a restarted server), and that connection should be closed;
//! * an id held by a different MAC is refused, so ids are unique;
//! * at most `max_servers` entries (ids are 1..=255, so never more than 255);
//! * the version goes up by one on every change of the listed entries.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ipcs_common::registry_proto::ServerEntry;
use ipcs_common::wire::MacAddr;

/// Identifies one TCP connection for the lifetime of the registry process
/// (never reused, so a late event for a closed connection cannot hit a new one).
pub type ConnId = u64;

/// The most servers the protocol can name: ids are 1..=255.
pub const MAX_IDS: usize = 255;

/// Why a `HELLO` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("id taken")]
    IdTaken { id: u8, holder: MacAddr },
    #[error("registry full ({cap} servers)")]
    TableFull { cap: usize },
    #[error("id 0 is not a server id")]
    ZeroId,
}

/// What a successful `HELLO` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    /// Another connection whose entry (same MAC) this one replaced; close it.
    pub replaced: Option<ConnId>,
    /// Whether the listed entries changed (and so the version went up).
    pub changed: bool,
}

#[derive(Debug, Clone, Copy)]
struct Registration {
    entry: ServerEntry,
    last_beat: Instant,
}

/// The live servers, indexed by connection, id and MAC.
#[derive(Debug)]
pub struct Membership {
    ttl: Duration,
    max_servers: usize,
    by_conn: HashMap<ConnId, Registration>,
    /// `by_id[id]` is the connection holding `id`; index 0 is never used.
    by_id: Box<[Option<ConnId>; 256]>,
    by_mac: HashMap<MacAddr, ConnId>,
    version: u64,
}

impl Membership {
    /// An empty table. `max_servers` is clamped to [`MAX_IDS`]; the version
    /// starts at `initial_version` (the registry seeds it from the wall clock
    /// so versions keep increasing across restarts).
    pub fn new(ttl: Duration, max_servers: usize, initial_version: u64) -> Membership {
        Membership {
            ttl,
            max_servers: max_servers.min(MAX_IDS),
            by_conn: HashMap::new(),
            by_id: Box::new([None; 256]),
            by_mac: HashMap::new(),
            version: initial_version,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Increases on every change of the listed entries.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn len(&self) -> usize {
        self.by_conn.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_conn.is_empty()
    }

    /// Whether `conn` holds a registration.
    pub fn is_registered(&self, conn: ConnId) -> bool {
        self.by_conn.contains_key(&conn)
    }

    /// Registers `entry` on `conn` (its first beat is `now`).
    pub fn hello(
        &mut self,
        conn: ConnId,
        entry: ServerEntry,
        now: Instant,
    ) -> Result<Registered, HelloError> {
        if entry.id == 0 {
            return Err(HelloError::ZeroId);
        }
        let same_mac = self.by_mac.get(&entry.mac).copied();
        // The entries this HELLO takes the place of: its own connection's
        // earlier registration and the entry with the same MAC.
        let superseded = |c: ConnId| c == conn || Some(c) == same_mac;
        if let Some(holder) = self.by_id[usize::from(entry.id)] {
            if !superseded(holder) {
                let holder_mac = self.by_conn[&holder].entry.mac;
                return Err(HelloError::IdTaken {
                    id: entry.id,
                    holder: holder_mac,
                });
            }
        }
        let freed = usize::from(self.by_conn.contains_key(&conn))
            + usize::from(same_mac.is_some_and(|c| c != conn));
        if self.by_conn.len() - freed >= self.max_servers {
            return Err(HelloError::TableFull {
                cap: self.max_servers,
            });
        }

        // Re-registering the very same address (say, a server that
        // restarted faster than its old connection closed) changes nothing a
        // list reader could see, so it does not move the version.
        let changed = self.would_change(conn, entry);
        self.remove(conn);
        let replaced = same_mac.filter(|&c| c != conn);
        if let Some(other) = replaced {
            self.remove(other);
        }
        self.by_conn.insert(
            conn,
            Registration {
                entry,
                last_beat: now,
            },
        );
        self.by_id[usize::from(entry.id)] = Some(conn);
        self.by_mac.insert(entry.mac, conn);
        if changed {
            self.version += 1;
        }
        Ok(Registered { replaced, changed })
    }

    /// Whether [`hello`](Self::hello) of `entry` on `conn` would change the
    /// listed entries (if accepted).
    pub fn would_change(&self, conn: ConnId, entry: ServerEntry) -> bool {
        let same_mac = self.by_mac.get(&entry.mac).copied();
        let mut old = Vec::with_capacity(2);
        old.extend(self.entry(conn));
        if let Some(other) = same_mac.filter(|&c| c != conn) {
            old.extend(self.entry(other));
        }
        old != [entry]
    }

    /// Records a `BEAT` on `conn`; false if `conn` holds no registration.
    pub fn beat(&mut self, conn: ConnId, now: Instant) -> bool {
        match self.by_conn.get_mut(&conn) {
            Some(registration) => {
                registration.last_beat = registration.last_beat.max(now);
                true
            }
            None => false,
        }
    }

    /// `conn` closed: drops its registration, if any, and returns it.
    pub fn closed(&mut self, conn: ConnId) -> Option<ServerEntry> {
        let entry = self.remove(conn)?;
        self.version += 1;
        Some(entry)
    }

    /// Removes every registration whose last beat is `ttl` or more before
    /// `now`; returns their connections (to be closed) with the removed
    /// entries, in id order.
    pub fn expire(&mut self, now: Instant) -> Vec<(ConnId, ServerEntry)> {
        let ttl = self.ttl;
        let mut dead: Vec<(ConnId, ServerEntry)> = self
            .by_conn
            .iter()
            .filter(|(_, r)| now.saturating_duration_since(r.last_beat) >= ttl)
            .map(|(&conn, r)| (conn, r.entry))
            .collect();
        dead.sort_unstable_by_key(|(_, entry)| entry.id);
        for &(conn, _) in &dead {
            self.remove(conn);
        }
        if !dead.is_empty() {
            self.version += 1;
        }
        dead
    }

    /// When the next registration expires if it gets no beat before then.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.by_conn.values().map(|r| r.last_beat + self.ttl).min()
    }

    /// The registered entry of `conn`.
    pub fn entry(&self, conn: ConnId) -> Option<ServerEntry> {
        self.by_conn.get(&conn).map(|r| r.entry)
    }

    /// The live servers in id order.
    pub fn list(&self) -> Vec<ServerEntry> {
        self.by_id
            .iter()
            .flatten()
            .map(|conn| self.by_conn[conn].entry)
            .collect()
    }

    fn remove(&mut self, conn: ConnId) -> Option<ServerEntry> {
        let registration = self.by_conn.remove(&conn)?;
        let entry = registration.entry;
        self.by_id[usize::from(entry.id)] = None;
        self.by_mac.remove(&entry.mac);
        Some(entry)
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
