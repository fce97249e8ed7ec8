//! The server's counters and the periodic line that reports them. Every
//! counter's name is a constant here, so logs, docs and tests agree on them.

use core::fmt;
use std::time::{Duration, Instant};

use ipcs_common::admin_http::{render_table, Kind, MetricDef, Row};

use crate::handler::{DropReason, FrameOutcome};
use crate::udp::UdpAnswer;

/// Counter names, as they appear in the stats line (`name=value`).
pub mod names {
    pub const FRAMES_ANSWERED: &str = "frames_answered";
    pub const FRAMES_UNKNOWN_OP: &str = "frames_unknown_op";
    pub const FRAMES_SEND_FAILED: &str = "frames_send_failed";
    pub const DROPPED_NOT_FOR_US: &str = "dropped_not_for_us";
    pub const DROPPED_SHORT: &str = "dropped_short";
    pub const DROPPED_UNKNOWN_KIND: &str = "dropped_unknown_kind";
    pub const DROPPED_WRONG_ETHERTYPE: &str = "dropped_wrong_ethertype";
    pub const DROPPED_NOT_A_REQUEST: &str = "dropped_not_a_request";
    pub const DROPPED_BAD_SOURCE: &str = "dropped_bad_source";
    pub const DROPPED_TOO_MANY_RECORDS: &str = "dropped_too_many_records";
    pub const UDP_ANSWERED: &str = "udp_answered";
    pub const UDP_ERRORS: &str = "udp_errors";
    pub const UDP_EMPTY: &str = "udp_empty";
    pub const UDP_SEND_FAILED: &str = "udp_send_failed";
    pub const DROPPED_DELAY_QUEUE_FULL: &str = "dropped_delay_queue_full";
}

/// Prometheus names, kinds and help of every counter in the stats line, in
/// one table: `(stats line name, metric, label)`. The drops share one metric
/// with a `reason` label. `/metrics` is rendered from this table only.
pub const PROMETHEUS: [Row; 15] = {
    const fn counter(name: &'static str, help: &'static str) -> MetricDef {
        MetricDef {
            name,
            kind: Kind::Counter,
            help,
        }
    }
    const DROPPED: MetricDef = counter(
        "ipcs_server_frames_dropped_total",
        "Backend frames dropped unanswered, by reason.",
    );
    [
        (
            names::FRAMES_ANSWERED,
            counter(
                "ipcs_server_frames_answered_total",
                "Backend requests answered with a result.",
            ),
            None,
        ),
        (
            names::FRAMES_UNKNOWN_OP,
            counter(
                "ipcs_server_frames_unknown_op_total",
                "Backend requests answered with an unknown-op error.",
            ),
            None,
        ),
        (
            names::FRAMES_SEND_FAILED,
            counter(
                "ipcs_server_frames_send_failed_total",
                "Reply frames the kernel refused to send.",
            ),
            None,
        ),
        (names::DROPPED_NOT_FOR_US, DROPPED, Some("not_for_us")),
        (names::DROPPED_SHORT, DROPPED, Some("short")),
        (names::DROPPED_UNKNOWN_KIND, DROPPED, Some("unknown_kind")),
        (
            names::DROPPED_WRONG_ETHERTYPE,
            DROPPED,
            Some("wrong_ethertype"),
        ),
        (names::DROPPED_NOT_A_REQUEST, DROPPED, Some("not_a_request")),
        (names::DROPPED_BAD_SOURCE, DROPPED, Some("bad_source")),
        (
            names::DROPPED_TOO_MANY_RECORDS,
            DROPPED,
            Some("too_many_records"),
        ),
        (
            names::UDP_ANSWERED,
            counter(
                "ipcs_server_udp_answered_total",
                "UDP requests answered with a result.",
            ),
            None,
        ),
        (
            names::UDP_ERRORS,
            counter(
                "ipcs_server_udp_errors_total",
                "UDP requests answered with an error byte.",
            ),
            None,
        ),
        (
            names::UDP_EMPTY,
            counter(
                "ipcs_server_udp_empty_total",
                "Empty UDP datagrams, dropped unanswered.",
            ),
            None,
        ),
        (
            names::UDP_SEND_FAILED,
            counter(
                "ipcs_server_udp_send_failed_total",
                "UDP answers the kernel refused to send.",
            ),
            None,
        ),
        (
            names::DROPPED_DELAY_QUEUE_FULL,
            counter(
                "ipcs_server_delay_queue_full_total",
                "Fault injection: answers dropped because the delay queue was full.",
            ),
            None,
        ),
    ]
};

/// The Prometheus text of `counters` (stats line names and values, as
/// [`Stats::counters`] gives them), in [`PROMETHEUS`] order.
pub fn render(counters: &[(&'static str, u64)]) -> String {
    render_table(&PROMETHEUS, counters)
}

/// The counter name for frames dropped for `reason`.
pub const fn drop_name(reason: DropReason) -> &'static str {
    match reason {
        DropReason::NotForUs => names::DROPPED_NOT_FOR_US,
        DropReason::Short => names::DROPPED_SHORT,
        DropReason::UnknownKind => names::DROPPED_UNKNOWN_KIND,
        DropReason::WrongEtherType => names::DROPPED_WRONG_ETHERTYPE,
        DropReason::NotARequest => names::DROPPED_NOT_A_REQUEST,
        DropReason::BadSource => names::DROPPED_BAD_SOURCE,
        DropReason::TooManyRecords => names::DROPPED_TOO_MANY_RECORDS,
    }
}

/// What the server has done since it started.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Requests answered with a result.
    pub frames_answered: u64,
    /// Requests answered with an "unknown op" error frame.
    pub frames_unknown_op: u64,
    /// Replies the kernel refused to send.
    pub frames_send_failed: u64,
    /// Frames dropped, indexed by [`DropReason::index`].
    pub frames_dropped: [u64; DropReason::ALL.len()],
    /// UDP requests answered with a result.
    pub udp_answered: u64,
    /// UDP requests answered with an error byte.
    pub udp_errors: u64,
    /// Empty datagrams, dropped unanswered.
    pub udp_empty: u64,
    /// UDP answers the kernel refused to send.
    pub udp_send_failed: u64,
    /// Fault injection: reply frames or datagrams dropped because the delay
    /// queue was full.
    pub dropped_delay_queue_full: u64,
}

impl Stats {
    pub fn record_frame(&mut self, outcome: &FrameOutcome) {
        match outcome {
            FrameOutcome::Reply(repr) => match repr.body {
                ipcs_common::wire::FrameBody::Reply(_) => self.frames_answered += 1,
                _ => self.frames_unknown_op += 1,
            },
            FrameOutcome::Drop(reason) => self.frames_dropped[reason.index()] += 1,
        }
    }

    pub fn record_udp(&mut self, answer: &UdpAnswer) {
        if answer.is_silent() {
            self.udp_empty += 1;
        } else if answer.is_error() {
            self.udp_errors += 1;
        } else {
            self.udp_answered += 1;
        }
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.frames_dropped[reason.index()]
    }

    /// Every counter with its name, in a fixed order.
    pub fn counters(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        [
            (names::FRAMES_ANSWERED, self.frames_answered),
            (names::FRAMES_UNKNOWN_OP, self.frames_unknown_op),
            (names::FRAMES_SEND_FAILED, self.frames_send_failed),
        ]
        .into_iter()
        .chain(
            DropReason::ALL
                .into_iter()
                .map(|r| (drop_name(r), self.dropped(r))),
        )
        .chain([
            (names::UDP_ANSWERED, self.udp_answered),
            (names::UDP_ERRORS, self.udp_errors),
            (names::UDP_EMPTY, self.udp_empty),
            (names::UDP_SEND_FAILED, self.udp_send_failed),
            (
                names::DROPPED_DELAY_QUEUE_FULL,
                self.dropped_delay_queue_full,
            ),
        ])
    }
}

/// `name=value` pairs separated by spaces: the stats log line.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.counters().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{name}={value}")?;
        }
        Ok(())
    }
}

/// When the next stats line is due: a fixed period, skipping missed ticks
/// instead of bursting after a long stall.
#[derive(Debug, Clone, Copy)]
pub struct StatsTicker {
    interval: Duration,
    next: Instant,
}

impl StatsTicker {
    /// # Panics
    /// If `interval` is zero.
    pub fn new(interval: Duration, now: Instant) -> StatsTicker {
        assert!(!interval.is_zero(), "stats interval must be positive");
        StatsTicker {
            interval,
            next: now + interval,
        }
    }

    /// Whether a line is due at `now`; if so, schedules the next one.
    pub fn poll(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        while self.next <= now {
            self.next += self.interval;
        }
        true
    }

    /// How long the reactor may sleep before the next line is due.
    pub fn timeout(&self, now: Instant) -> Duration {
        self.next.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::FrameHandler;
    use crate::udp::UdpHandler;
    use ipcs_common::wire::MacAddr;

    #[test]
    fn line_names_every_counter_once() {
        let mut stats = Stats::default();
        let handler = FrameHandler::new(MacAddr([2, 0, 0, 0, 0, 1]), 1);
        stats.record_frame(&handler.handle(&[0u8; 3]));
        stats.record_frame(&handler.handle(&[0u8; 3]));
        stats.record_frame(&handler.handle(&[9u8; 30]));
        stats.record_udp(&UdpHandler::new(1).handle(&[0u8; 9]));
        stats.record_udp(&UdpHandler::new(1).handle(&[1u8; 9]));
        let line = stats.to_string();
        assert!(line.starts_with("frames_answered=0 frames_unknown_op=0"));
        assert!(
            line.contains(" dropped_not_for_us=1 dropped_short=2 "),
            "{line}"
        );
        assert!(line.ends_with(
            "udp_answered=1 udp_errors=1 udp_empty=0 udp_send_failed=0 dropped_delay_queue_full=0"
        ));
        assert_eq!(line.split(' ').count(), 15);
        assert_eq!(stats.counters().count(), 15);
    }

    #[test]
    fn every_counter_has_one_prometheus_row() {
        let stats = Stats::default();
        let counters: Vec<_> = stats.counters().collect();
        assert_eq!(counters.len(), PROMETHEUS.len());
        for (name, _) in &counters {
            assert_eq!(
                PROMETHEUS.iter().filter(|r| r.0 == *name).count(),
                1,
                "{name}"
            );
        }
        let text = render(&counters);
        assert_eq!(
            text.matches("# TYPE ipcs_server_frames_dropped_total counter")
                .count(),
            1
        );
        assert!(text.contains("ipcs_server_frames_dropped_total{reason=\"short\"} 0\n"));
        for (_, def, _) in PROMETHEUS {
            assert!(def.name.starts_with("ipcs_server_"));
            assert!(text.contains(&format!("# HELP {} ", def.name)));
        }
    }

    #[test]
    fn ticker_fires_once_per_interval_and_skips_missed_ticks() {
        let t0 = Instant::now();
        let mut ticker = StatsTicker::new(Duration::from_secs(10), t0);
        assert!(!ticker.poll(t0));
        assert_eq!(ticker.timeout(t0), Duration::from_secs(10));
        assert!(!ticker.poll(t0 + Duration::from_secs(9)));
        assert!(ticker.poll(t0 + Duration::from_secs(10)));
        assert!(!ticker.poll(t0 + Duration::from_secs(10)));
        assert!(ticker.poll(t0 + Duration::from_secs(55)));
        assert!(!ticker.poll(t0 + Duration::from_secs(59)));
        assert_eq!(
            ticker.timeout(t0 + Duration::from_secs(59)),
            Duration::from_secs(1)
        );
        assert!(ticker.poll(t0 + Duration::from_secs(60)));
    }
}
