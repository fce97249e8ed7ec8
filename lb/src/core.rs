//! The load balancer's decisions, as a state machine without I/O: it is fed
//! client datagrams ([`Core::on_request`]), backend frames
//! ([`Core::on_frame_records`]) and the passage of time ([`Core::on_tick`]), each with
//! `now`, and answers with [`Action`]s for the reactor to carry out. It owns
//! the table of requests in flight, the rotation, the passive health of each
//! server and the error-reply rate limit; it reads the server list from the
//! shared snapshot and the operator's overrides ([`crate::operator`]).
//!
//! Failure handling (docs/LB.md, "Failure handling"): each attempt gets
//! its server's adaptive deadline ([`crate::rtt`]). When it passes, the
//! request is sent to another server if the retry budget
//! ([`crate::budget`]) allows, but the earlier attempts stay valid: the
//! first answer from any server the request went to answers the client.
//! Otherwise the request waits for the answers already asked for until its
//! request deadline, where the client gets status 4. After the client has
//! its answer the request lingers until the other servers it went to have
//! answered too (or the request deadline passes), so their late answers
//! are recognised as genuine: they prove those servers alive and give the
//! round-trip samples that move their deadlines. Ejection follows
//! [`crate::outlier`]; attempts the load balancer itself may have lost
//! (a full queue, a refused send: [`Core::on_local_loss`]) are held
//! against nobody. A reply from a MAC the request was never sent to is
//! never accepted, nor one whose tag's keyed check is not the one issued
//! (crate::tag): a forged answer, reply or error, changes nothing, so only a
//! server that saw the request can answer it or count against itself.
//! Each client source prefix gets at most a share of the table and of the
//! error replies (crate::fairness).

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::Guard;
use hdrhistogram::Histogram;
use ipcs_common::wire::records::{records, Record};
use ipcs_common::wire::{FrameBody, FrameRepr, MacAddr, Reply, Request, Status};

use crate::budget::RetryBudget;
pub use crate::core_config::{ConfigError, CoreConfig};
use crate::fairness::{Bucket, SourceTable};
use crate::metrics::{bump, latency_histogram, DropReason, ServerStatsEntry, WorkerStats};
use crate::operator::{shared_none, Overrides, SharedOverrides};
use crate::outlier::TimeoutVerdict;
use crate::pending::{Handle, PendingTable, TagMiss, LANES, MAX_ATTEMPTS};
use crate::pick::{pick_p2c, HealthTable, Policy, RoundRobin};
use crate::ratelimit::TokenBucket;
use crate::rtt::TimeoutPolicy;
use crate::snapshot::{ServerSnapshot, SharedSnapshot};

/// The deadline lane of requests waiting for their request deadline (and
/// of answered requests lingering); the others hold attempt deadlines.
const REQUEST_LANE: usize = LANES - 1;
/// Send-time ranges of attempts the load balancer may have lost itself.
const LOCAL_LOSSES: usize = 8;

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
        tag: u64,
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
    shared_overrides: SharedOverrides,
    overrides: Arc<Overrides>,
    stats: Arc<WorkerStats>,
    latency: Histogram<u64>,
    error_bucket: TokenBucket,
    sources: SourceTable,
    budget: RetryBudget,
    rng: fastrand::Rng,
    /// The attempt deadline of each lane but the last: geometric steps
    /// from the shortest to the longest timeout.
    lanes: [Duration; LANES - 1],
    /// Ranges of send instants whose attempts may not have left the LB.
    local_losses: [Option<(Instant, Instant)>; LOCAL_LOSSES],
    next_loss: usize,
    next_outlier_check: Instant,
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
            table: PendingTable::new(config.capacity, config.worker, config.secret.tag_key(), now),
            error_bucket: TokenBucket::new(config.error_rate, config.error_burst, now),
            sources: SourceTable::new(
                &config.secret.source_key(),
                config.capacity,
                config.source_share,
                config.error_rate,
                config.error_burst,
                now,
            ),
            budget: RetryBudget::new(config.budget, now),
            rng: fastrand::Rng::with_seed(config.seed),
            lanes: lane_durations(&config.timeout),
            local_losses: [None; LOCAL_LOSSES],
            next_loss: 0,
            next_outlier_check: now + config.ejection.interval,
            config,
            lb_mac,
            rotation: RoundRobin::new(),
            health: HealthTable::new(),
            shared,
            snapshot,
            shared_overrides: shared_none(),
            overrides: Arc::new(Overrides::default()),
            stats,
            latency: latency_histogram(),
        };
        core.refresh(now);
        Ok(core)
    }

    /// Reads the operator's overrides from `shared` from now on.
    pub fn follow_overrides(&mut self, shared: SharedOverrides, now: Instant) {
        self.shared_overrides = shared;
        self.refresh(now);
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

    /// Requests in flight whose client has no answer yet (a stopping LB
    /// waits for these, not for answers owed after the client's).
    pub fn awaiting_clients(&self) -> usize {
        self.table.unanswered_clients()
    }

    /// Latencies recorded so far, in microseconds.
    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency
    }

    /// When [`on_tick`](Self::on_tick) next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.table.next_deadline()
    }

    /// The forwards decided at send instants `from..=to` may not have left
    /// the load balancer (its send queue was full, or the kernel refused
    /// them): their timeouts are the LB's own loss and count against no
    /// server.
    pub fn on_local_loss(&mut self, from: Instant, to: Instant) {
        self.local_losses[self.next_loss] = Some((from, to));
        self.next_loss = (self.next_loss + 1) % LOCAL_LOSSES;
        bump(&self.stats.local_losses);
    }

    fn lost_locally(&self, sent: Instant) -> bool {
        self.local_losses
            .iter()
            .flatten()
            .any(|(from, to)| (*from..=*to).contains(&sent))
    }

    /// Copies the latency histogram and each server's health where the
    /// metrics renderer reads them.
    pub fn publish(&self, now: Instant) {
        self.stats.latency.store(Arc::new(self.latency.clone()));
        for s in self.health.iter() {
            let c = &s.counters;
            c.ejected
                .store(u64::from(s.health.is_ejected(now)), Relaxed);
            let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
            c.timeout_us
                .store(micros(s.rtt.timeout(&self.config.timeout)), Relaxed);
            c.srtt_us.store(s.rtt.srtt().map_or(0, micros), Relaxed);
            c.in_flight.store(u64::from(s.in_flight), Relaxed);
        }
    }

    /// A datagram from a client.
    pub fn on_request(&mut self, client: SocketAddr, bytes: &[u8], now: Instant) -> Action {
        bump(&self.stats.requests);
        // Any answer to an empty datagram would be longer than it, and the
        // LB must never amplify (its source address may be forged).
        if bytes.is_empty() {
            return self.dropped(DropReason::Empty);
        }
        // Nothing can be sent to port 0 (the kernel refuses it, which used
        // to fail a whole batch of replies): such a source is forged.
        if client.port() == 0 {
            return self.dropped(DropReason::BadSource);
        }
        let request = match Request::parse_bytes(bytes) {
            Ok(request) => request,
            Err(err) => return self.error(client, err.status(), now),
        };
        self.refresh(now);
        if self.snapshot.is_empty() {
            return self.error(client, Status::NoServer, now);
        }
        if self.table.is_full() {
            return self.error(client, Status::Overloaded, now);
        }
        let picked = match self.config.policy {
            Policy::RoundRobin => self
                .rotation
                .pick(&self.snapshot.servers, &self.health, now),
            Policy::P2c => pick_p2c(&self.snapshot.servers, &self.health, &mut self.rng, now),
        };
        let Some(server) = picked.map(|b| b.mac) else {
            return self.error(client, Status::NoServer, now);
        };
        let source = self.sources.bucket(client.ip());
        if !self.sources.try_acquire(source) {
            bump(&self.stats.source_share_refusals);
            return self.error_from(source, client, Status::Overloaded, now);
        }
        match self.table.insert(client, request, source, now) {
            Some(handle) => {
                self.budget.on_request(now);
                self.send_attempt(handle, server, now)
            }
            None => {
                self.sources.release(source);
                self.error_from(source, client, Status::Overloaded, now)
            }
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
            Err(TagMiss::Forged) => return self.dropped(DropReason::BadTag),
        };
        let entry = *self.table.get(handle);
        let Some(attempt) = entry.attempt_to(frame.src) else {
            return self.dropped(DropReason::WrongServer);
        };
        if entry.is_answered(attempt) {
            return self.dropped(DropReason::Stale);
        }
        *answered_by = Some(frame.src);
        self.table.mark_answered(handle, attempt);
        let is_error = matches!(frame.body, FrameBody::Error(_));
        self.on_server_answer(&entry, attempt, frame.src, is_error, now);
        if entry.client_answered {
            // A lingering request: this answer was owed, and has done its
            // work above (the server is alive, its round trip is known).
            bump(&self.stats.answers_after_reply);
            self.release_if_settled(handle);
            return Action::None;
        }
        match frame.body {
            FrameBody::Reply(reply) => {
                bump(&self.stats.replies);
                if entry.current_server() != Some(frame.src) {
                    bump(&self.stats.late_replies);
                }
                if let Some(server) = self.health.get(frame.src) {
                    bump(&server.counters.replies);
                }
                let micros = now.saturating_duration_since(entry.started).as_micros();
                self.latency
                    .saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
                self.table.mark_client_answered(handle);
                if !self.release_if_settled(handle) {
                    self.table
                        .rearm(handle, self.request_deadline(&entry), REQUEST_LANE);
                }
                Action::Reply {
                    client: entry.client,
                    reply,
                }
            }
            // The server refused the attempt. If another attempt is still
            // owed an answer, wait for it; else try elsewhere at once.
            FrameBody::Error(_) => {
                if let Some(server) = self.health.get(frame.src) {
                    bump(&server.counters.failures);
                }
                if self.table.get(handle).unanswered().next().is_some() {
                    Action::None
                } else {
                    self.retry_or_wait(handle, now, false)
                }
            }
            FrameBody::Request(_) => self.dropped(DropReason::NotAReply),
        }
    }

    /// What an answer from `server` to attempt `attempt` of `entry` says:
    /// the server is alive, and (when the request went to it once, so the
    /// answer names one send) how long its round trip is.
    fn on_server_answer(
        &mut self,
        entry: &crate::pending::Pending,
        attempt: usize,
        server: MacAddr,
        is_error: bool,
        now: Instant,
    ) {
        let Some(state) = self.health.get_mut(server) else {
            return;
        };
        state.in_flight = state.in_flight.saturating_sub(1);
        state.health.on_answer(now, is_error);
        if entry.attempts_to(server) == 1 {
            let rtt = now.saturating_duration_since(entry.sent_at(attempt));
            state.rtt.sample(rtt, now, &self.config.timeout);
            // Only p2c reads it; round-robin need not pay for the exp().
            if self.config.policy == Policy::P2c {
                state.ewma.sample(rtt, now);
            }
        }
    }

    /// Frees an answered request once no attempt is owed an answer.
    fn release_if_settled(&mut self, handle: Handle) -> bool {
        let entry = self.table.get(handle);
        if entry.client_answered && entry.unanswered().next().is_none() {
            self.finish(handle);
            true
        } else {
            false
        }
    }

    /// Handles every request whose deadline has passed: an attempt that
    /// timed out is sent elsewhere if the budget allows (else the request
    /// waits for its request deadline), a request past its request
    /// deadline gets status 4, and a lingering one is released. `out`
    /// receives one action per expiry. Also judges error shares each
    /// interval.
    pub fn on_tick(&mut self, now: Instant, mut out: impl FnMut(Action)) {
        while let Some(handle) = self.table.pop_expired(now) {
            out(self.on_expired(handle, now));
        }
        if now >= self.next_outlier_check {
            self.judge_error_shares(now);
            self.next_outlier_check = now + self.config.ejection.interval;
        }
    }

    fn on_expired(&mut self, handle: Handle, now: Instant) -> Action {
        let entry = *self.table.get(handle);
        if entry.client_answered || now >= self.request_deadline(&entry) {
            // Attempts never answered are given up: they no longer count
            // as in flight to their servers.
            for (_, server) in entry.unanswered() {
                if let Some(state) = self.health.get_mut(server) {
                    state.in_flight = state.in_flight.saturating_sub(1);
                }
            }
            self.finish(handle);
            if entry.client_answered {
                return Action::None;
            }
            return self.error(entry.client, Status::TimedOut, now);
        }
        bump(&self.stats.attempt_timeouts);
        let mut failover = false;
        if let Some(server) = entry.current_server() {
            let attempt = entry.attempts() as usize - 1;
            failover = self.on_attempt_timeout(server, entry.sent_at(attempt), now);
        }
        self.retry_or_wait(handle, now, failover)
    }

    /// The current attempt of `handle` failed or timed out: send it to
    /// another server if attempts and the budget allow, else wait for the
    /// answers already asked for until the request deadline. A `failover`
    /// (away from a server silent while others answer, or from a send the
    /// LB lost itself) is not load amplification and needs no budget.
    fn retry_or_wait(&mut self, handle: Handle, now: Instant, failover: bool) -> Action {
        let entry = *self.table.get(handle);
        self.refresh(now);
        // Attempts sent to servers that have left the list since (stopped,
        // scaled away) do not count against --attempts: a request must not
        // run out of attempts because it met three departing servers.
        let counted = entry
            .sent_to()
            .iter()
            .filter(|mac| self.health.get(**mac).is_some())
            .count() as u32;
        if counted < self.config.attempts && (entry.attempts() as usize) < MAX_ATTEMPTS {
            let next = self
                .rotation
                .pick_retry(&self.snapshot.servers, &self.health, entry.sent_to(), now)
                .map(|b| b.mac);
            if let Some(server) = next {
                if failover || self.budget.try_retry(now) {
                    bump(&self.stats.retries);
                    if failover {
                        bump(&self.stats.failovers);
                    }
                    return self.send_attempt(handle, server, now);
                }
                bump(&self.stats.retries_over_budget);
            }
        }
        if entry.unanswered().next().is_none() {
            // Every server asked has refused: nothing left to wait for.
            self.finish(handle);
            return self.error(entry.client, Status::TimedOut, now);
        }
        self.table
            .rearm(handle, self.request_deadline(&entry), REQUEST_LANE);
        Action::None
    }

    fn request_deadline(&self, entry: &crate::pending::Pending) -> Instant {
        entry.started + self.config.request_timeout
    }

    /// What an attempt to `server` sent at `sent` timing out says about
    /// it. Returns whether its retry is a failover: the LB lost the send
    /// itself, or the server is silent while others answered since.
    fn on_attempt_timeout(&mut self, server: MacAddr, sent: Instant, now: Instant) -> bool {
        self.refresh(now);
        // A server gone from the list does no work: moving its requests
        // adds none, like the LB's own losses.
        if self.lost_locally(sent) || self.health.get(server).is_none() {
            return true;
        }
        let available = self.health.available_count(now);
        let health = &self.health;
        let others = |since| health.others_answered(server, since);
        let Some(state) = self.health.get(server) else {
            return true;
        };
        let mut h = state.health;
        let policy = &self.config.ejection;
        let window = policy.silence_window(
            state.rtt.timeout(&self.config.timeout),
            state.rtt.measured_for(now),
        );
        let verdict = h.on_timeout(sent, now, window, policy, others);
        let failover = matches!(verdict, TimeoutVerdict::Silent | TimeoutVerdict::Dead)
            && self.health.others_answered(server, sent);
        let Some(state) = self.health.get_mut(server) else {
            return false;
        };
        state.health = h;
        match verdict {
            TimeoutVerdict::Slow => {
                state.rtt.back_off(sent, now, &self.config.timeout);
            }
            TimeoutVerdict::Silent | TimeoutVerdict::Ejected => {}
            // Silent while others answered: dead. Never the last server in
            // rotation; past the cap only because it is silent (see
            // crate::outlier).
            TimeoutVerdict::Dead if available > 1 => {
                bump(&state.counters.failures);
                self.eject(server, now, "silent while other servers answered");
            }
            TimeoutVerdict::Dead => {}
        }
        failover
    }

    /// Each interval: a server whose error share is at least the
    /// threshold while the others' is under half of it is an outlier,
    /// ejected within the cap.
    fn judge_error_shares(&mut self, now: Instant) {
        let policy = self.config.ejection;
        let shares: Vec<(MacAddr, Option<u32>)> = self
            .health
            .iter_mut()
            .map(|s| (s.mac, s.health.take_error_share(policy.error_min_volume)))
            .collect();
        for (mac, share) in &shares {
            let Some(share) = *share else { continue };
            if share < policy.error_percent {
                continue;
            }
            let others_worst = shares
                .iter()
                .filter(|(m, _)| m != mac)
                .filter_map(|(_, s)| *s)
                .max()
                .unwrap_or(0);
            let listed = self.health.len();
            let ejected = listed - self.health.available_count(now);
            if others_worst * 2 <= share
                && ejected < policy.max_ejected(listed)
                && listed - ejected > 1
                && self.health.available(*mac, now)
            {
                self.eject(
                    *mac,
                    now,
                    "its answers are mostly errors, unlike the others'",
                );
            }
        }
    }

    fn eject(&mut self, server: MacAddr, now: Instant, why: &str) {
        let Some(state) = self.health.get_mut(server) else {
            return;
        };
        let cooldown = state.health.eject(now, &self.config.ejection);
        bump(&state.counters.ejections);
        bump(&self.stats.ejections);
        tracing::warn!(
            worker = self.config.worker,
            id = state.id,
            mac = %state.mac,
            cooldown_ms = cooldown.as_millis() as u64,
            "server out of rotation for a cool-down: {why}"
        );
    }

    /// The most request records one frame may carry: what `--frame-records`
    /// allows and what fits the link's MTU, whichever is fewer.
    pub fn frame_records(&self) -> u8 {
        self.config.frame_records()
    }

    /// Follows a change of the backend interface's MTU: frames packed from
    /// now on fit the new one.
    pub fn set_link_mtu(&mut self, mtu: usize) {
        self.config.link_mtu = mtu;
    }

    fn send_attempt(&mut self, handle: Handle, server: MacAddr, now: Instant) -> Action {
        let request_deadline = self.request_deadline(self.table.get(handle));
        let mut records = 1;
        let frame_records = self.frame_records();
        let mut timeout = self.config.timeout.initial;
        if let Some(state) = self.health.get_mut(server) {
            bump(&state.counters.requests);
            state.in_flight = state.in_flight.saturating_add(1);
            records = state.max_records.min(frame_records).max(1);
            timeout = state.rtt.timeout(&self.config.timeout);
        }
        // Rounded up to its lane's duration, so each lane stays in order.
        let lane = self.lanes.partition_point(|d| *d < timeout).min(LANES - 2);
        let (deadline, lane) = match now + self.lanes[lane] {
            d if d < request_deadline => (d, lane),
            _ => (request_deadline, REQUEST_LANE),
        };
        self.table.dispatch(handle, server, now, deadline, lane);
        self.stats.in_flight.store(self.table.len() as u64, Relaxed);
        Action::Forward {
            server,
            tag: self.table.tag(handle),
            request: self.table.get(handle).request,
            records,
        }
    }

    fn finish(&mut self, handle: Handle) {
        let entry = self.table.remove(handle);
        self.sources.release(entry.source());
        self.stats.in_flight.store(self.table.len() as u64, Relaxed);
    }

    /// An error reply, within the client prefix's share of the error rate
    /// and the worker's whole error rate.
    fn error(&mut self, client: SocketAddr, status: Status, now: Instant) -> Action {
        let source = self.sources.bucket(client.ip());
        self.error_from(source, client, status, now)
    }

    /// [`error`](Self::error) for a client whose bucket is already known.
    fn error_from(
        &mut self,
        source: Bucket,
        client: SocketAddr,
        status: Status,
        now: Instant,
    ) -> Action {
        bump(self.stats.error(status));
        if self.sources.try_error(source, now) && self.error_bucket.try_take(now) {
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

    /// Picks up a new server list or new operator overrides if either was
    /// published.
    fn refresh(&mut self, now: Instant) {
        let overrides = self.shared_overrides.load();
        let new_overrides = !Arc::ptr_eq(&overrides, &self.overrides);
        if new_overrides {
            self.overrides = Guard::into_inner(overrides);
        }
        let current = self.shared.load();
        let new_list = !Arc::ptr_eq(&current, &self.snapshot);
        if new_list {
            self.snapshot = Guard::into_inner(current);
        }
        let changed = new_list && self.health.sync(&self.snapshot);
        if new_list || new_overrides {
            self.health.apply_overrides(&self.overrides, now);
        }
        if changed {
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

/// Geometric steps from the shortest attempt timeout to the longest (about
/// 9 % apart with the defaults): an attempt's deadline is rounded up to
/// the next step.
fn lane_durations(policy: &TimeoutPolicy) -> [Duration; LANES - 1] {
    let (min, max) = (
        policy.min.as_secs_f64(),
        policy.max.max(policy.min).as_secs_f64(),
    );
    let ratio = (max / min).powf(1.0 / (LANES - 2) as f64);
    let mut lanes = [policy.min; LANES - 1];
    for (i, lane) in lanes.iter_mut().enumerate() {
        *lane = Duration::from_secs_f64(min * ratio.powi(i as i32)).max(policy.min);
    }
    lanes[LANES - 2] = policy.max.max(policy.min);
    lanes
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "core_sim_tests.rs"]
mod sim_tests;

#[cfg(test)]
#[path = "core_operator_tests.rs"]
mod operator_tests;
