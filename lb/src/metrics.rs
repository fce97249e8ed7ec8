//! Every metric the load balancer exports: the names (constants, in this one
//! module), the counters the workers bump, and the Prometheus text rendering
//! and one-line summary built from them.
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

use crate::snapshot::ServerSnapshot;

/// Metric names, all in one place.
pub mod names {
    pub const REQUESTS: &str = "ipcs_lb_requests_total";
    pub const REPLIES: &str = "ipcs_lb_replies_total";
    pub const LATE_REPLIES: &str = "ipcs_lb_late_replies_total";
    pub const REPLIES_COALESCED: &str = "ipcs_lb_replies_coalesced_total";
    pub const REQUESTS_COALESCED: &str = "ipcs_lb_requests_coalesced_total";
    pub const RETRIES: &str = "ipcs_lb_retries_total";
    pub const ATTEMPT_TIMEOUTS: &str = "ipcs_lb_attempt_timeouts_total";
    pub const FAILOVERS: &str = "ipcs_lb_failovers_total";
    pub const RETRIES_OVER_BUDGET: &str = "ipcs_lb_retries_over_budget_total";
    pub const ANSWERS_AFTER_REPLY: &str = "ipcs_lb_answers_after_reply_total";
    pub const LOCAL_LOSSES: &str = "ipcs_lb_local_losses_total";
    pub const ERRORS: &str = "ipcs_lb_errors_total";
    pub const ERRORS_SUPPRESSED: &str = "ipcs_lb_errors_suppressed_total";
    pub const DROPS: &str = "ipcs_lb_drops_total";
    pub const IN_FLIGHT: &str = "ipcs_lb_in_flight";
    pub const SERVERS: &str = "ipcs_lb_servers";
    pub const SERVER_REQUESTS: &str = "ipcs_lb_server_requests_total";
    pub const SERVER_REPLIES: &str = "ipcs_lb_server_replies_total";
    pub const SERVER_FAILURES: &str = "ipcs_lb_server_failures_total";
    pub const SERVER_EJECTIONS: &str = "ipcs_lb_server_ejections_total";
    pub const SERVER_EJECTED: &str = "ipcs_lb_server_ejected";
    pub const SERVER_TIMEOUT: &str = "ipcs_lb_server_timeout_seconds";
    pub const SERVER_SRTT: &str = "ipcs_lb_server_srtt_seconds";
    pub const SERVER_IN_FLIGHT: &str = "ipcs_lb_server_in_flight";
    pub const EJECTIONS: &str = "ipcs_lb_ejections_total";
    pub const REGISTRY_VERSION: &str = "ipcs_lb_registry_version";
    pub const REGISTRY_REACHABLE: &str = "ipcs_lb_registry_reachable";
    pub const REGISTRY_CONNECTS: &str = "ipcs_lb_registry_connects_total";
    pub const REGISTRY_LISTS: &str = "ipcs_lb_registry_lists_total";
    pub const LATENCY: &str = "ipcs_lb_latency_seconds";
}

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
    pub const ALL: [DropReason; 11] = [
        DropReason::BadFrame,
        DropReason::NotForUs,
        DropReason::NotAReply,
        DropReason::ForeignTag,
        DropReason::UnknownTag,
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
    /// Drops, by [`DropReason`].
    pub drops: [AtomicU64; DropReason::ALL.len()],
    /// Servers taken out of rotation.
    pub ejections: AtomicU64,
    /// Requests in flight now (a gauge).
    pub in_flight: AtomicU64,
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
            requests_coalesced: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            attempt_timeouts: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            retries_over_budget: AtomicU64::new(0),
            answers_after_reply: AtomicU64::new(0),
            local_losses: AtomicU64::new(0),
            errors: Default::default(),
            errors_suppressed: AtomicU64::new(0),
            drops: Default::default(),
            ejections: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
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
    pub requests_coalesced: u64,
    pub retries: u64,
    pub attempt_timeouts: u64,
    pub failovers: u64,
    pub retries_over_budget: u64,
    pub answers_after_reply: u64,
    pub local_losses: u64,
    pub errors: [u64; 5],
    pub errors_suppressed: u64,
    pub drops: [u64; DropReason::ALL.len()],
    pub ejections: u64,
    pub in_flight: u64,
}

impl Totals {
    pub fn sum(workers: &[Arc<WorkerStats>]) -> Totals {
        let mut t = Totals::default();
        for w in workers {
            t.requests += w.requests.load(Relaxed);
            t.replies += w.replies.load(Relaxed);
            t.late_replies += w.late_replies.load(Relaxed);
            t.replies_coalesced += w.replies_coalesced.load(Relaxed);
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
            for (sum, c) in t.drops.iter_mut().zip(&w.drops) {
                *sum += c.load(Relaxed);
            }
            t.ejections += w.ejections.load(Relaxed);
            t.in_flight += w.in_flight.load(Relaxed);
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

/// Everything the renderer reads.
pub struct MetricsView<'a> {
    pub workers: &'a [Arc<WorkerStats>],
    pub registry: &'a RegistryStatus,
    pub snapshot: &'a ServerSnapshot,
}

/// Upper bounds of the latency histogram buckets, in microseconds.
const LATENCY_BUCKETS_US: [u64; 14] = [
    50, 100, 200, 300, 500, 750, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 1_000_000,
];

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Renders every metric in the Prometheus text exposition format (0.0.4).
pub fn render(view: &MetricsView<'_>) -> String {
    use names::*;
    let t = Totals::sum(view.workers);
    let mut out = String::with_capacity(8192);
    single(
        &mut out,
        REQUESTS,
        "counter",
        "Datagrams received from clients.",
        t.requests,
    );
    single(
        &mut out,
        REPLIES,
        "counter",
        "Results sent to clients.",
        t.replies,
    );
    single(
        &mut out,
        LATE_REPLIES,
        "counter",
        "Results taken from a server an earlier attempt went to.",
        t.late_replies,
    );
    single(
        &mut out,
        REPLIES_COALESCED,
        "counter",
        "Results sent in one UDP GSO send with an earlier result to the same client.",
        t.replies_coalesced,
    );
    single(
        &mut out,
        REQUESTS_COALESCED,
        "counter",
        "Attempts sent as a further record in a frame to the same server.",
        t.requests_coalesced,
    );
    single(
        &mut out,
        RETRIES,
        "counter",
        "Attempts sent again to another server.",
        t.retries,
    );
    single(
        &mut out,
        ATTEMPT_TIMEOUTS,
        "counter",
        "Attempts not answered within their server's deadline.",
        t.attempt_timeouts,
    );
    single(
        &mut out,
        FAILOVERS,
        "counter",
        "Retries away from a server silent while others answered (or from a send the LB lost); outside the retry budget.",
        t.failovers,
    );
    single(
        &mut out,
        RETRIES_OVER_BUDGET,
        "counter",
        "Retries the retry budget refused; the request waited for the answers already asked for.",
        t.retries_over_budget,
    );
    single(
        &mut out,
        ANSWERS_AFTER_REPLY,
        "counter",
        "Answers from an earlier attempt's server after the client had its result.",
        t.answers_after_reply,
    );
    single(
        &mut out,
        LOCAL_LOSSES,
        "counter",
        "Send batches the LB may have lost itself (queue full, send refused); held against no server.",
        t.local_losses,
    );
    header(
        &mut out,
        ERRORS,
        "counter",
        "Error replies decided, by status code.",
    );
    for (i, status) in Status::ALL.iter().enumerate() {
        let _ = writeln!(
            out,
            "{ERRORS}{{code=\"{}\",status=\"{}\"}} {}",
            status.to_u8(),
            status.name(),
            t.errors[i]
        );
    }
    single(
        &mut out,
        ERRORS_SUPPRESSED,
        "counter",
        "Error replies not sent because of the error rate limit.",
        t.errors_suppressed,
    );
    header(
        &mut out,
        DROPS,
        "counter",
        "Datagrams and frames dropped, by reason.",
    );
    for (i, reason) in DropReason::ALL.iter().enumerate() {
        let _ = writeln!(
            out,
            "{DROPS}{{reason=\"{}\"}} {}",
            reason.name(),
            t.drops[i]
        );
    }
    single(
        &mut out,
        EJECTIONS,
        "counter",
        "Servers taken out of rotation for failing.",
        t.ejections,
    );
    single(
        &mut out,
        IN_FLIGHT,
        "gauge",
        "Requests waiting for a server.",
        t.in_flight,
    );
    single(
        &mut out,
        SERVERS,
        "gauge",
        "Live servers in the current list.",
        view.snapshot.len() as u64,
    );
    render_servers(&mut out, view);
    let reg = view.registry;
    single(
        &mut out,
        REGISTRY_VERSION,
        "gauge",
        "Version of the server list in use.",
        reg.version.load(Relaxed),
    );
    single(
        &mut out,
        REGISTRY_REACHABLE,
        "gauge",
        "1 while connected to the registry.",
        u64::from(reg.reachable.load(Relaxed)),
    );
    single(
        &mut out,
        REGISTRY_CONNECTS,
        "counter",
        "Connections made to the registry.",
        reg.connects.load(Relaxed),
    );
    single(
        &mut out,
        REGISTRY_LISTS,
        "counter",
        "Server lists received.",
        reg.lists.load(Relaxed),
    );
    render_latency(&mut out, view.workers);
    out
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
}

fn as_string<S: serde::Serializer>(mac: &MacAddr, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(mac)
}

impl ServerRow {
    /// Health in a word: `live` or `ejected`.
    pub fn state(&self) -> &'static str {
        if self.ejected {
            "ejected"
        } else {
            "live"
        }
    }
}

/// A row for each server listed now, from every worker's counters.
pub fn server_rows(workers: &[Arc<WorkerStats>], snapshot: &ServerSnapshot) -> Vec<ServerRow> {
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
            };
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

fn render_servers(out: &mut String, view: &MetricsView<'_>) {
    use names::*;
    let rows = server_rows(view.workers, view.snapshot);
    let per_server: Vec<(u8, MacAddr, [u64; 8])> = rows
        .iter()
        .map(|r| {
            let v = [
                r.requests,
                r.replies,
                r.failures,
                r.ejections,
                u64::from(r.ejected),
                r.timeout_us,
                r.srtt_us,
                r.in_flight,
            ];
            (r.id, r.mac, v)
        })
        .collect();
    // (name, kind, help, microseconds rendered as seconds)
    let families = [
        (SERVER_REQUESTS, "counter", "Attempts sent to each server.", false),
        (SERVER_REPLIES, "counter", "Results each server gave clients.", false),
        (
            SERVER_FAILURES,
            "counter",
            "Failures held against each server (error answers, and the timeout that found it dead).",
            false,
        ),
        (
            SERVER_EJECTIONS,
            "counter",
            "Times each server was taken out of rotation.",
            false,
        ),
        (
            SERVER_EJECTED,
            "gauge",
            "Whether each server is out of rotation now (any worker).",
            false,
        ),
        (
            SERVER_TIMEOUT,
            "gauge",
            "Each server's current adaptive attempt deadline.",
            true,
        ),
        (
            SERVER_SRTT,
            "gauge",
            "Each server's smoothed round-trip time (0 before any sample).",
            true,
        ),
        (
            SERVER_IN_FLIGHT,
            "gauge",
            "Attempts sent to each server and not yet answered or given up.",
            false,
        ),
    ];
    for (k, (name, kind, help, seconds)) in families.iter().enumerate() {
        header(out, name, kind, help);
        for (id, mac, v) in &per_server {
            if *seconds {
                let secs = v[k] as f64 / 1e6;
                let _ = writeln!(out, "{name}{{id=\"{id}\",mac=\"{mac}\"}} {secs}");
            } else {
                let _ = writeln!(out, "{name}{{id=\"{id}\",mac=\"{mac}\"}} {}", v[k]);
            }
        }
    }
}

fn render_latency(out: &mut String, workers: &[Arc<WorkerStats>]) {
    let mut merged = latency_histogram();
    for w in workers {
        // Same bounds everywhere, so adding cannot fail.
        let _ = merged.add(&**w.latency.load());
    }
    let name = names::LATENCY;
    header(
        out,
        name,
        "histogram",
        "Time from a request's arrival to its result being sent (published about once a second).",
    );
    for bound in LATENCY_BUCKETS_US {
        let count = merged.count_between(0, bound);
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{}\"}} {count}",
            bound as f64 / 1e6
        );
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", merged.len());
    let sum_secs = merged.mean() * merged.len() as f64 / 1e6;
    let _ = writeln!(out, "{name}_sum {sum_secs}");
    let _ = writeln!(out, "{name}_count {}", merged.len());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    use crate::snapshot::Backend;

    #[test]
    fn render_sums_workers_and_names_every_family() {
        let a = Arc::new(WorkerStats::default());
        let b = Arc::new(WorkerStats::default());
        bump(&a.requests);
        add(&b.requests, 4);
        bump(a.error(Status::UnknownOp));
        b.count_drop(DropReason::Stale);
        let mac = MacAddr([2, 0, 0, 0, 0, 11]);
        for (w, n) in [(&a, 3), (&b, 5)] {
            let counters = Arc::new(ServerCounters::default());
            add(&counters.requests, n);
            w.servers.store(Arc::new(vec![ServerStatsEntry {
                id: 1,
                mac,
                counters,
            }]));
        }
        let mut hist = latency_histogram();
        hist.record(80).unwrap();
        hist.record(400).unwrap();
        hist.record(3_000).unwrap();
        a.latency.store(Arc::new(hist));
        let registry = RegistryStatus::default();
        registry.version.store(42, Relaxed);
        registry.reachable.store(true, Relaxed);
        let snapshot = ServerSnapshot::new(
            42,
            vec![Backend {
                id: 1,
                mac,
                ip: Ipv4Addr::new(172, 16, 238, 11),
                udp: None,
            }],
        );
        let text = render(&MetricsView {
            workers: &[a, b],
            registry: &registry,
            snapshot: &snapshot,
        });
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(has("ipcs_lb_requests_total 5"), "{text}");
        assert!(has(
            r#"ipcs_lb_errors_total{code="2",status="unknown_op"} 1"#
        ));
        assert!(has(r#"ipcs_lb_drops_total{reason="stale"} 1"#));
        assert!(has(
            r#"ipcs_lb_server_requests_total{id="1",mac="02:00:00:00:00:0b"} 8"#
        ));
        assert!(has("ipcs_lb_registry_version 42"));
        assert!(has("ipcs_lb_registry_reachable 1"));
        assert!(has("ipcs_lb_servers 1"));
        assert!(has(r#"ipcs_lb_latency_seconds_bucket{le="0.0001"} 1"#));
        assert!(has(r#"ipcs_lb_latency_seconds_bucket{le="0.0005"} 2"#));
        assert!(has(r#"ipcs_lb_latency_seconds_bucket{le="+Inf"} 3"#));
        assert!(has("ipcs_lb_latency_seconds_count 3"));
        // Every sample line belongs to a family with HELP and TYPE.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "no TYPE for {name}"
            );
        }
    }

    #[test]
    fn summary_line_reports_rates_and_codes() {
        let before = Totals::default();
        let now = Totals {
            requests: 2_000,
            replies: 1_990,
            retries: 4,
            errors: [1, 0, 0, 2, 0],
            ..Totals::default()
        };
        let line = now.summary_line(&before, 2.0, &ServerSnapshot::new(3, vec![]));
        assert!(
            line.starts_with("1000 req/s, 995 replies/s, 4 retries"),
            "{line}"
        );
        assert!(line.contains("1=1 2=0 3=0 4=2 5=0"), "{line}");
        assert!(
            line.contains("0 live servers (registry version 3)"),
            "{line}"
        );
    }
}
