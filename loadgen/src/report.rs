//! The end-of-run report: the numbers a person reads (text), a script
//! parses (`--json`, stable keys) and a plotter draws (`--hgrm`, the
//! classic HdrHistogram percentile table).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};

use hdrhistogram::Histogram;
use ipcs_common::wire::Status;
use serde::Serialize;

use crate::findmax::FindMaxReport;
use crate::stats::{LatencySummary, LossWindow, SIGNIFICANT_DIGITS};

/// Everything one run measured. Serialises as the `--json` object.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    /// The schedule's rate.
    pub offered_rps: f64,
    /// Answered requests per second of the measured phase.
    pub achieved_rps: f64,
    /// Requests handed to the kernel per second of the measured phase.
    pub sent_rps: f64,
    /// Length of the measured phase (shorter than asked if interrupted).
    pub duration_s: f64,
    pub warmup_s: f64,
    pub timeout_ms: f64,
    pub sockets: u32,
    pub threads: u32,
    pub mix: String,
    /// Requests due in the measured phase: `answered + lost + unsent`.
    pub scheduled: u64,
    pub sent: u64,
    /// Due but never sent because loadgen itself fell behind.
    pub unsent: u64,
    pub send_failed: u64,
    pub answered: u64,
    pub lost: u64,
    pub wrong: u64,
    pub wrong_during_warmup: u64,
    pub late: u64,
    pub duplicate: u64,
    pub malformed: u64,
    pub refused: u64,
    /// Error replies by status name.
    pub errors: BTreeMap<String, u64>,
    pub latency_us: LatencySummary,
    /// How late loadgen sent requests compared with their schedule.
    pub send_lag_us: LatencySummary,
    pub per_server: BTreeMap<u8, u64>,
    pub wrong_per_server: BTreeMap<u8, u64>,
    /// When the lost requests were scheduled (`null` when none was lost).
    pub loss_window: Option<LossWindowReport>,
    /// Stopped early by SIGINT/SIGTERM.
    pub interrupted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub find_max: Option<FindMaxReport>,
    /// The full latency distribution (nanoseconds), for `--hgrm`.
    #[serde(skip)]
    pub latency: Histogram<u64>,
}

impl Report {
    /// The share of scheduled requests answered in time (1 when none were due).
    pub fn answered_share(&self) -> f64 {
        if self.scheduled == 0 {
            1.0
        } else {
            self.answered as f64 / self.scheduled as f64
        }
    }

    /// Whether a reply proved the system under test wrong (the exit status
    /// is then non-zero).
    pub fn saw_wrong(&self) -> bool {
        self.wrong + self.wrong_during_warmup + self.malformed > 0
    }

    /// Whether the run was clean, as `--require-clean` demands: every
    /// request of the measured phase answered correctly in time (none lost,
    /// none unsent), no wrong or malformed reply (warm-up included) and no
    /// HSMAP error reply at all. Late and duplicate replies do not count
    /// against it on their own: a late one leaves its request lost, and a
    /// duplicate repeats a correct answer.
    pub fn is_clean(&self) -> bool {
        self.answered == self.scheduled
            && !self.saw_wrong()
            && self.errors.values().all(|&n| n == 0)
    }

    /// Whether loadgen could not keep to its own schedule: more than 0.1 %
    /// of the requests unsent, or sends more than 10 ms late at p99.
    pub fn generator_behind(&self) -> bool {
        self.unsent * 1000 > self.scheduled || self.send_lag_us.p99 > 10_000.0
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }
}

/// [`LossWindow`] for the report: seconds into the measured phase of the
/// first and the last lost request's scheduled time, and the span between
/// them in milliseconds (the length of an outage, when losses come from one).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LossWindowReport {
    pub first_s: f64,
    pub last_s: f64,
    pub span_ms: f64,
}

impl From<LossWindow> for LossWindowReport {
    fn from(w: LossWindow) -> LossWindowReport {
        LossWindowReport {
            first_s: w.first.as_secs_f64(),
            last_s: w.last.as_secs_f64(),
            span_ms: (w.last - w.first).as_secs_f64() * 1000.0,
        }
    }
}

/// Error-status names for the report, from raw codes.
pub fn error_names(codes: &BTreeMap<u8, u64>) -> BTreeMap<String, u64> {
    codes
        .iter()
        .map(|(code, n)| {
            let name = Status::from_u8(*code)
                .map(|s| s.name().to_string())
                .unwrap_or_else(|| format!("code_{code}"));
            (name, *n)
        })
        .collect()
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// A latency in µs, printed with a readable unit.
pub struct Micros(pub f64);

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0;
        if us >= 1_000_000.0 {
            write!(f, "{:.2}s", us / 1_000_000.0)
        } else if us >= 1000.0 {
            write!(f, "{:.2}ms", us / 1000.0)
        } else {
            write!(f, "{us:.1}µs")
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "loadgen → {}: {:.1} s measured at {} rps (warm-up {:.1} s), {} sockets, {} thread(s), mix {}, timeout {} ms{}",
            self.target,
            self.duration_s,
            self.offered_rps,
            self.warmup_s,
            self.sockets,
            self.threads,
            self.mix,
            self.timeout_ms,
            if self.interrupted { " [interrupted]" } else { "" },
        )?;
        writeln!(
            f,
            "  offered   {:>10.1} rps  ({} scheduled, {} sent, {} unsent, {} send errors)",
            self.offered_rps, self.scheduled, self.sent, self.unsent, self.send_failed
        )?;
        writeln!(f, "  achieved  {:>10.1} rps", self.achieved_rps)?;
        writeln!(
            f,
            "  answered  {:>10}  ({:.3} %)",
            self.answered,
            pct(self.answered, self.scheduled)
        )?;
        writeln!(
            f,
            "  lost      {:>10}  ({:.3} %; {} late replies, {} duplicates)",
            self.lost,
            pct(self.lost, self.scheduled),
            self.late,
            self.duplicate
        )?;
        if let Some(w) = &self.loss_window {
            writeln!(
                f,
                "  losses    scheduled from {:.3} s to {:.3} s into the run ({:.0} ms)",
                w.first_s, w.last_s, w.span_ms
            )?;
        }
        writeln!(
            f,
            "  wrong     {:>10}  ({} during warm-up, {} malformed datagrams)",
            self.wrong, self.wrong_during_warmup, self.malformed
        )?;
        write!(f, "  errors    ")?;
        if self.errors.is_empty() {
            write!(f, "{:>10}", "none")?;
        }
        for (name, n) in &self.errors {
            write!(f, " {name}={n}")?;
        }
        if self.refused > 0 {
            write!(f, "  (ICMP port unreachable {} times)", self.refused)?;
        }
        writeln!(f)?;
        let l = &self.latency_us;
        writeln!(
            f,
            "  latency   p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}",
            Micros(l.p50),
            Micros(l.p90),
            Micros(l.p99),
            Micros(l.p999),
            Micros(l.p9999),
            Micros(l.max)
        )?;
        let s = &self.send_lag_us;
        writeln!(
            f,
            "  send lag  p50 {}  p99 {}  max {}  (loadgen's own lateness, included above)",
            Micros(s.p50),
            Micros(s.p99),
            Micros(s.max)
        )?;
        write!(f, "  servers  ")?;
        if self.per_server.is_empty() {
            write!(f, " none")?;
        }
        for (id, n) in &self.per_server {
            write!(f, " #{id}: {n} ({:.1} %)", pct(*n, self.answered))?;
        }
        writeln!(f)?;
        if !self.wrong_per_server.is_empty() {
            write!(f, "  wrong by server")?;
            for (id, n) in &self.wrong_per_server {
                write!(f, " #{id}: {n}")?;
            }
            writeln!(f)?;
        }
        if self.generator_behind() {
            writeln!(
                f,
                "  WARNING: loadgen fell behind its schedule ({} unsent, send lag p99 {}); \
                 the numbers above include its own slowness",
                self.unsent,
                Micros(s.p99)
            )?;
        }
        if self.saw_wrong() {
            writeln!(f, "  FAILED: the target sent wrong replies")?;
        }
        if let Some(fm) = &self.find_max {
            write!(f, "{fm}")?;
        }
        Ok(())
    }
}

/// Writes `hist` (nanoseconds) as HdrHistogram's classic percentile
/// distribution (`.hgrm`), values in milliseconds, 5 ticks per half
/// distance: the format wrk2 prints and HdrHistogram's plotter reads.
pub fn write_hgrm(hist: &Histogram<u64>, out: &mut impl Write) -> io::Result<()> {
    const SCALE: f64 = 1_000_000.0;
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    if !hist.is_empty() {
        for v in hist.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / SCALE;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                writeln!(
                    out,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                )?;
            } else {
                writeln!(out, "{value:12.3} {q:2.12} {total:10}")?;
            }
        }
    }
    let (mean, stdev) = if hist.is_empty() {
        (0.0, 0.0)
    } else {
        (hist.mean() / SCALE, hist.stdev() / SCALE)
    };
    writeln!(
        out,
        "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]"
    )?;
    writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        hist.max() as f64 / SCALE,
        hist.len()
    )?;
    let sub_buckets = (2 * 10u64.pow(u32::from(SIGNIFICANT_DIGITS))).next_power_of_two();
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        hist.buckets(),
        sub_buckets
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    #[test]
    fn hgrm_is_the_classic_table() {
        let mut h = new_histogram();
        for us in 1..=10_000u64 {
            h.record(us * 1000).unwrap();
        }
        let mut out = Vec::new();
        write_hgrm(&h, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines.next().unwrap(), "");
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip(2)
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert!(rows.len() > 50, "{}", rows.len());
        let first = &rows[0];
        assert_eq!(first.len(), 4);
        assert_eq!(first[1], "0.000000000000");
        let last = rows.last().unwrap();
        assert_eq!(last.len(), 3, "the 100 % row has no 1/(1-p)");
        assert_eq!(last[1], "1.000000000000");
        assert_eq!(last[2], "10000");
        let max_ms: f64 = last[0].parse().unwrap();
        assert!((max_ms - 10.0).abs() < 0.01, "{max_ms}");
        // Percentiles and counts never decrease.
        let mut prev = (0.0f64, 0u64);
        for row in &rows {
            let p: f64 = row[1].parse().unwrap();
            let c: u64 = row[2].parse().unwrap();
            assert!(p >= prev.0 && c >= prev.1, "{row:?}");
            prev = (p, c);
        }
        assert!(text.contains("#[Max     =       10.00"), "{text}");
        assert!(text.contains("Total count    =        10000]"));
        assert!(text.contains("SubBuckets     =         2048]"));
    }

    #[test]
    fn hgrm_of_nothing_still_has_header_and_footer() {
        let mut out = Vec::new();
        write_hgrm(&new_histogram(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("       Value"));
        assert!(text.contains("Total count    =            0]"));
    }

    #[test]
    fn micros_pick_a_unit() {
        assert_eq!(Micros(12.34).to_string(), "12.3µs");
        assert_eq!(Micros(1234.0).to_string(), "1.23ms");
        assert_eq!(Micros(2_500_000.0).to_string(), "2.50s");
    }

    #[test]
    fn error_names_use_status_names() {
        let codes = BTreeMap::from([(5u8, 2u64), (3, 1)]);
        let names = error_names(&codes);
        assert_eq!(names["overloaded"], 2);
        assert_eq!(names["no_server"], 1);
    }
}
