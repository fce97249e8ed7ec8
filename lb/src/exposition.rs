//! The Prometheus text rendering (format 0.0.4) of the load balancer's
//! metrics. One table, [`FAMILIES`], holds each family's name, type and help
//! side by side with where its samples come from, so a metric is named and
//! described in exactly one place; [`render`] only walks the table in order.
//! The counters themselves live in [`crate::metrics`].

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use ipcs_common::wire::{MacAddr, Status};

use crate::metrics::{
    latency_histogram, server_rows, DropReason, RegistryStatus, ServerRow, Totals, WorkerStats,
};
use crate::operator::Overrides;
use crate::snapshot::ServerSnapshot;

/// A family's Prometheus type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// The word on the `# TYPE` line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Where a family's samples come from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// One unlabelled value, summed over workers.
    Total(fn(&Totals) -> u64),
    /// One unlabelled value from the registry link.
    Registry(fn(&RegistryStatus) -> u64),
    /// The number of servers in the list in use.
    LiveServers,
    /// One sample per HSMAP error status (`code` and `status` labels).
    ByStatus(fn(&Totals) -> &[u64; 5]),
    /// One sample per [`DropReason`] (`reason` label).
    ByReason(fn(&Totals) -> &[u64; DropReason::ALL.len()]),
    /// One sample per listed server (`id` and `mac` labels).
    PerServer(fn(&ServerRow) -> u64),
    /// As [`Source::PerServer`], the value in microseconds shown as seconds.
    PerServerMicros(fn(&ServerRow) -> u64),
    /// The latency histogram: buckets, sum and count.
    Latency,
}

/// One metric family: everything about it, in one row.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub source: Source,
}

const fn family(name: &'static str, kind: Kind, help: &'static str, source: Source) -> Family {
    Family {
        name,
        kind,
        help,
        source,
    }
}

use Kind::{Counter, Gauge, Histogram};
use Source::*;

/// Every family the load balancer exports, in the order rendered. Tests,
/// `deploy/*.sh` and the benchmark read these names: renaming one breaks them.
// Kept as written (one family to a few lines) so the table reads as a table.
#[rustfmt::skip]
pub const FAMILIES: &[Family] = &[
    family("ipcs_lb_requests_total", Counter,
        "Datagrams received from clients.",
        Total(|t| t.requests)),
    family("ipcs_lb_replies_total", Counter,
        "Results sent to clients.",
        Total(|t| t.replies)),
    family("ipcs_lb_late_replies_total", Counter,
        "Results taken from a server an earlier attempt went to.",
        Total(|t| t.late_replies)),
    family("ipcs_lb_replies_coalesced_total", Counter,
        "Results sent in one UDP GSO send with an earlier result to the same client.",
        Total(|t| t.replies_coalesced)),
    family("ipcs_lb_requests_received_coalesced_total", Counter,
        "Client datagrams that arrived in one message (UDP GRO) with an earlier one from the same client.",
        Total(|t| t.requests_received_coalesced)),
    family("ipcs_lb_requests_coalesced_total", Counter,
        "Attempts sent as a further record in a frame to the same server.",
        Total(|t| t.requests_coalesced)),
    family("ipcs_lb_retries_total", Counter,
        "Attempts sent again to another server.",
        Total(|t| t.retries)),
    family("ipcs_lb_attempt_timeouts_total", Counter,
        "Attempts not answered within their server's deadline.",
        Total(|t| t.attempt_timeouts)),
    family("ipcs_lb_failovers_total", Counter,
        "Retries away from a server silent while others answered (or from a send the LB lost); outside the retry budget.",
        Total(|t| t.failovers)),
    family("ipcs_lb_retries_over_budget_total", Counter,
        "Retries the retry budget refused; the request waited for the answers already asked for.",
        Total(|t| t.retries_over_budget)),
    family("ipcs_lb_answers_after_reply_total", Counter,
        "Answers from an earlier attempt's server after the client had its result.",
        Total(|t| t.answers_after_reply)),
    family("ipcs_lb_local_losses_total", Counter,
        "Send batches the LB may have lost itself (queue full, send refused); held against no server.",
        Total(|t| t.local_losses)),
    family("ipcs_lb_errors_total", Counter,
        "Error replies decided, by status code.",
        ByStatus(|t| &t.errors)),
    family("ipcs_lb_errors_suppressed_total", Counter,
        "Error replies not sent because of the error rate limit.",
        Total(|t| t.errors_suppressed)),
    family("ipcs_lb_source_share_refusals_total", Counter,
        "Requests refused (status 5) because their source prefix held its share of the requests in flight.",
        Total(|t| t.source_share_refusals)),
    family("ipcs_lb_drops_total", Counter,
        "Datagrams and frames dropped, by reason (bad_tag: a reply tag whose keyed check was never issued, i.e. forged).",
        ByReason(|t| &t.drops)),
    family("ipcs_lb_ejections_total", Counter,
        "Servers taken out of rotation for failing.",
        Total(|t| t.ejections)),
    family("ipcs_lb_abandoned_total", Counter,
        "Requests in flight when the LB stopped without their answer (drain timeout or a second signal).",
        Total(|t| t.abandoned)),
    family("ipcs_lb_stopping", Gauge,
        "Workers draining after SIGTERM/SIGINT: they read no new requests and finish those in flight.",
        Total(|t| t.stopping)),
    family("ipcs_lb_in_flight", Gauge,
        "Requests waiting for a server.",
        Total(|t| t.in_flight)),
    family("ipcs_lb_servers", Gauge,
        "Live servers in the current list.",
        LiveServers),
    family("ipcs_lb_server_requests_total", Counter,
        "Attempts sent to each server.",
        PerServer(|r| r.requests)),
    family("ipcs_lb_server_replies_total", Counter,
        "Results each server gave clients.",
        PerServer(|r| r.replies)),
    family("ipcs_lb_server_failures_total", Counter,
        "Failures held against each server (error answers, and the timeout that found it dead).",
        PerServer(|r| r.failures)),
    family("ipcs_lb_server_ejections_total", Counter,
        "Times each server was taken out of rotation.",
        PerServer(|r| r.ejections)),
    family("ipcs_lb_server_ejected", Gauge,
        "Whether each server is out of rotation now (any worker).",
        PerServer(|r| u64::from(r.ejected))),
    family("ipcs_lb_server_draining", Gauge,
        "Whether the operator drained each server (POST /servers/<id>/drain): no new requests.",
        PerServer(|r| u64::from(r.draining))),
    family("ipcs_lb_server_operator_ejected", Gauge,
        "Whether the operator ejected each server (POST /servers/<id>/eject).",
        PerServer(|r| u64::from(r.ejected_by_operator))),
    family("ipcs_lb_server_timeout_seconds", Gauge,
        "Each server's current adaptive attempt deadline.",
        PerServerMicros(|r| r.timeout_us)),
    family("ipcs_lb_server_srtt_seconds", Gauge,
        "Each server's smoothed round-trip time (0 before any sample).",
        PerServerMicros(|r| r.srtt_us)),
    family("ipcs_lb_server_in_flight", Gauge,
        "Attempts sent to each server and not yet answered or given up.",
        PerServer(|r| r.in_flight)),
    family("ipcs_lb_registry_version", Gauge,
        "Version of the server list in use.",
        Registry(|r| r.version.load(Relaxed))),
    family("ipcs_lb_registry_reachable", Gauge,
        "1 while connected to the registry.",
        Registry(|r| u64::from(r.reachable.load(Relaxed)))),
    family("ipcs_lb_registry_connects_total", Counter,
        "Connections made to the registry.",
        Registry(|r| r.connects.load(Relaxed))),
    family("ipcs_lb_registry_lists_total", Counter,
        "Server lists received.",
        Registry(|r| r.lists.load(Relaxed))),
    family("ipcs_lb_latency_seconds", Histogram,
        "Time from a request's arrival to its result being sent (published about once a second).",
        Latency),
];

/// The family called `name`, if the load balancer exports one.
pub fn family_named(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}

/// Everything the renderer reads.
pub struct MetricsView<'a> {
    pub workers: &'a [Arc<WorkerStats>],
    pub registry: &'a RegistryStatus,
    pub snapshot: &'a ServerSnapshot,
    /// The operator's overrides, and the instant they are judged at.
    pub overrides: &'a Overrides,
    pub now: Instant,
}

/// Upper bounds of the latency histogram buckets, in microseconds.
const LATENCY_BUCKETS_US: [u64; 14] = [
    50, 100, 200, 300, 500, 750, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 1_000_000,
];

/// Renders every family of [`FAMILIES`], in order.
pub fn render(view: &MetricsView<'_>) -> String {
    let totals = Totals::sum(view.workers);
    let rows = server_rows(view.workers, view.snapshot, view.overrides, view.now);
    let mut out = String::with_capacity(8192);
    for family in FAMILIES {
        let name = family.name;
        let _ = writeln!(out, "# HELP {name} {}", family.help);
        let _ = writeln!(out, "# TYPE {name} {}", family.kind.as_str());
        match family.source {
            Total(value) => {
                let _ = writeln!(out, "{name} {}", value(&totals));
            }
            Registry(value) => {
                let _ = writeln!(out, "{name} {}", value(view.registry));
            }
            LiveServers => {
                let _ = writeln!(out, "{name} {}", view.snapshot.len());
            }
            ByStatus(values) => {
                for (status, n) in Status::ALL.iter().zip(values(&totals)) {
                    let (code, status) = (status.to_u8(), status.name());
                    let _ = writeln!(out, "{name}{{code=\"{code}\",status=\"{status}\"}} {n}");
                }
            }
            ByReason(values) => {
                for (reason, n) in DropReason::ALL.iter().zip(values(&totals)) {
                    let _ = writeln!(out, "{name}{{reason=\"{}\"}} {n}", reason.name());
                }
            }
            PerServer(value) => {
                for row in &rows {
                    per_server(&mut out, name, row.id, row.mac, value(row));
                }
            }
            PerServerMicros(value) => {
                for row in &rows {
                    let secs = value(row) as f64 / 1e6;
                    per_server(&mut out, name, row.id, row.mac, secs);
                }
            }
            Latency => render_latency(&mut out, name, view.workers),
        }
    }
    out
}

fn per_server(out: &mut String, name: &str, id: u8, mac: MacAddr, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{name}{{id=\"{id}\",mac=\"{mac}\"}} {value}");
}

fn render_latency(out: &mut String, name: &str, workers: &[Arc<WorkerStats>]) {
    let mut merged = latency_histogram();
    for w in workers {
        // Same bounds everywhere, so adding cannot fail.
        let _ = merged.add(&**w.latency.load());
    }
    for bound in LATENCY_BUCKETS_US {
        let count = merged.count_between(0, bound);
        let le = bound as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", merged.len());
    let sum_secs = merged.mean() * merged.len() as f64 / 1e6;
    let _ = writeln!(out, "{name}_sum {sum_secs}");
    let _ = writeln!(out, "{name}_count {}", merged.len());
}

#[cfg(test)]
#[path = "exposition_tests.rs"]
mod tests;
