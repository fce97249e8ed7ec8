//! The load balancer's counters: what the workers bump, summed for the
//! one-line summary and the per-server view. Their names, types and help
//! texts, and the Prometheus rendering, are in [`crate::exposition`].
//!
//! Each worker owns its [`WorkerStats`] and [`ServerCounters`] and is their
//! only writer, so a counter is bumped with a relaxed load and store (no
//! locked read-modify-write on the hot path); readers (the admin thread) sum
//! over workers. The latency histogram is worker-local and published as a
//! copy about once a second.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hdrhistogram::Histogram;
use ipcs_common::wire::{MacAddr, Status};

use std::time::Instant;

use crate::operator::{Mode, Overrides};
use crate::snapshot::ServerSnapshot;

/// Adds one to a counter that only the calling thread writes.
#[inline]
pub fn bump(counter: &AtomicU64) {
    add(counter, 1);
}

/// Adds `n` to a counter that only the calling thread writes.
#[inline]
pub fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Why a datagram or frame was dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A frame that does not parse as a backend frame.
    BadFrame,
    /// A frame not addressed to the load balancer's MAC.
    NotForUs,
    /// A well-formed frame of a kind the load balancer never receives.
    NotAReply,
    /// A reply whose tag names another worker.
    ForeignTag,
    /// A reply whose tag names a slot this table never had.
    UnknownTag,
    /// A reply whose tag's check bits were never issued for its slot and
    /// generation: made up, not echoed (crate::tag).
    BadTag,
    /// A late or duplicated reply for a slot since freed or reused.
    Stale,
    /// A reply from a MAC this request was never sent to.
    WrongServer,
    /// A send queue was full and the kernel would not take more.
    QueueFull,
    /// The kernel refused to send a frame or datagram.
    SendFailed,
    /// An empty client datagram: even a 1-byte error would be longer.
    Empty,
    /// A client datagram from port 0, which no reply can reach.
    BadSource,
}

impl DropReason {
    pub const ALL: [DropReason; 12] = [
        DropReason::BadFrame,
        DropReason::NotForUs,
        DropReason::NotAReply,
        DropReason::ForeignTag,
        DropReason::UnknownTag,
        DropReason::BadTag,
        DropReason::Stale,
        DropReason::WrongServer,
        DropReason::QueueFull,
        DropReason::SendFailed,
        DropReason::Empty,
        DropReason::BadSource,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            DropReason::BadFrame => "bad_frame",
            DropReason::NotForUs => "not_for_us",
            DropReason::NotAReply => "not_a_reply",
            DropReason::ForeignTag => "foreign_tag",
            DropReason::UnknownTag => "unknown_tag",
            DropReason::BadTag => "bad_tag",
            DropReason::Stale => "stale",
            DropReason::WrongServer => "wrong_server",
            DropReason::QueueFull => "queue_full",
            DropReason::SendFailed => "send_failed",
            DropReason::Empty => "empty",
            DropReason::BadSource => "bad_source",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// One server's counters as kept by one worker.
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// Attempts sent to the server.
    pub requests: AtomicU64,
    /// Replies from the server that answered a client.
    pub replies: AtomicU64,
    /// Attempts that timed out or that the server answered with an error.
    pub failures: AtomicU64,
    /// Times the server was taken out of rotation.
    pub ejections: AtomicU64,
    /// Gauges, published about once a second: out of rotation now (0 or 1),
    /// the current attempt deadline and smoothed round trip (µs), attempts
    /// in flight.
    pub ejected: AtomicU64,
    pub timeout_us: AtomicU64,
    pub srtt_us: AtomicU64,
    pub in_flight: AtomicU64,
}

/// A server as a worker lists it for the metrics renderer.
#[derive(Debug, Clone)]
pub struct ServerStatsEntry {
    pub id: u8,
    pub mac: MacAddr,
    pub counters: Arc<ServerCounters>,
}

/// One worker's counters.
#[derive(Debug)]
pub struct WorkerStats {
    /// Datagrams received from clients (well-formed or not).
    pub requests: AtomicU64,
    /// Results sent to clients.
    pub replies: AtomicU64,
    /// Of those, results from a server an earlier attempt went to.
    pub late_replies: AtomicU64,
    /// Of those, results that rode in one UDP GSO send with an earlier
    /// reply to the same client.
    pub replies_coalesced: AtomicU64,
    /// Client datagrams that arrived in one message (UDP GRO) with an
    /// earlier datagram from the same client.
    pub requests_received_coalesced: AtomicU64,
    /// Attempts that rode in one frame with an earlier attempt to the same
    /// server (as a further record).
    pub requests_coalesced: AtomicU64,
    /// Attempts sent again after a timeout or error.
    pub retries: AtomicU64,
    /// Attempts that timed out.
    pub attempt_timeouts: AtomicU64,
    /// Of the retries, those away from a server silent while others
    /// answered, or from a send the LB lost: outside the retry budget.
    pub failovers: AtomicU64,
    /// Retries the retry budget refused (the request waited instead).
    pub retries_over_budget: AtomicU64,
    /// Answers owed by an earlier attempt that came after the client had
    /// its answer (proof of life and a round-trip sample, nothing more).
    pub answers_after_reply: AtomicU64,
    /// Batches whose forwards may not have left the LB (full queue or
    /// refused send); their timeouts are held against no server.
    pub local_losses: AtomicU64,
    /// Error replies decided, by status code (index = code - 1).
    pub errors: [AtomicU64; 5],
    /// Error replies not sent because of the error rate limit.
    pub errors_suppressed: AtomicU64,
    /// Requests refused (status 5) because their source prefix held its
    /// share of the table of requests in flight (crate::fairness).
    pub source_share_refusals: AtomicU64,
    /// Drops, by [`DropReason`].
    pub drops: [AtomicU64; DropReason::ALL.len()],
    /// Servers taken out of rotation.
    pub ejections: AtomicU64,
    /// Requests in flight now (a gauge).
    pub in_flight: AtomicU64,
    /// Requests in flight when the worker stopped without their answer.
    pub abandoned: AtomicU64,
    /// Set when the worker starts draining after a stop signal.
    pub stopping: AtomicBool,
    /// The servers this worker tracks, republished when membership changes.
    pub servers: ArcSwap<Vec<ServerStatsEntry>>,
    /// Latency from request to reply in microseconds, republished about once
    /// a second.
    pub latency: ArcSwap<Histogram<u64>>,
}

/// A histogram for latencies in microseconds, 1 µs to 60 s, 3 digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            requests: AtomicU64::new(0),
            replies: AtomicU64::new(0),
            late_replies: AtomicU64::new(0),
            replies_coalesced: AtomicU64::new(0),
            requests_received_coalesced: AtomicU64::new(0),
            requests_coalesced: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            attempt_timeouts: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            retries_over_budget: AtomicU64::new(0),
            answers_after_reply: AtomicU64::new(0),
            local_losses: AtomicU64::new(0),
            errors: Default::default(),
            errors_suppressed: AtomicU64::new(0),
            source_share_refusals: AtomicU64::new(0),
            drops: Default::default(),
            ejections: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            servers: ArcSwap::from_pointee(Vec::new()),
            latency: ArcSwap::from_pointee(latency_histogram()),
        }
    }
}

impl WorkerStats {
    pub fn error(&self, status: Status) -> &AtomicU64 {
        &self.errors[usize::from(status.to_u8() - 1)]
    }

    pub fn drop_count(&self, reason: DropReason) -> &AtomicU64 {
        &self.drops[reason.index()]
    }

    pub fn count_drop(&self, reason: DropReason) {
        bump(self.drop_count(reason));
    }
}

/// What the registry link reports.
#[derive(Debug, Default)]
pub struct RegistryStatus {
    pub reachable: AtomicBool,
    /// The version of the last list loaded.
    pub version: AtomicU64,
    /// Successful connections made.
    pub connects: AtomicU64,
    /// Lists received.
    pub lists: AtomicU64,
}

/// Totals over all workers, for the summary line and the renderer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub replies: u64,
    pub late_replies: u64,
    pub replies_coalesced: u64,
    pub requests_received_coalesced: u64,
    pub requests_coalesced: u64,
    pub retries: u64,
    pub attempt_timeouts: u64,
    pub failovers: u64,
    pub retries_over_budget: u64,
    pub answers_after_reply: u64,
    pub local_losses: u64,
    pub errors: [u64; 5],
    pub errors_suppressed: u64,
    pub source_share_refusals: u64,
    pub drops: [u64; DropReason::ALL.len()],
    pub ejections: u64,
    pub in_flight: u64,
    pub abandoned: u64,
    /// Workers stopping.
    pub stopping: u64,
}

impl Totals {
    pub fn sum(workers: &[Arc<WorkerStats>]) -> Totals {
        let mut t = Totals::default();
        for w in workers {
            t.requests += w.requests.load(Relaxed);
            t.replies += w.replies.load(Relaxed);
            t.late_replies += w.late_replies.load(Relaxed);
            t.replies_coalesced += w.replies_coalesced.load(Relaxed);
            t.requests_received_coalesced += w.requests_received_coalesced.load(Relaxed);
            t.requests_coalesced += w.requests_coalesced.load(Relaxed);
            t.retries += w.retries.load(Relaxed);
            t.attempt_timeouts += w.attempt_timeouts.load(Relaxed);
            t.failovers += w.failovers.load(Relaxed);
            t.retries_over_budget += w.retries_over_budget.load(Relaxed);
            t.answers_after_reply += w.answers_after_reply.load(Relaxed);
            t.local_losses += w.local_losses.load(Relaxed);
            for (sum, c) in t.errors.iter_mut().zip(&w.errors) {
                *sum += c.load(Relaxed);
            }
            t.errors_suppressed += w.errors_suppressed.load(Relaxed);
            t.source_share_refusals += w.source_share_refusals.load(Relaxed);
            for (sum, c) in t.drops.iter_mut().zip(&w.drops) {
                *sum += c.load(Relaxed);
            }
            t.ejections += w.ejections.load(Relaxed);
            t.in_flight += w.in_flight.load(Relaxed);
            t.abandoned += w.abandoned.load(Relaxed);
            t.stopping += u64::from(w.stopping.load(Relaxed));
        }
        t
    }

    /// The one-line summary of what happened since `before`, over `secs`.
    pub fn summary_line(&self, before: &Totals, secs: f64, snapshot: &ServerSnapshot) -> String {
        let rate = |now: u64, then: u64| now.wrapping_sub(then) as f64 / secs.max(1e-9);
        let mut line = format!(
            "{:.0} req/s, {:.0} replies/s, {} retries, errors",
            rate(self.requests, before.requests),
            rate(self.replies, before.replies),
            self.retries.wrapping_sub(before.retries),
        );
        for (i, status) in Status::ALL.iter().enumerate() {
            let _ = write!(
                line,
                " {}={}",
                status.to_u8(),
                self.errors[i].wrapping_sub(before.errors[i])
            );
        }
        let drops: u64 = self
            .drops
            .iter()
            .zip(&before.drops)
            .map(|(a, b)| a.wrapping_sub(*b))
            .sum();
        let _ = write!(
            line,
            ", {} dropped, {} in flight, {} live servers (registry version {})",
            drops,
            self.in_flight,
            snapshot.len(),
            snapshot.version
        );
        line
    }
}

/// One listed server's counters summed over workers (gauges: the
/// largest, so a server any worker ejected shows as ejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ServerRow {
    pub id: u8,
    #[serde(serialize_with = "as_string")]
    pub mac: MacAddr,
    pub ip: std::net::Ipv4Addr,
    pub requests: u64,
    pub replies: u64,
    pub failures: u64,
    pub ejections: u64,
    pub ejected: bool,
    pub timeout_us: u64,
    pub srtt_us: u64,
    pub in_flight: u64,
    /// The operator drained it (no new requests).
    pub draining: bool,
    /// The operator ejected it.
    pub ejected_by_operator: bool,
    /// How long an operator's timed ejection has left, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator_eject_left_ms: Option<u64>,
}

fn as_string<S: serde::Serializer>(mac: &MacAddr, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(mac)
}

impl ServerRow {
    /// Health in a word: what the operator set (`draining`,
    /// `ejected-by-operator`), else `ejected` or `live`.
    pub fn state(&self) -> &'static str {
        if self.draining {
            crate::operator::DRAINING
        } else if self.ejected_by_operator {
            crate::operator::EJECTED_BY_OPERATOR
        } else if self.ejected {
            "ejected"
        } else {
            "live"
        }
    }
}

/// A row for each server listed now, from every worker's counters and the
/// operator's overrides as they hold at `now`.
pub fn server_rows(
    workers: &[Arc<WorkerStats>],
    snapshot: &ServerSnapshot,
    overrides: &Overrides,
    now: Instant,
) -> Vec<ServerRow> {
    let lists: Vec<_> = workers.iter().map(|w| w.servers.load_full()).collect();
    snapshot
        .servers
        .iter()
        .map(|b| {
            let mut row = ServerRow {
                id: b.id,
                mac: b.mac,
                ip: b.ip,
                requests: 0,
                replies: 0,
                failures: 0,
                ejections: 0,
                ejected: false,
                timeout_us: 0,
                srtt_us: 0,
                in_flight: 0,
                draining: false,
                ejected_by_operator: false,
                operator_eject_left_ms: None,
            };
            match overrides.mode_of(b.id, b.mac, now) {
                Some(Mode::Drain) => row.draining = true,
                Some(Mode::Eject { until }) => {
                    row.ejected_by_operator = true;
                    row.operator_eject_left_ms = until.map(|u| {
                        u64::try_from(u.saturating_duration_since(now).as_millis())
                            .unwrap_or(u64::MAX)
                    });
                }
                None => {}
            }
            for entry in lists
                .iter()
                .flat_map(|l| l.iter())
                .filter(|e| e.mac == b.mac)
            {
                let c = &entry.counters;
                row.requests += c.requests.load(Relaxed);
                row.replies += c.replies.load(Relaxed);
                row.failures += c.failures.load(Relaxed);
                row.ejections += c.ejections.load(Relaxed);
                row.ejected |= c.ejected.load(Relaxed) != 0;
                row.timeout_us = row.timeout_us.max(c.timeout_us.load(Relaxed));
                row.srtt_us = row.srtt_us.max(c.srtt_us.load(Relaxed));
                row.in_flight += c.in_flight.load(Relaxed);
            }
            row
        })
        .collect()
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
