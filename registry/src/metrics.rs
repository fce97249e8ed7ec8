//! The registry's counters and their names, in one place. The reactor counts;
//! `STATS` reports every counter as a `STAT <name> <value>` line, so tests
//! and operators (`echo STATS | nc host 7070`) see the same numbers.

/// Connections open now (gauge).
pub const CONNECTIONS_OPEN: &str = "connections_open";
/// Servers registered now (gauge).
pub const SERVERS: &str = "servers";
/// Current list version (gauge).
pub const VERSION: &str = "version";
/// Connections accepted since start.
pub const CONNECTIONS_ACCEPTED: &str = "connections_accepted_total";
/// Connections refused because `--max-connections` were open.
pub const CONNECTIONS_REFUSED: &str = "connections_refused_total";
/// Connections closed for sending a line over `--max-line-bytes`.
pub const LINES_TOO_LONG: &str = "lines_too_long_total";
/// Lines that did not parse or were not allowed in the connection's state.
pub const BAD_LINES: &str = "bad_lines_total";
/// Connections closed for sending no valid line within `--first-line-timeout`.
pub const FIRST_LINE_TIMEOUTS: &str = "first_line_timeouts_total";
/// Connections closed because their unsent output exceeded `--max-output-bytes`.
pub const OUTPUT_OVERFLOWS: &str = "output_overflows_total";
/// `HELLO` lines received (accepted or refused).
pub const HELLOS: &str = "hellos_total";
/// `WATCH` lines received.
pub const WATCHES: &str = "watches_total";
/// `HELLO`s refused because the source address is outside `--allow`.
pub const HELLO_NOT_ALLOWED: &str = "hello_not_allowed_total";
/// `HELLO`s refused because the id belongs to another MAC.
pub const HELLO_ID_TAKEN: &str = "hello_id_taken_total";
/// `HELLO`s refused because `--max-servers` are registered.
pub const HELLO_TABLE_FULL: &str = "hello_table_full_total";
/// Registrations accepted (including replacements).
pub const REGISTRATIONS: &str = "registrations_total";
/// Registrations removed for missing beats.
pub const EXPIRED: &str = "expired_total";
/// `BEAT`s received on registered connections.
pub const BEATS: &str = "beats_total";
/// Server lists sent (answers to `LIST` and `WATCH`).
pub const LISTS_SENT: &str = "lists_sent_total";
/// Lines refused for carrying no proof (with a key).
pub const PROOF_MISSING: &str = "proof_missing_total";
/// Lines refused for a proof whose tag is not the key's (wrong key, forged).
pub const PROOF_BAD: &str = "proof_bad_total";
/// Lines refused for a proof outside the time window.
pub const PROOF_STALE: &str = "proof_stale_total";
/// Lines refused for a proof seen before (a replay).
pub const PROOF_REPLAYED: &str = "proof_replayed_total";
/// `HELLO`s refused because their ip is not the connection's address.
pub const HELLO_IP_MISMATCH: &str = "hello_ip_mismatch_total";
/// `HELLO`s refused because their address changed the list too often.
pub const HELLO_RATE_LIMITED: &str = "hello_rate_limited_total";
/// Connections refused because `--max-connections-per-ip` proven ones were open.
pub const CONNECTIONS_REFUSED_PER_IP: &str = "connections_refused_per_ip_total";
/// Connections that had not sent a valid line, closed to make room for newer ones.
pub const PENDING_EVICTED: &str = "pending_evicted_total";
/// Proven connections closed for sending no valid line within `--idle-timeout`.
pub const IDLE_TIMEOUTS: &str = "idle_timeouts_total";

/// Event counters (gauges are read from the reactor's state when reported).
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub connections_accepted: u64,
    pub hellos: u64,
    pub watches: u64,
    pub connections_refused: u64,
    pub lines_too_long: u64,
    pub bad_lines: u64,
    pub first_line_timeouts: u64,
    pub output_overflows: u64,
    pub hello_not_allowed: u64,
    pub hello_id_taken: u64,
    pub hello_table_full: u64,
    pub registrations: u64,
    pub expired: u64,
    pub beats: u64,
    pub lists_sent: u64,
    pub proof_missing: u64,
    pub proof_bad: u64,
    pub proof_stale: u64,
    pub proof_replayed: u64,
    pub hello_ip_mismatch: u64,
    pub hello_rate_limited: u64,
    pub connections_refused_per_ip: u64,
    pub pending_evicted: u64,
    pub idle_timeouts: u64,
}

impl Counters {
    /// Every counter with its name, for `STATS`.
    pub fn named(&self) -> [(&'static str, u64); 24] {
        [
            (CONNECTIONS_ACCEPTED, self.connections_accepted),
            (CONNECTIONS_REFUSED, self.connections_refused),
            (LINES_TOO_LONG, self.lines_too_long),
            (BAD_LINES, self.bad_lines),
            (FIRST_LINE_TIMEOUTS, self.first_line_timeouts),
            (OUTPUT_OVERFLOWS, self.output_overflows),
            (HELLO_NOT_ALLOWED, self.hello_not_allowed),
            (HELLO_ID_TAKEN, self.hello_id_taken),
            (HELLO_TABLE_FULL, self.hello_table_full),
            (REGISTRATIONS, self.registrations),
            (EXPIRED, self.expired),
            (BEATS, self.beats),
            (LISTS_SENT, self.lists_sent),
            (HELLOS, self.hellos),
            (WATCHES, self.watches),
            (PROOF_MISSING, self.proof_missing),
            (PROOF_BAD, self.proof_bad),
            (PROOF_STALE, self.proof_stale),
            (PROOF_REPLAYED, self.proof_replayed),
            (HELLO_IP_MISMATCH, self.hello_ip_mismatch),
            (HELLO_RATE_LIMITED, self.hello_rate_limited),
            (CONNECTIONS_REFUSED_PER_IP, self.connections_refused_per_ip),
            (PENDING_EVICTED, self.pending_evicted),
            (IDLE_TIMEOUTS, self.idle_timeouts),
        ]
    }
}

use ipcs_common::admin_http::{render_table, Kind, MetricDef, Row};

/// Prometheus names, kinds and help of every `STATS` value: one row per
/// `STATS` name, `ipcs_registry_*`; the refusals share one metric with a
/// `reason` label. `/metrics` is rendered from this table only.
pub const PROMETHEUS: [Row; 27] = {
    const fn def(name: &'static str, kind: Kind, help: &'static str) -> MetricDef {
        MetricDef { name, kind, help }
    }
    const REFUSED: MetricDef = def(
        "ipcs_registry_refusals_total",
        Kind::Counter,
        "Connections, HELLOs or lines refused, by reason.",
    );
    [
        (
            CONNECTIONS_OPEN,
            def(
                "ipcs_registry_connections_open",
                Kind::Gauge,
                "Connections open now.",
            ),
            None,
        ),
        (
            SERVERS,
            def(
                "ipcs_registry_servers",
                Kind::Gauge,
                "Servers registered now.",
            ),
            None,
        ),
        (
            VERSION,
            def(
                "ipcs_registry_version",
                Kind::Gauge,
                "Current server list version.",
            ),
            None,
        ),
        (
            CONNECTIONS_ACCEPTED,
            def(
                "ipcs_registry_connections_accepted_total",
                Kind::Counter,
                "Connections accepted since start.",
            ),
            None,
        ),
        (CONNECTIONS_REFUSED, REFUSED, Some("too_many_connections")),
        (
            LINES_TOO_LONG,
            def(
                "ipcs_registry_lines_too_long_total",
                Kind::Counter,
                "Connections closed for a line over --max-line-bytes.",
            ),
            None,
        ),
        (
            BAD_LINES,
            def(
                "ipcs_registry_bad_lines_total",
                Kind::Counter,
                "Lines that did not parse or were not allowed in the connection's state.",
            ),
            None,
        ),
        (
            FIRST_LINE_TIMEOUTS,
            def(
                "ipcs_registry_first_line_timeouts_total",
                Kind::Counter,
                "Connections closed for no valid line within --first-line-timeout-ms.",
            ),
            None,
        ),
        (
            OUTPUT_OVERFLOWS,
            def(
                "ipcs_registry_output_overflows_total",
                Kind::Counter,
                "Connections closed because their unsent output exceeded --max-output-bytes.",
            ),
            None,
        ),
        (HELLO_NOT_ALLOWED, REFUSED, Some("hello_not_allowed")),
        (HELLO_ID_TAKEN, REFUSED, Some("hello_id_taken")),
        (HELLO_TABLE_FULL, REFUSED, Some("hello_table_full")),
        (
            REGISTRATIONS,
            def(
                "ipcs_registry_registrations_total",
                Kind::Counter,
                "HELLOs accepted (registrations, replacements included).",
            ),
            None,
        ),
        (
            EXPIRED,
            def(
                "ipcs_registry_expired_total",
                Kind::Counter,
                "Registrations removed for missing beats.",
            ),
            None,
        ),
        (
            BEATS,
            def(
                "ipcs_registry_beats_total",
                Kind::Counter,
                "BEATs received on registered connections.",
            ),
            None,
        ),
        (
            LISTS_SENT,
            def(
                "ipcs_registry_lists_sent_total",
                Kind::Counter,
                "Server lists sent (answers to LIST and WATCH).",
            ),
            None,
        ),
        (
            HELLOS,
            def(
                "ipcs_registry_hellos_total",
                Kind::Counter,
                "HELLO lines received (accepted or refused).",
            ),
            None,
        ),
        (
            WATCHES,
            def(
                "ipcs_registry_watches_total",
                Kind::Counter,
                "WATCH lines received.",
            ),
            None,
        ),
        (PROOF_MISSING, REFUSED, Some("proof_missing")),
        (PROOF_BAD, REFUSED, Some("proof_bad")),
        (PROOF_STALE, REFUSED, Some("proof_stale")),
        (PROOF_REPLAYED, REFUSED, Some("proof_replayed")),
        (HELLO_IP_MISMATCH, REFUSED, Some("hello_ip_mismatch")),
        (HELLO_RATE_LIMITED, REFUSED, Some("hello_rate_limited")),
        (
            CONNECTIONS_REFUSED_PER_IP,
            REFUSED,
            Some("too_many_from_address"),
        ),
        (
            PENDING_EVICTED,
            def(
                "ipcs_registry_pending_evicted_total",
                Kind::Counter,
                "Connections without a valid line yet, closed to make room for newer ones.",
            ),
            None,
        ),
        (
            IDLE_TIMEOUTS,
            def(
                "ipcs_registry_idle_timeouts_total",
                Kind::Counter,
                "Connections closed for sending no valid line within --idle-timeout.",
            ),
            None,
        ),
    ]
};

/// The Prometheus text of `stats` (`STATS` names and values, as
/// `Sessions::stats` gives them), in [`PROMETHEUS`] order.
pub fn render(counters: &[(&'static str, u64)]) -> String {
    render_table(&PROMETHEUS, counters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stat_has_one_prometheus_row() {
        let stats: Vec<(&str, u64)> = [CONNECTIONS_OPEN, SERVERS, VERSION]
            .into_iter()
            .map(|n| (n, 7))
            .chain(Counters::default().named())
            .collect();
        assert_eq!(stats.len(), PROMETHEUS.len());
        for (name, _) in &stats {
            assert_eq!(
                PROMETHEUS.iter().filter(|r| r.0 == *name).count(),
                1,
                "{name}"
            );
        }
        let text = render(&stats);
        assert!(text.contains("# TYPE ipcs_registry_servers gauge\nipcs_registry_servers 7\n"));
        assert_eq!(
            text.matches("# TYPE ipcs_registry_refusals_total counter")
                .count(),
            1
        );
        assert!(text.contains("ipcs_registry_refusals_total{reason=\"hello_id_taken\"} 0\n"));
        for (_, def, _) in PROMETHEUS {
            assert!(def.name.starts_with("ipcs_registry_"));
            assert!(text.contains(&format!("# HELP {} ", def.name)));
        }
    }
}
