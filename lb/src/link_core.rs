//! The registry link's decisions as a sans-io state machine: when to
//! resolve, connect, ask and give up, and what a received list does to the
//! shared [`ServerSnapshot`]. It is fed events (a timer, a resolved name, a
//! connection made or failed, bytes received) with the current `Instant`,
//! and answers with [`Command`]s for the I/O part
//! ([`RegistryLink`](crate::registry_link::RegistryLink)) to carry out. It
//! never touches a socket, a thread or the clock, so every rule is tested
//! with fabricated instants (`link_core_tests.rs`).
//!
//! ```text
//!  Down --retry time--> Resolving --addresses--> Connecting --connected--> Up
//!   ^                       |                        |                      |
//!   +------ failure (backoff doubles, jittered, capped) ---------------------+
//! ```
//!
//! Once up it sends `LIST`, then after each answer `WATCH <version>` no
//! sooner than one interval after the previous request: the registry answers
//! a `WATCH` at once when its list has changed (so a change arrives
//! immediately), else after its own watch timeout. An answer that takes
//! longer than the answer timeout counts as a dead registry.
//!
//! While the registry is unreachable the last snapshot stays in use; the
//! change of state is logged once each way, not once per attempt.
//!
//! After a *re*connect the registry may have restarted with an empty table
//! that its servers are still refilling (they reconnect with backoff). For a
//! resync grace period the link therefore publishes the union of the new
//! list and the servers it already knew ([`resync_union`]), and only then the
//! registry's list alone: a restarted registry never empties the rotation,
//! and a server that really died meanwhile is handled by retries and passive
//! ejection until the grace ends.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use ipcs_common::backoff::Backoff;
use ipcs_common::registry_auth::seal;
use ipcs_common::registry_client::{ListReader, ServerList, MAX_SERVERS};
use ipcs_common::registry_proto::ClientLine;

use crate::metrics::{bump, RegistryStatus};
use crate::registry_link::RegistryLinkConfig;
use crate::snapshot::{Backend, ServerSnapshot, SharedSnapshot};

/// What the I/O part is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Resolve this `host:port` off the reactor and report with
    /// [`LinkCore::on_resolved`].
    Resolve(String),
    /// Drop any current connection and start a non-blocking connect to
    /// this address; report with [`LinkCore::on_connected`] or
    /// [`LinkCore::on_connect_failed`].
    Connect(SocketAddr),
    /// Send these bytes on the connection (report write errors with
    /// [`LinkCore::on_failed`]).
    Send(Vec<u8>),
    /// Drop the connection (and any resolution under way).
    Disconnect,
}

/// Where the link is (see the module docs' figure).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Down {
        retry_at: Instant,
    },
    Resolving {
        deadline: Instant,
    },
    Connecting {
        /// Addresses still to try if this one fails.
        rest: Vec<SocketAddr>,
        deadline: Instant,
    },
    Up {
        /// When the request now unanswered was sent.
        asked_at: Option<Instant>,
        /// When the next request may be sent.
        next_ask: Instant,
        /// A list arrived on this connection (until then, ask with LIST:
        /// a restarted registry may reuse an old version number).
        listed: bool,
    },
}

/// The link's state machine.
pub struct LinkCore {
    config: RegistryLinkConfig,
    phase: Phase,
    reader: ListReader,
    snapshot: SharedSnapshot,
    status: Arc<RegistryStatus>,
    backoff: Backoff,
    /// The unreachable state has been logged and not yet cleared.
    reported_down: bool,
    /// Why the last attempt failed, for the start-up message.
    last_error: Option<String>,
    has_list: bool,
    /// Until when lists are merged with the known servers (after a reconnect).
    resync_until: Option<Instant>,
    /// The registry's own last list, to publish when the grace ends.
    last_list: Option<ServerSnapshot>,
}

impl LinkCore {
    /// A link that will publish into `snapshot`, due to connect at `now`.
    pub fn new(
        config: RegistryLinkConfig,
        snapshot: SharedSnapshot,
        status: Arc<RegistryStatus>,
        now: Instant,
    ) -> LinkCore {
        LinkCore {
            backoff: Backoff::new(config.backoff_min, config.backoff_max),
            config,
            phase: Phase::Down { retry_at: now },
            reader: ListReader::new(MAX_SERVERS),
            snapshot,
            status,
            reported_down: false,
            last_error: None,
            has_list: false,
            resync_until: None,
            last_list: None,
        }
    }

    pub fn config(&self) -> &RegistryLinkConfig {
        &self.config
    }

    /// Whether a list has been received since start.
    pub fn has_list(&self) -> bool {
        self.has_list
    }

    /// Whether the connection is up.
    pub fn is_up(&self) -> bool {
        matches!(self.phase, Phase::Up { .. })
    }

    /// Whether a connect is under way (its completion is a socket event).
    pub fn is_connecting(&self) -> bool {
        matches!(self.phase, Phase::Connecting { .. })
    }

    /// Whether a name is being resolved.
    pub fn is_resolving(&self) -> bool {
        matches!(self.phase, Phase::Resolving { .. })
    }

    /// Why the last attempt failed, if it did.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// When [`on_timer`](Self::on_timer) next has something to do.
    pub fn next_deadline(&self) -> Instant {
        let link = match &self.phase {
            Phase::Down { retry_at } => *retry_at,
            Phase::Resolving { deadline } | Phase::Connecting { deadline, .. } => *deadline,
            Phase::Up {
                asked_at: Some(at), ..
            } => *at + self.config.answer_timeout,
            Phase::Up { next_ask, .. } => *next_ask,
        };
        self.resync_until.map_or(link, |until| until.min(link))
    }

    /// Advances timers: reconnects, gives up on slow answers, asks again.
    pub fn on_timer(&mut self, now: Instant, out: &mut Vec<Command>) {
        if self.resync_until.is_some_and(|until| now >= until) {
            self.resync_until = None;
            if let Some(list) = self.last_list.take() {
                self.publish(list);
            }
        }
        match &self.phase {
            Phase::Down { retry_at } if now >= *retry_at => self.start(now, out),
            Phase::Resolving { deadline } if now >= *deadline => {
                self.fail(now, "name resolution timed out".into(), out)
            }
            Phase::Connecting { deadline, .. } if now >= *deadline => {
                self.next_address(now, "connect timed out".into(), out)
            }
            Phase::Up {
                asked_at: Some(at), ..
            } if now >= *at + self.config.answer_timeout => {
                let waited = self.config.answer_timeout.as_millis();
                self.fail(now, format!("no answer within {waited} ms"), out)
            }
            Phase::Up {
                asked_at: None,
                next_ask,
                ..
            } if now >= *next_ask => self.ask(now, out),
            _ => {}
        }
    }

    /// The name asked for by [`Command::Resolve`] resolved to `addrs`, or
    /// could not be resolved (`Err` says why).
    pub fn on_resolved(
        &mut self,
        addrs: Result<Vec<SocketAddr>, String>,
        now: Instant,
        out: &mut Vec<Command>,
    ) {
        if !self.is_resolving() {
            return;
        }
        match addrs {
            Ok(addrs) if !addrs.is_empty() => self.connect(addrs, now, out),
            Ok(_) => self.fail(now, "the name resolves to no address".into(), out),
            Err(reason) => self.fail(now, reason, out),
        }
    }

    /// The connect of [`Command::Connect`] completed.
    pub fn on_connected(&mut self, now: Instant, out: &mut Vec<Command>) {
        if !self.is_connecting() {
            return;
        }
        self.phase = Phase::Up {
            asked_at: None,
            next_ask: now,
            listed: false,
        };
        self.reader.reset();
        if self.has_list && !self.config.resync_grace.is_zero() {
            self.resync_until = Some(now + self.config.resync_grace);
        }
        self.backoff.reset();
        self.last_error = None;
        bump(&self.status.connects);
        self.status.reachable.store(true, Relaxed);
        if self.reported_down {
            self.reported_down = false;
            tracing::info!(registry = %self.config.addr, "registry reachable again");
        } else {
            tracing::debug!(registry = %self.config.addr, "connected to the registry");
        }
        self.ask(now, out);
    }

    /// The connect of [`Command::Connect`] failed: tries the next address
    /// or gives up.
    pub fn on_connect_failed(&mut self, reason: String, now: Instant, out: &mut Vec<Command>) {
        if self.is_connecting() {
            self.next_address(now, reason, out);
        }
    }

    /// Bytes from the registry.
    pub fn on_bytes(&mut self, bytes: &[u8], now: Instant, out: &mut Vec<Command>) {
        if !self.is_up() {
            return;
        }
        match self.reader.feed(bytes) {
            Ok(Some(list)) => self.on_list(list, now),
            Ok(None) => {}
            Err(e) => self.fail(now, format!("bad answer: {e}"), out),
        }
    }

    /// The connection (or the attempt) is dead: closed by the registry, a
    /// socket error, or the poll refused it.
    pub fn on_failed(&mut self, reason: String, now: Instant, out: &mut Vec<Command>) {
        if !matches!(self.phase, Phase::Down { .. }) {
            self.fail(now, reason, out);
        }
    }

    fn start(&mut self, now: Instant, out: &mut Vec<Command>) {
        if let Ok(addr) = self.config.addr.parse::<SocketAddr>() {
            return self.connect(vec![addr], now, out);
        }
        self.phase = Phase::Resolving {
            deadline: now + self.config.connect_timeout,
        };
        out.push(Command::Resolve(self.config.addr.clone()));
    }

    fn connect(&mut self, mut addrs: Vec<SocketAddr>, now: Instant, out: &mut Vec<Command>) {
        let addr = addrs.remove(0);
        self.phase = Phase::Connecting {
            rest: addrs,
            deadline: now + self.config.connect_timeout,
        };
        out.push(Command::Connect(addr));
    }

    /// The current address failed; tries the next one or gives up.
    fn next_address(&mut self, now: Instant, reason: String, out: &mut Vec<Command>) {
        let rest = match &mut self.phase {
            Phase::Connecting { rest, .. } => std::mem::take(rest),
            _ => Vec::new(),
        };
        if rest.is_empty() {
            self.fail(now, reason, out);
        } else {
            self.connect(rest, now, out);
        }
    }

    /// Sends `LIST` (first question on a connection) or `WATCH <version>`.
    fn ask(&mut self, now: Instant, out: &mut Vec<Command>) {
        let version = self.snapshot.load().version;
        if let Phase::Up {
            asked_at, listed, ..
        } = &mut self.phase
        {
            let line = if *listed {
                ClientLine::Watch(version)
            } else {
                ClientLine::List
            };
            // A fresh proof each time: the registry refuses a replay.
            let mut bytes = Vec::new();
            let _ = seal(self.config.key.as_ref(), line).write(&mut bytes);
            out.push(Command::Send(bytes));
            *asked_at = Some(now);
        }
    }

    fn on_list(&mut self, list: ServerList, now: Instant) {
        bump(&self.status.lists);
        let servers = list
            .servers
            .iter()
            .map(|e| Backend {
                id: e.id,
                mac: e.mac,
                ip: e.ip,
                udp: e.udp,
            })
            .collect();
        let fresh = ServerSnapshot::new(list.version, servers);
        if self.resync_until.is_some_and(|until| now < until) {
            let merged = resync_union(&self.snapshot.load(), &fresh);
            if merged.len() > fresh.len() {
                tracing::debug!(
                    kept = merged.len() - fresh.len(),
                    "registry reconnected: keeping known servers until the resync grace ends"
                );
            }
            self.last_list = Some(fresh);
            self.publish(merged);
        } else {
            self.last_list = None;
            self.publish(fresh);
        }
        self.has_list = true;
        if let Phase::Up {
            asked_at,
            next_ask,
            listed,
        } = &mut self.phase
        {
            *listed = true;
            let asked = asked_at.take().unwrap_or(now);
            *next_ask = (asked + self.config.interval).max(now);
        }
    }

    /// Swaps `fresh` in if it differs from what the workers see.
    fn publish(&mut self, fresh: ServerSnapshot) {
        let current = self.snapshot.load();
        if !self.has_list || **current != fresh {
            let ids: Vec<u8> = fresh.servers.iter().map(|b| b.id).collect();
            tracing::info!(version = fresh.version, servers = ?ids, "server list updated");
            self.status.version.store(fresh.version, Relaxed);
            self.snapshot.store(Arc::new(fresh));
        }
    }

    fn fail(&mut self, now: Instant, reason: String, out: &mut Vec<Command>) {
        out.push(Command::Disconnect);
        self.phase = Phase::Down {
            retry_at: now + self.backoff.next_delay(),
        };
        self.status.reachable.store(false, Relaxed);
        if !self.reported_down {
            self.reported_down = true;
            let snap = self.snapshot.load();
            tracing::warn!(
                registry = %self.config.addr,
                "registry unreachable ({reason}); serving with the last list ({} servers, version {}); reconnecting with backoff",
                snap.len(),
                snap.version
            );
        } else {
            tracing::debug!(registry = %self.config.addr, "registry still unreachable: {reason}");
        }
        self.last_error = Some(reason);
    }
}

/// The registry's `fresh` list plus every server of `known` it does not
/// (yet) list, unless its id is now taken by another MAC. The version is the
/// registry's, so the next `WATCH` asks about the registry's own state.
pub fn resync_union(known: &ServerSnapshot, fresh: &ServerSnapshot) -> ServerSnapshot {
    let mut servers = fresh.servers.clone();
    for old in &known.servers {
        if !fresh
            .servers
            .iter()
            .any(|b| b.mac == old.mac || b.id == old.id)
        {
            servers.push(*old);
        }
    }
    ServerSnapshot::new(fresh.version, servers)
}

#[cfg(test)]
#[path = "link_core_tests.rs"]
mod tests;
