//! The load balancer's decisions, as a state machine without I/O: it is fed
//! client datagrams ([`Core::on_request`]), backend frames
//! ([`Core::on_frame`]) and the passage of time ([`Core::on_tick`]), each with
//! `now`, and answers with [`Action`]s for the reactor to carry out. It owns
//! the table of requests in flight, the rotation, the passive health of each
//! server and the error-reply rate limit; it reads the server list from the
//! shared snapshot.
//!
//! Late replies: when an attempt timed out and the request was sent again, a
//! reply from a server an earlier attempt went to (same slot, same
//! generation) carries a correct answer too, so it is accepted: the client
//! gets its answer sooner. It does not count as the server having answered
//! in time (its failure count stays), and the reply the current attempt's
//! server sends later is dropped as stale. A reply from a MAC the request was
//! never sent to is never accepted.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::Guard;
use hdrhistogram::Histogram;
use ipcs_common::wire::records::{records, Record, MAX_RECORDS};
use ipcs_common::wire::{FrameBody, FrameRepr, MacAddr, Reply, Request, Status};

use crate::metrics::{bump, latency_histogram, DropReason, ServerStatsEntry, WorkerStats};
use crate::pending::{Handle, PendingTable, TagMiss, MAX_ATTEMPTS, MAX_CAPACITY};
use crate::pick::{EjectionPolicy, HealthTable, RoundRobin};
use crate::ratelimit::TokenBucket;
use crate::snapshot::{ServerSnapshot, SharedSnapshot};

/// What one worker's core is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreConfig {
    /// This worker's index; the low byte of every tag it issues.
    pub worker: u8,
    /// Slots in this worker's table of requests in flight.
    pub capacity: usize,
    /// How long an attempt may take before it is sent again.
    pub timeout: Duration,
    /// Attempts per request, the first one included.
    pub attempts: u32,
    pub ejection: EjectionPolicy,
    /// Error replies per second this worker may send.
    pub error_rate: f64,
    /// Error replies this worker may send at once.
    pub error_burst: f64,
    /// The most request records this worker puts in one frame to a server
    /// that reads that many (1: one request per frame).
    pub max_records: u8,
}

/// Why a configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("capacity must be 1..={MAX_CAPACITY} per worker, got {0}")]
    Capacity(usize),
    #[error("attempts must be 1..={MAX_ATTEMPTS}, got {0}")]
    Attempts(u32),
    #[error("the timeout must be above zero")]
    Timeout,
    #[error("the ejection threshold must be at least 1 failure")]
    EjectAfter,
    #[error("records per frame must be 1..={MAX_RECORDS}, got {0}")]
    MaxRecords(u8),
}

impl CoreConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_CAPACITY).contains(&self.capacity) {
            return Err(ConfigError::Capacity(self.capacity));
        }
        if !(1..=MAX_ATTEMPTS as u32).contains(&self.attempts) {
            return Err(ConfigError::Attempts(self.attempts));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::Timeout);
        }
        if self.ejection.after_failures == 0 {
            return Err(ConfigError::EjectAfter);
        }
        if !(1..=MAX_RECORDS).contains(&self.max_records) {
            return Err(ConfigError::MaxRecords(self.max_records));
        }
        Ok(())
    }
}

/// What the reactor must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing (the input was dropped and counted, or an error reply was
    /// rate-limited).
    None,
    /// Send `request` to the server at `server` in a record tagged `tag`;
    /// the frame may carry up to `records` request records for that server.
    Forward {
        server: MacAddr,
        tag: u32,
        request: Request,
        records: u8,
    },
    /// Send the result to the client.
    Reply { client: SocketAddr, reply: Reply },
    /// Send an error status to the client.
    Error { client: SocketAddr, status: Status },
}

impl Action {
    /// The frame a [`Action::Forward`] sends, from the load balancer's MAC.
    pub fn frame(&self, lb_mac: MacAddr) -> Option<FrameRepr> {
        match *self {
            Action::Forward {
                server,
                tag,
                request,
                ..
            } => Some(FrameRepr {
                dst: server,
                src: lb_mac,
                tag,
                body: FrameBody::Request(request),
            }),
            _ => None,
        }
    }
}

/// One worker's decision state machine.
pub struct Core {
    config: CoreConfig,
    lb_mac: MacAddr,
    table: PendingTable,
    rotation: RoundRobin,
    health: HealthTable,
    shared: SharedSnapshot,
    snapshot: Arc<ServerSnapshot>,
    stats: Arc<WorkerStats>,
    latency: Histogram<u64>,
    error_bucket: TokenBucket,
}

impl Core {
    /// A core sending frames from `lb_mac`, reading the server list from
    /// `shared` and counting into `stats`. Allocates its table now.
    pub fn new(
        config: CoreConfig,
        lb_mac: MacAddr,
        shared: SharedSnapshot,
        stats: Arc<WorkerStats>,
        now: Instant,
    ) -> Result<Core, ConfigError> {
        config.validate()?;
        let snapshot = Arc::new(ServerSnapshot::empty());
        let mut core = Core {
            table: PendingTable::new(config.capacity, config.worker, now),
            error_bucket: TokenBucket::new(config.error_rate, config.error_burst, now),
            config,
            lb_mac,
            rotation: RoundRobin::new(),
            health: HealthTable::new(),
            shared,
            snapshot,
            stats,
            latency: latency_histogram(),
        };
        core.refresh();
        Ok(core)
    }

    /// The MAC frames are sent from and replies must be addressed to.
    pub fn lb_mac(&self) -> MacAddr {
        self.lb_mac
    }

    /// Follows a change of the backend interface's MAC: frames leave from
    /// the new one, and replies to the old one (still in flight, and no
    /// longer delivered to us by the bridge anyway) are not ours.
    pub fn set_lb_mac(&mut self, mac: MacAddr) {
        self.lb_mac = mac;
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// The server list this core used last.
    pub fn snapshot(&self) -> &Arc<ServerSnapshot> {
        &self.snapshot
    }

    pub fn health(&self) -> &HealthTable {
        &self.health
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.table.len()
    }

    /// Latencies recorded so far, in microseconds.
    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency
    }

    /// When [`on_tick`](Self::on_tick) next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.table.next_deadline()
    }

    /// Copies the latency histogram where the metrics renderer reads it.
    pub fn publish_latency(&self) {
        self.stats.latency.store(Arc::new(self.latency.clone()));
    }

    /// A datagram from a client.
    pub fn on_request(&mut self, client: SocketAddr, bytes: &[u8], now: Instant) -> Action {
        bump(&self.stats.requests);
        // Any answer to an empty datagram would be longer than it, and the
        // LB must never amplify (its source address may be forged).
        if bytes.is_empty() {
            return self.dropped(DropReason::Empty);
        }
        let request = match Request::parse_bytes(bytes) {
            Ok(request) => request,
            Err(err) => return self.error(client, err.status(), now),
        };
        self.refresh();
        if self.snapshot.is_empty() {
            return self.error(client, Status::NoServer, now);
        }
        if self.table.is_full() {
            return self.error(client, Status::Overloaded, now);
        }
        let Some(server) = self
            .rotation
            .pick(&self.snapshot.servers, &self.health, now)
            .map(|b| b.mac)
        else {
            return self.error(client, Status::NoServer, now);
        };
        match self.table.insert(client, request, now) {
            Some(handle) => self.send_attempt(handle, server, now),
            None => self.error(client, Status::Overloaded, now),
        }
    }

    /// A frame from the backend interface: each of its records in order
    /// (see [`records`]); `out` gets the action for each reply or error
    /// record. Drops are counted per record that parses (trailing bytes
    /// that are not a whole record are ignored, as in the format).
    ///
    /// The frame's capability record counts only if the same frame carried
    /// a genuine answer: a record whose tag names a request in flight that
    /// was sent to the frame's source. Anyone on the bridge can send a frame
    /// from a server's MAC, and a forged capability would have us send
    /// several requests per frame to a server that reads only the first. An
    /// answering frame without a capability record sets the server back to
    /// one request per frame (a server replaced by an older one at the same
    /// MAC).
    pub fn on_frame_records(&mut self, bytes: &[u8], now: Instant, mut out: impl FnMut(Action)) {
        let mut answered_by = None;
        let mut capability = None;
        for item in records(bytes) {
            match item {
                Ok(Record::Frame(frame)) => {
                    out(self.on_record(frame, now, &mut answered_by));
                }
                Ok(Record::Capability { max_records, .. }) => capability = Some(max_records),
                Err(_) => out(self.dropped(DropReason::BadFrame)),
            }
        }
        if let Some(server) = answered_by {
            if let Some(state) = self.health.get_mut(server) {
                state.max_records = capability.unwrap_or(1).max(1);
            }
        }
    }

    /// The action for a frame of one record (what the unit tests send).
    #[cfg(test)]
    pub(crate) fn on_frame(&mut self, bytes: &[u8], now: Instant) -> Action {
        let mut action = Action::None;
        self.on_frame_records(bytes, now, |a| action = a);
        action
    }

    /// One reply or error record; `answered_by` is set to the record's
    /// source when the record is a genuine answer to a request we sent it.
    fn on_record(
        &mut self,
        frame: FrameRepr,
        now: Instant,
        answered_by: &mut Option<MacAddr>,
    ) -> Action {
        if frame.dst != self.lb_mac {
            return self.dropped(DropReason::NotForUs);
        }
        if let FrameBody::Request(_) = frame.body {
            return self.dropped(DropReason::NotAReply);
        }
        let handle = match self.table.find(frame.tag) {
            Ok(handle) => handle,
            Err(TagMiss::ForeignWorker) => return self.dropped(DropReason::ForeignTag),
            Err(TagMiss::NoSuchSlot) => return self.dropped(DropReason::UnknownTag),
            Err(TagMiss::Stale) => return self.dropped(DropReason::Stale),
        };
        let entry = *self.table.get(handle);
        if !entry.was_sent_to(frame.src) {
            return self.dropped(DropReason::WrongServer);
        }
        *answered_by = Some(frame.src);
        let on_time = entry.current_server() == Some(frame.src);
        match frame.body {
            FrameBody::Reply(reply) => {
                self.table.remove(handle);
                self.stats.in_flight.store(self.table.len() as u64, Relaxed);
                bump(&self.stats.replies);
                if !on_time {
                    bump(&self.stats.late_replies);
                }
                if let Some(server) = self.health.get_mut(frame.src) {
                    bump(&server.counters.replies);
                    if on_time {
                        server.health.record_success();
                    }
                }
                let micros = now.saturating_duration_since(entry.started).as_micros();
                self.latency
                    .saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
                Action::Reply {
                    client: entry.client,
                    reply,
                }
            }
            // The server refused the attempt: no point waiting for the
            // timeout. A refusal of an attempt already superseded changes
            // nothing.
            FrameBody::Error(_) if on_time => self.fail_attempt(handle, now),
            FrameBody::Error(_) => self.dropped(DropReason::Stale),
            FrameBody::Request(_) => self.dropped(DropReason::NotAReply),
        }
    }

    /// Handles every attempt whose deadline has passed: each is sent to
    /// another server, or its client gets an error once the attempts are
    /// spent. `out` receives one action per expired attempt.
    pub fn on_tick(&mut self, now: Instant, mut out: impl FnMut(Action)) {
        while let Some(handle) = self.table.pop_expired(now) {
            bump(&self.stats.attempt_timeouts);
            out(self.fail_attempt(handle, now));
        }
    }

    fn send_attempt(&mut self, handle: Handle, server: MacAddr, now: Instant) -> Action {
        self.table
            .dispatch(handle, server, now + self.config.timeout);
        self.stats.in_flight.store(self.table.len() as u64, Relaxed);
        let mut records = 1;
        if let Some(state) = self.health.get(server) {
            bump(&state.counters.requests);
            records = state.max_records.min(self.config.max_records).max(1);
        }
        Action::Forward {
            server,
            tag: self.table.tag(handle),
            request: self.table.get(handle).request,
            records,
        }
    }

    /// The current attempt of `handle` failed: blame its server, then retry
    /// elsewhere or give up.
    fn fail_attempt(&mut self, handle: Handle, now: Instant) -> Action {
        let entry = *self.table.get(handle);
        if let Some(server) = entry.current_server() {
            self.record_failure(server, now);
        }
        if entry.attempts() < self.config.attempts {
            self.refresh();
            let next = self
                .rotation
                .pick_retry(&self.snapshot.servers, &self.health, entry.sent_to(), now)
                .map(|b| b.mac);
            if let Some(server) = next {
                bump(&self.stats.retries);
                return self.send_attempt(handle, server, now);
            }
            self.finish(handle);
            return self.error(entry.client, Status::NoServer, now);
        }
        self.finish(handle);
        self.error(entry.client, Status::TimedOut, now)
    }

    fn finish(&mut self, handle: Handle) {
        self.table.remove(handle);
        self.stats.in_flight.store(self.table.len() as u64, Relaxed);
    }

    fn record_failure(&mut self, server: MacAddr, now: Instant) {
        let Some(state) = self.health.get_mut(server) else {
            // The server has left the list since; nothing to track.
            return;
        };
        bump(&state.counters.failures);
        if let Some(cooldown) = state.health.record_failure(now, &self.config.ejection) {
            bump(&state.counters.ejections);
            bump(&self.stats.ejections);
            tracing::warn!(
                worker = self.config.worker,
                id = state.id,
                mac = %state.mac,
                cooldown_ms = cooldown.as_millis() as u64,
                "server failed repeatedly; out of rotation for a cool-down"
            );
        }
    }

    fn error(&mut self, client: SocketAddr, status: Status, now: Instant) -> Action {
        bump(self.stats.error(status));
        if self.error_bucket.try_take(now) {
            Action::Error { client, status }
        } else {
            bump(&self.stats.errors_suppressed);
            Action::None
        }
    }

    fn dropped(&self, reason: DropReason) -> Action {
        self.stats.count_drop(reason);
        Action::None
    }

    /// Picks up a new server list if one was published.
    fn refresh(&mut self) {
        let current = self.shared.load();
        if Arc::ptr_eq(&current, &self.snapshot) {
            return;
        }
        self.snapshot = Guard::into_inner(current);
        if self.health.sync(&self.snapshot) {
            let list = self
                .health
                .iter()
                .map(|s| ServerStatsEntry {
                    id: s.id,
                    mac: s.mac,
                    counters: s.counters.clone(),
                })
                .collect();
            self.stats.servers.store(Arc::new(list));
        }
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
