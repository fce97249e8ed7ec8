//! The registry's session rules as a sans-io state machine: what each
//! connection may do and what the registry answers. It is fed events (a
//! connection accepted, bytes received, a connection gone, the clock
//! moving) with the current `Instant`, and hands its decisions (bytes to
//! send, connections to close) to an [`Outbox`]: the reactor's sockets, or a
//! recording in the tests. It owns the
//! [`Membership`] table, each connection's [`Session`] (partial line,
//! deadlines, pending `WATCH`) and the counters; it never touches a socket
//! or a clock, so every rule is tested with fabricated instants
//! (`session_tests.rs`).
//!
//! Rules (see docs/PROTOCOL.md, "Registry protocol", and docs/SECURITY.md):
//! * who may hold a connection is the [`Gate`]'s: total, per-address and
//!   unauthenticated limits, where a newcomer displaces the oldest
//!   connection that has not yet sent a valid line; a connection refused is
//!   answered `ERR` and closed;
//! * with a key, every line but `BEAT` must carry a valid proof that is
//!   fresh and not replayed; a `HELLO`'s ip must be the connection's
//!   address; `BEAT` is taken only on a connection registered with proof;
//! * a `HELLO` that would change the list needs a token of its address's
//!   [`ChangeLimiter`] bucket;
//! * a connection that has sent a valid line and then none for
//!   `idle_timeout` is closed;
//! * a connection that sends no valid line within `first_line_timeout` is
//!   closed, and so is one whose first line is an error: until a connection
//!   has sent one valid line it is unknown, and an `ERR` ends it;
//! * a line over `max_line` bytes closes any connection;
//! * `HELLO` only from a source inside `--allow`;
//! * one `WATCH` at a time per connection; a `WATCH` for an old version is
//!   answered at once, else when the version moves or after `watch_timeout`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ipcs_common::registry_proto::{
    ClientLine, LineBuffer, ProtoError, RegistryLine, ServerEntry, SignedLine,
};
use tracing::{debug, info, warn};

use crate::change_rate::ChangeLimiter;
use crate::cidr;
use crate::config::Config;
use crate::gate::{self, Gate, Refusal, Verdict};
use crate::metrics::{self, Counters};
use crate::replay::{ReplayError, ReplayGuard};
use crate::state::{ConnId, HelloError, Membership};

/// Connection ids start here (the reactor keeps the ones below for its own
/// tokens: listener, signals, waker).
pub const FIRST_CONN: ConnId = 16;

/// What the answer to one connection too many says before it is closed.
pub const TOO_MANY_CONNECTIONS: &[u8] = b"ERR too many connections\n";
/// The same for one too many from the connection's address.
pub const TOO_MANY_FROM_ADDRESS: &[u8] = b"ERR too many connections from this address\n";

/// Addresses whose list changes are tracked at most (see [`ChangeLimiter`]).
const MAX_CHANGE_BUCKETS: usize = 4096;

/// Where the decisions go. The reactor carries them out on its sockets
/// at once, so a connection whose peer stops reading is closed before the
/// next line is handled and its output stays bounded.
pub trait Outbox {
    /// Queues `bytes` (whole lines) for sending on `conn`; refused when the
    /// connection's unsent output would pass its bound.
    fn send(&mut self, conn: ConnId, bytes: &[u8]) -> Result<(), OutputFull>;
    /// Closes `conn`. With `finish`, first sends what is queued, ends the
    /// stream and reads away what the peer already sent, so the peer reads
    /// the last `ERR` before a FIN rather than a reset.
    fn close(&mut self, conn: ConnId, finish: bool);
}

/// The unsent output would pass the connection's bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputFull {
    /// Bytes already waiting to be sent.
    pub pending: usize,
}

/// Why a connection is being closed (for the logs).
#[derive(Debug)]
pub enum Close {
    PeerClosed,
    Io(io::Error),
    Refused,
    FirstLineTimeout,
    OutputFull,
    Expired,
    Replaced(ConnId),
    Evicted,
    Idle,
    Shutdown,
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Close::PeerClosed => f.write_str("connection closed by peer"),
            Close::Io(e) => write!(f, "socket error: {e}"),
            Close::Refused => f.write_str("refused"),
            Close::FirstLineTimeout => f.write_str("no valid line in time"),
            Close::OutputFull => f.write_str("peer not reading its answers"),
            Close::Expired => f.write_str("no BEAT within the TTL"),
            Close::Replaced(by) => write!(f, "replaced by connection {by}"),
            Close::Evicted => {
                f.write_str("displaced by a newer connection before sending a valid line")
            }
            Close::Idle => f.write_str("no valid line within the idle timeout"),
            Close::Shutdown => f.write_str("registry stopping"),
        }
    }
}

/// What [`Sessions::on_accept`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A session was opened under this id.
    Open(ConnId),
    /// No room: send these words ([`TOO_MANY_CONNECTIONS`] or
    /// [`TOO_MANY_FROM_ADDRESS`]) and drop the connection.
    Refused(&'static [u8]),
}

/// A `WATCH` waiting for the version to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingWatch {
    pub version: u64,
    pub deadline: Instant,
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Session {
    pub peer: SocketAddr,
    lines: LineBuffer,
    /// Sent at least one valid line (so errors no longer close it).
    pub known: bool,
    /// Until `known`, the connection is closed at this instant.
    pub first_line_deadline: Instant,
    pub watch: Option<PendingWatch>,
    /// When the last valid line arrived (for the idle timeout).
    pub last_line: Instant,
    /// The idle deadline queued for this connection, if any (one at a time).
    idle_check: Option<Instant>,
}

/// Logs a limit being hit at most once a second per kind, with a count, so a
/// flood cannot turn into a flood of log lines.
#[derive(Debug, Default)]
pub struct WarnLimiter {
    last: HashMap<&'static str, Instant>,
}

impl WarnLimiter {
    pub fn allow(&mut self, kind: &'static str, now: Instant) -> bool {
        match self.last.get(kind) {
            Some(&at) if now.duration_since(at) < Duration::from_secs(1) => false,
            _ => {
                self.last.insert(kind, now);
                true
            }
        }
    }
}

/// Every connection's session, the membership table and the counters.
#[derive(Debug)]
pub struct Sessions {
    config: Config,
    sessions: HashMap<ConnId, Session>,
    next_conn: ConnId,
    membership: Membership,
    /// First-line and `WATCH` deadlines. Entries are not removed when a
    /// connection closes or its watch is answered; a due entry is checked
    /// against the connection's current state and dropped if stale.
    deadlines: BinaryHeap<Reverse<(Instant, ConnId)>>,
    /// The encoded `SERVERS ... END` block and the version it shows.
    list_cache: Option<(u64, Vec<u8>)>,
    /// The version parked watchers were last told about.
    announced: u64,
    counters: Counters,
    warn_limiter: WarnLimiter,
    gate: Gate,
    /// With a key: the proofs seen within the window.
    replay: Option<ReplayGuard>,
    changes: ChangeLimiter,
}

impl Sessions {
    /// No connections yet; the list version starts at `initial_version`.
    pub fn new(config: Config, initial_version: u64) -> Sessions {
        let membership = Membership::new(config.ttl, config.max_servers, initial_version);
        let gate = Gate::new(gate::Limits {
            max_connections: config.max_connections,
            max_per_ip: config.max_per_ip,
            max_pending: config.max_pending,
            max_pending_per_ip: config.max_pending_per_ip,
        });
        let replay = config
            .auth
            .as_ref()
            .map(|a| ReplayGuard::new(a.window.as_millis() as u64, a.replay_capacity));
        let changes = ChangeLimiter::new(
            config.change_burst,
            config.change_refill,
            MAX_CHANGE_BUCKETS,
        );
        Sessions {
            gate,
            replay,
            changes,
            announced: membership.version(),
            membership,
            config,
            sessions: HashMap::new(),
            next_conn: FIRST_CONN,
            deadlines: BinaryHeap::new(),
            list_cache: None,
            counters: Counters::default(),
            warn_limiter: WarnLimiter::default(),
        }
    }

    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn session(&self, id: ConnId) -> Option<&Session> {
        self.sessions.get(&id)
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Ids of every open connection (to close them all on the way out).
    pub fn ids(&self) -> Vec<ConnId> {
        self.sessions.keys().copied().collect()
    }

    /// The earliest instant [`on_tick`](Self::on_tick) has work at.
    pub fn next_deadline(&self) -> Option<Instant> {
        let membership = self.membership.next_expiry();
        let other = self.deadlines.peek().map(|Reverse((at, _))| *at);
        match (membership, other) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A connection from `peer` was accepted. Older connections that had
    /// not yet sent a valid line may be closed to make room (see [`Gate`]).
    pub fn on_accept(
        &mut self,
        peer: SocketAddr,
        now: Instant,
        out: &mut impl Outbox,
    ) -> Admission {
        let id = self.next_conn;
        let evict = match self.gate.admit(id, peer.ip()) {
            Verdict::Admit { evict } => evict,
            Verdict::Refuse(why) => {
                let (kind, words) = match why {
                    Refusal::Full => {
                        self.counters.connections_refused += 1;
                        (metrics::CONNECTIONS_REFUSED, TOO_MANY_CONNECTIONS)
                    }
                    Refusal::PerAddress => {
                        self.counters.connections_refused_per_ip += 1;
                        (metrics::CONNECTIONS_REFUSED_PER_IP, TOO_MANY_FROM_ADDRESS)
                    }
                };
                if self.warn_limiter.allow(kind, now) {
                    warn!(
                        %peer,
                        max = self.config.max_connections,
                        max_per_ip = self.config.max_per_ip,
                        connections_refused_total = self.counters.connections_refused,
                        connections_refused_per_ip_total = self.counters.connections_refused_per_ip,
                        "{}, refusing",
                        String::from_utf8_lossy(&words[4..words.len() - 1])
                    );
                }
                return Admission::Refused(words);
            }
        };
        for old in evict {
            self.counters.pending_evicted += 1;
            if self.warn_limiter.allow(metrics::PENDING_EVICTED, now) {
                warn!(
                    %peer, evicted = old, evicted_total = self.counters.pending_evicted,
                    "too many connections without a valid line: closing the oldest"
                );
            }
            let _ = out.send(
                old,
                b"ERR displaced: no valid line yet and too many waiting\n",
            );
            self.close(old, Close::Evicted, true, now, out);
        }
        self.next_conn += 1;
        self.counters.connections_accepted += 1;
        let deadline = now + self.config.first_line_timeout;
        self.sessions.insert(
            id,
            Session {
                peer,
                lines: LineBuffer::new(self.config.max_line),
                known: false,
                first_line_deadline: deadline,
                watch: None,
                last_line: now,
                idle_check: None,
            },
        );
        self.deadlines.push(Reverse((deadline, id)));
        debug!(conn = id, %peer, "connection accepted");
        Admission::Open(id)
    }

    /// Bytes received on `id`; handles each complete line. `unix_ms` is
    /// the wall clock (milliseconds since the Unix epoch), which proofs'
    /// times are checked against. Returns whether the connection is still
    /// open (the reactor stops reading it if not).
    pub fn on_bytes(
        &mut self,
        id: ConnId,
        mut input: &[u8],
        now: Instant,
        unix_ms: u64,
        out: &mut impl Outbox,
    ) -> bool {
        loop {
            let Some(session) = self.sessions.get_mut(&id) else {
                return false;
            };
            let line = match session.lines.next_line(&mut input) {
                Ok(Some(line)) => SignedLine::parse_bytes(line),
                Ok(None) => return true,
                Err(too_long) => {
                    self.counters.lines_too_long += 1;
                    if self.warn_limiter.allow(metrics::LINES_TOO_LONG, now) {
                        warn!(conn = id, peer = %session.peer, "{too_long}, closing");
                    }
                    self.refuse(id, &RegistryLine::err(too_long), true, now, out);
                    return false;
                }
            };
            self.on_line(id, line, now, unix_ms, out);
        }
    }

    /// The reactor closed `id` for a reason of its own (the peer hung up,
    /// a socket error, shutdown).
    pub fn on_closed(&mut self, id: ConnId, why: Close, now: Instant) {
        self.forget(id, why, now);
    }

    /// `id`'s unsent output passed its bound: the peer is not reading.
    fn overflow(&mut self, id: ConnId, full: OutputFull, now: Instant, out: &mut impl Outbox) {
        let Some(session) = self.sessions.get(&id) else {
            return;
        };
        let pending = full.pending;
        self.counters.output_overflows += 1;
        if self.warn_limiter.allow(metrics::OUTPUT_OVERFLOWS, now) {
            warn!(
                conn = id, peer = %session.peer, pending,
                "peer is not reading its answers, closing"
            );
        }
        self.close(id, Close::OutputFull, false, now, out);
    }

    /// Expires silent servers, handles due first-line and watch deadlines,
    /// and answers every parked `WATCH` once the version has moved.
    pub fn on_tick(&mut self, now: Instant, out: &mut impl Outbox) {
        for (id, entry) in self.membership.expire(now) {
            self.counters.expired += 1;
            info!(
                conn = id, id = entry.id, mac = %entry.mac, version = self.membership.version(),
                "server expired: no BEAT within the TTL"
            );
            self.close(id, Close::Expired, false, now, out);
        }
        while let Some(&Reverse((at, id))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(session) = self.sessions.get(&id) else {
                continue;
            };
            if !session.known && session.first_line_deadline <= now {
                self.counters.first_line_timeouts += 1;
                self.close(id, Close::FirstLineTimeout, false, now, out);
                continue;
            }
            if session.known && session.last_line + self.config.idle_timeout <= now {
                self.counters.idle_timeouts += 1;
                if self.warn_limiter.allow(metrics::IDLE_TIMEOUTS, now) {
                    warn!(conn = id, peer = %session.peer, "no valid line within the idle timeout, closing");
                }
                let _ = out.send(id, b"ERR idle timeout\n");
                self.close(id, Close::Idle, true, now, out);
                continue;
            }
            if session.idle_check == Some(at) {
                // Its idle deadline came but it has spoken since: queue the next.
                self.arm_idle(id);
            }
            if self
                .sessions
                .get(&id)
                .is_some_and(|s| s.watch.is_some_and(|w| w.deadline <= now))
            {
                self.answer_watch(id, now, out);
            }
        }
        self.announce(now, out);
    }

    fn on_line(
        &mut self,
        id: ConnId,
        line: Result<SignedLine, ProtoError>,
        now: Instant,
        unix_ms: u64,
        out: &mut impl Outbox,
    ) {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                self.counters.bad_lines += 1;
                return self.refuse(id, &RegistryLine::err(e), false, now, out);
            }
        };
        if let Err(why) = self.check_proof(&line, unix_ms) {
            return self.refuse(id, &RegistryLine::err(why), false, now, out);
        }
        let line = line.line;
        if let Some(session) = self.sessions.get_mut(&id) {
            session.last_line = now;
        }
        match line {
            ClientLine::Hello { .. } => {
                self.counters.hellos += 1;
                let entry = line.entry().expect("a HELLO has an entry");
                self.on_hello(id, entry, now, out);
            }
            ClientLine::Beat => {
                if self.membership.beat(id, now) {
                    self.counters.beats += 1;
                } else {
                    self.counters.bad_lines += 1;
                    let err = RegistryLine::err("not registered");
                    self.refuse(id, &err, false, now, out);
                }
            }
            ClientLine::List => {
                self.mark_known(id);
                self.send_list(id, now, out);
            }
            ClientLine::Watch(version) => {
                self.counters.watches += 1;
                self.on_watch(id, version, now, out);
            }
            ClientLine::Stats => {
                self.mark_known(id);
                self.send_stats(id, now, out);
            }
        }
    }

    /// With a key: whether `line` proves it comes from a key holder, now
    /// and for the first time; counts a refusal by reason. `BEAT` needs no
    /// proof: it is taken only on a connection that registered with one.
    /// Without a key every line passes (a proof, if any, is ignored).
    fn check_proof(&mut self, line: &SignedLine, unix_ms: u64) -> Result<(), &'static str> {
        let (Some(auth), Some(replay)) = (&self.config.auth, &mut self.replay) else {
            return Ok(());
        };
        let Some(proof) = &line.proof else {
            if line.line == ClientLine::Beat {
                return Ok(());
            }
            self.counters.proof_missing += 1;
            return Err("proof required (this registry has a key; see docs/SECURITY.md)");
        };
        // The tag first: only key holders may take room in the replay guard.
        if !auth.key.verify(&line.line, proof) {
            self.counters.proof_bad += 1;
            return Err("bad proof (not made with this registry's key)");
        }
        match replay.check(proof.unix_ms, proof.nonce, unix_ms) {
            Ok(()) => Ok(()),
            Err(ReplayError::Stale) => {
                self.counters.proof_stale += 1;
                Err("stale proof (clock skew beyond the window, or too old)")
            }
            Err(ReplayError::Replayed) => {
                self.counters.proof_replayed += 1;
                Err("replayed proof")
            }
        }
    }

    fn on_hello(&mut self, id: ConnId, entry: ServerEntry, now: Instant, out: &mut impl Outbox) {
        let Some(session) = self.sessions.get(&id) else {
            return;
        };
        let peer = session.peer;
        if !cidr::allowed(&self.config.allow, peer.ip()) {
            self.counters.hello_not_allowed += 1;
            if self.warn_limiter.allow(metrics::HELLO_NOT_ALLOWED, now) {
                warn!(%peer, id = entry.id, mac = %entry.mac, "registration from outside --allow refused");
            }
            let err = RegistryLine::err("source address not allowed");
            return self.refuse(id, &err, false, now, out);
        }
        // With a key, an entry names its own connection's address: a key
        // holder cannot point the balancer at someone else's.
        if self.config.auth.is_some() && IpAddr::V4(entry.ip) != peer.ip().to_canonical() {
            self.counters.hello_ip_mismatch += 1;
            if self.warn_limiter.allow(metrics::HELLO_IP_MISMATCH, now) {
                warn!(%peer, id = entry.id, ip = %entry.ip, "registration for another address refused");
            }
            let err = RegistryLine::err("ip is not the connection's address");
            return self.refuse(id, &err, false, now, out);
        }
        if self.membership.would_change(id, entry) && !self.changes.allowed(peer.ip(), now) {
            self.counters.hello_rate_limited += 1;
            if self.warn_limiter.allow(metrics::HELLO_RATE_LIMITED, now) {
                warn!(%peer, id = entry.id, "registration refused: this address changes the list too often");
            }
            let err = RegistryLine::err("too many changes from this address; retry later");
            return self.refuse(id, &err, false, now, out);
        }
        match self.membership.hello(id, entry, now) {
            Ok(registered) => {
                if registered.changed {
                    self.changes.spend(peer.ip(), now);
                }
                self.counters.registrations += 1;
                self.mark_known(id);
                info!(
                    conn = id, %peer, id = entry.id, mac = %entry.mac, ip = %entry.ip, udp = ?entry.udp,
                    version = self.membership.version(), "server registered"
                );
                let ttl_ms = self.membership.ttl().as_millis() as u64;
                self.send_line(id, &RegistryLine::Ok { ttl_ms }, now, out);
                if let Some(old) = registered.replaced {
                    self.close(old, Close::Replaced(id), false, now, out);
                }
            }
            Err(e) => {
                match e {
                    HelloError::IdTaken { .. } => self.counters.hello_id_taken += 1,
                    HelloError::TableFull { .. } => self.counters.hello_table_full += 1,
                    HelloError::ZeroId => self.counters.bad_lines += 1,
                }
                if self.warn_limiter.allow("hello refused", now) {
                    warn!(%peer, id = entry.id, mac = %entry.mac, "registration refused: {e:?}");
                }
                self.refuse(id, &RegistryLine::err(e), false, now, out);
            }
        }
    }

    fn on_watch(&mut self, id: ConnId, version: u64, now: Instant, out: &mut impl Outbox) {
        self.mark_known(id);
        let current = self.membership.version();
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        if session.watch.is_some() {
            // One at a time keeps the deadline heap bounded per connection.
            self.counters.bad_lines += 1;
            let err = RegistryLine::err("watch already pending");
            return self.refuse(id, &err, false, now, out);
        }
        if version != current {
            return self.send_list(id, now, out);
        }
        let deadline = now + self.config.watch_timeout;
        session.watch = Some(PendingWatch { version, deadline });
        self.deadlines.push(Reverse((deadline, id)));
    }

    fn mark_known(&mut self, id: ConnId) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        if !session.known {
            session.known = true;
            self.gate.prove(id);
            self.arm_idle(id);
        }
    }

    /// Queues `id`'s next idle deadline: one idle timeout after its last
    /// valid line.
    fn arm_idle(&mut self, id: ConnId) {
        if let Some(session) = self.sessions.get_mut(&id) {
            let at = session.last_line + self.config.idle_timeout;
            session.idle_check = Some(at);
            self.deadlines.push(Reverse((at, id)));
        }
    }

    /// Answers `ERR`; closes the connection if it never sent a valid line
    /// (or `always_close`).
    fn refuse(
        &mut self,
        id: ConnId,
        err: &RegistryLine,
        always_close: bool,
        now: Instant,
        out: &mut impl Outbox,
    ) {
        let Some(session) = self.sessions.get(&id) else {
            return;
        };
        debug!(conn = id, peer = %session.peer, "{err}");
        if always_close || !session.known {
            // The error goes out with the last words, whatever the bound.
            let _ = out.send(id, format!("{err}\n").as_bytes());
            self.close(id, Close::Refused, true, now, out);
        } else {
            self.send_line(id, err, now, out);
        }
    }

    fn send_line(&mut self, id: ConnId, line: &RegistryLine, now: Instant, out: &mut impl Outbox) {
        self.send(id, format!("{line}\n").as_bytes(), now, out);
    }

    /// Sends to a connection still open; one whose peer does not read is
    /// closed.
    fn send(&mut self, id: ConnId, bytes: &[u8], now: Instant, out: &mut impl Outbox) {
        if !self.sessions.contains_key(&id) {
            return;
        }
        if let Err(full) = out.send(id, bytes) {
            self.overflow(id, full, now, out);
        }
    }

    fn send_list(&mut self, id: ConnId, now: Instant, out: &mut impl Outbox) {
        if !self.sessions.contains_key(&id) {
            return;
        }
        let version = self.membership.version();
        let block = match &self.list_cache {
            Some((v, bytes)) if *v == version => bytes,
            _ => {
                let entries = self.membership.list();
                let mut bytes = Vec::with_capacity(64 + 48 * entries.len());
                let header = RegistryLine::Servers {
                    version,
                    count: entries.len(),
                };
                let _ = header.write(&mut bytes);
                for entry in entries {
                    let _ = RegistryLine::Entry(entry).write(&mut bytes);
                }
                let _ = RegistryLine::End.write(&mut bytes);
                &self.list_cache.insert((version, bytes)).1
            }
        };
        self.counters.lists_sent += 1;
        if let Err(full) = out.send(id, block) {
            self.overflow(id, full, now, out);
        }
    }

    /// Every gauge and counter with its `STATS` name, in `STATS` order
    /// (the admin endpoint's `/metrics` reports the same numbers).
    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        let gauges = [
            (metrics::CONNECTIONS_OPEN, self.sessions.len() as u64),
            (metrics::SERVERS, self.membership.len() as u64),
            (metrics::VERSION, self.membership.version()),
        ];
        gauges.into_iter().chain(self.counters.named()).collect()
    }

    fn send_stats(&mut self, id: ConnId, now: Instant, out: &mut impl Outbox) {
        let mut bytes = Vec::new();
        for (name, value) in self.stats() {
            let _ = RegistryLine::Stat {
                name: name.to_string(),
                value,
            }
            .write(&mut bytes);
        }
        let _ = RegistryLine::End.write(&mut bytes);
        self.send(id, &bytes, now, out);
    }

    /// Answers every parked `WATCH` once the version has moved.
    fn announce(&mut self, now: Instant, out: &mut impl Outbox) {
        let version = self.membership.version();
        if version == self.announced {
            return;
        }
        self.announced = version;
        let watchers: Vec<ConnId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.watch.is_some_and(|w| w.version != version))
            .map(|(&id, _)| id)
            .collect();
        for id in watchers {
            self.answer_watch(id, now, out);
        }
    }

    /// Answers the connection's pending `WATCH` with the current list.
    fn answer_watch(&mut self, id: ConnId, now: Instant, out: &mut impl Outbox) {
        if let Some(session) = self.sessions.get_mut(&id) {
            session.watch = None;
        }
        self.send_list(id, now, out);
    }

    /// Ends `id`'s session and has the reactor close it.
    fn close(&mut self, id: ConnId, why: Close, finish: bool, now: Instant, out: &mut impl Outbox) {
        if self.forget(id, why, now) {
            out.close(id, finish);
        }
    }

    /// Drops `id`'s session and registration; false if it had none.
    fn forget(&mut self, id: ConnId, why: Close, now: Instant) -> bool {
        let Some(session) = self.sessions.remove(&id) else {
            return false;
        };
        self.gate.remove(id);
        let peer = session.peer;
        let removed = self.membership.closed(id);
        match (&why, removed) {
            (_, Some(entry)) => info!(
                conn = id, %peer, id = entry.id, mac = %entry.mac,
                version = self.membership.version(), "server removed: {why}"
            ),
            (Close::Replaced(by), None) => {
                info!(conn = id, %peer, by, "old connection of a re-registered server closed")
            }
            (Close::FirstLineTimeout, None) => {
                if self.warn_limiter.allow(metrics::FIRST_LINE_TIMEOUTS, now) {
                    warn!(conn = id, %peer, "no valid line in time, closing");
                }
            }
            (_, None) => debug!(conn = id, %peer, "connection closed: {why}"),
        }
        true
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
