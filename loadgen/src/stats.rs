//! Counters and latency histograms of a run. Each worker's receiving side
//! owns a [`Stats`] and its sending side a [`SendStats`]; the run merges them
//! into one of each at the end (and for the live progress line).
//!
//! Accounting: every *request* of the measured phase ends up exactly once as
//! answered (a correct reply within the timeout), lost (no correct reply
//! within the timeout: dropped, answered too late, answered only with an
//! error or a wrong value, or refused by the kernel on send) or unsent (the
//! generator itself fell behind and never sent it). `wrong`, `late`,
//! `duplicate`, `malformed` and `errors` count *replies*.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Largest latency the histograms hold exactly (larger values are clamped).
const MAX_TRACKABLE_NANOS: u64 = 3_600_000_000_000;
/// Precision of the histograms: 3 significant digits (0.1 %).
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// A latency histogram in nanoseconds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKABLE_NANOS, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// What the receiving side saw.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Measured requests answered correctly within the timeout.
    pub answered: u64,
    /// Measured requests with no correct reply within the timeout.
    pub lost: u64,
    /// Replies (received after the warm-up) whose value is not the answer
    /// of the request their tag names.
    pub wrong: u64,
    /// Wrong replies received during the warm-up.
    pub wrong_during_warmup: u64,
    /// Correct replies that came after the timeout (their requests count as lost).
    pub late: u64,
    /// Correct replies to a request that was already answered.
    pub duplicate: u64,
    /// Datagrams that are neither a reply nor an error reply.
    pub malformed: u64,
    /// `ECONNREFUSED` seen on the sockets: the target sent ICMP port unreachable.
    pub refused: u64,
    /// Error replies by status code.
    pub errors: BTreeMap<u8, u64>,
    /// Answered requests by the server id in the reply.
    pub per_server: BTreeMap<u8, u64>,
    /// Wrong replies by the server id in the reply.
    pub wrong_per_server: BTreeMap<u8, u64>,
    /// Latency of answered requests, from the time each was *scheduled*.
    pub latency: Histogram<u64>,
    /// When the lost requests were scheduled, if any was lost.
    pub loss_window: Option<LossWindow>,
}

/// The scheduled times of the first and the last lost request, measured
/// from the start of the measured phase. Every lost request was due in
/// `first..=last`: an outage of the target (a load balancer failing over)
/// shows as a window about as long as the outage, scattered losses as a
/// wide one with few requests in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossWindow {
    pub first: Duration,
    pub last: Duration,
}

impl LossWindow {
    fn widen(this: &mut Option<LossWindow>, first: Duration, last: Duration) {
        *this = Some(match *this {
            None => LossWindow { first, last },
            Some(w) => LossWindow {
                first: w.first.min(first),
                last: w.last.max(last),
            },
        });
    }
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            answered: 0,
            lost: 0,
            wrong: 0,
            wrong_during_warmup: 0,
            late: 0,
            duplicate: 0,
            malformed: 0,
            refused: 0,
            errors: BTreeMap::new(),
            per_server: BTreeMap::new(),
            wrong_per_server: BTreeMap::new(),
            latency: new_histogram(),
            loss_window: None,
        }
    }
}

impl Stats {
    pub fn record_answered(&mut self, latency: Duration, server_id: u8) {
        self.answered += 1;
        *self.per_server.entry(server_id).or_default() += 1;
        self.latency.saturating_record(nanos(latency));
    }

    pub fn record_wrong(&mut self, server_id: u8, during_warmup: bool) {
        if during_warmup {
            self.wrong_during_warmup += 1;
        } else {
            self.wrong += 1;
            *self.wrong_per_server.entry(server_id).or_default() += 1;
        }
    }

    /// A measured request scheduled `at` into the measured phase is lost.
    pub fn record_lost(&mut self, at: Duration) {
        self.lost += 1;
        LossWindow::widen(&mut self.loss_window, at, at);
    }

    pub fn record_error(&mut self, code: u8) {
        *self.errors.entry(code).or_default() += 1;
    }

    /// Adds another worker's counts.
    pub fn merge(&mut self, other: &Stats) {
        self.answered += other.answered;
        self.lost += other.lost;
        self.wrong += other.wrong;
        self.wrong_during_warmup += other.wrong_during_warmup;
        self.late += other.late;
        self.duplicate += other.duplicate;
        self.malformed += other.malformed;
        self.refused += other.refused;
        for (map, theirs) in [
            (&mut self.errors, &other.errors),
            (&mut self.per_server, &other.per_server),
            (&mut self.wrong_per_server, &other.wrong_per_server),
        ] {
            for (key, count) in theirs {
                *map.entry(*key).or_default() += count;
            }
        }
        self.latency
            .add(&other.latency)
            .expect("histograms share bounds");
        if let Some(w) = other.loss_window {
            LossWindow::widen(&mut self.loss_window, w.first, w.last);
        }
    }

    /// Whether any reply proved the system under test wrong.
    pub fn saw_wrong(&self) -> bool {
        self.wrong + self.wrong_during_warmup + self.malformed > 0
    }
}

/// What the sending side did in the measured phase.
#[derive(Debug, Clone)]
pub struct SendStats {
    /// Requests the kernel accepted.
    pub sent: u64,
    /// Requests the kernel refused (they count as lost).
    pub failed: u64,
    /// How late each request left compared with its scheduled time: the
    /// generator's own share of the measured latency.
    pub lag: Histogram<u64>,
}

impl Default for SendStats {
    fn default() -> SendStats {
        SendStats {
            sent: 0,
            failed: 0,
            lag: new_histogram(),
        }
    }
}

impl SendStats {
    pub fn record_lag(&mut self, lag: Duration) {
        self.lag.saturating_record(nanos(lag));
    }

    pub fn merge(&mut self, other: &SendStats) {
        self.sent += other.sent;
        self.failed += other.failed;
        self.lag.add(&other.lag).expect("histograms share bounds");
    }
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
    pub mean: f64,
}

impl LatencySummary {
    /// All zero for an empty histogram.
    pub fn of(hist: &Histogram<u64>) -> LatencySummary {
        if hist.is_empty() {
            return LatencySummary::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        LatencySummary {
            p50: us(hist.value_at_quantile(0.50)),
            p90: us(hist.value_at_quantile(0.90)),
            p99: us(hist.value_at_quantile(0.99)),
            p999: us(hist.value_at_quantile(0.999)),
            p9999: us(hist.value_at_quantile(0.9999)),
            max: us(hist.max()),
            mean: hist.mean() / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_everything() {
        let mut a = Stats::default();
        a.record_answered(Duration::from_micros(10), 1);
        a.record_error(5);
        a.lost = 2;
        let mut b = Stats::default();
        b.record_answered(Duration::from_micros(1000), 2);
        b.record_answered(Duration::from_micros(20), 1);
        b.record_wrong(3, false);
        b.record_wrong(3, true);
        b.record_error(5);
        a.record_lost(Duration::from_millis(700));
        b.record_lost(Duration::from_millis(300));
        b.record_lost(Duration::from_millis(500));
        a.merge(&b);
        assert_eq!(
            a.loss_window,
            Some(LossWindow {
                first: Duration::from_millis(300),
                last: Duration::from_millis(700)
            })
        );
        a.lost -= 3;
        assert_eq!(a.answered, 3);
        assert_eq!(a.lost, 2);
        assert_eq!(a.wrong, 1);
        assert_eq!(a.wrong_during_warmup, 1);
        assert_eq!(a.errors[&5], 2);
        assert_eq!(a.per_server[&1], 2);
        assert_eq!(a.per_server[&2], 1);
        assert_eq!(a.wrong_per_server[&3], 1);
        assert_eq!(a.latency.len(), 3);
        assert!(a.saw_wrong());
        assert!(!Stats::default().saw_wrong());
    }

    #[test]
    fn summary_in_microseconds() {
        let mut s = Stats::default();
        for us in 1..=1000 {
            s.record_answered(Duration::from_micros(us), 0);
        }
        let sum = LatencySummary::of(&s.latency);
        assert!((sum.p50 - 500.0).abs() < 1.0, "{sum:?}");
        assert!((sum.p99 - 990.0).abs() < 1.0, "{sum:?}");
        assert!((sum.max - 1000.0).abs() < 1.0, "{sum:?}");
        assert_eq!(
            LatencySummary::of(&new_histogram()),
            LatencySummary::default()
        );
    }
}
