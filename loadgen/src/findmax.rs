//! `--find-max`: the search for the highest rate the target sustains. A
//! sans-io controller: it proposes a rate, is told how the step at that rate
//! went, and proposes the next one.
//!
//! It ramps up from a start rate (multiplying by a factor, or adding an
//! increment) until a step fails — fewer than `min_answered` of the
//! requests answered in time, p99 above `p99_max`, a wrong reply, or
//! loadgen itself falling behind — then bisects between the last rate that
//! held and the first that failed for a few more steps.
//!
//! On a shared machine one step can fail for reasons outside the target (a
//! neighbour's burst, a page-cache flush), and a single such blip would end
//! the ramp early. So a failed step is run again at the same rate up to
//! `retries` times and the rate fails only if every attempt failed (wrong
//! replies are never retried). If not even the start rate holds, the search
//! halves the rate a few times instead of reporting nothing.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// How the ramp grows the rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Growth {
    /// Multiply by this factor (> 1).
    Factor(f64),
    /// Add this many requests per second.
    Increment(u64),
}

/// The search's knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FindMaxConfig {
    pub start_rps: u64,
    pub growth: Growth,
    pub max_rps: u64,
    pub step_duration: Duration,
    pub p99_max: Duration,
    /// Smallest share of requests that must be answered in time (0.999).
    pub min_answered: f64,
    /// Bisection steps after the first failure.
    pub refine_steps: u32,
    /// Extra attempts at a rate whose step failed before it counts as failed.
    pub retries: u32,
}

/// How many times the search halves the rate when the start rate fails.
const DESCENTS: u32 = 4;

/// How one step went, as the controller needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    pub rps: u64,
    pub achieved_rps: f64,
    pub answered_share: f64,
    pub p99_us: f64,
    pub wrong: bool,
    pub generator_behind: bool,
}

/// One step as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepResult {
    pub rps: u64,
    pub achieved_rps: f64,
    pub answered_share: f64,
    pub p99_us: f64,
    pub held: bool,
    /// Why it failed (`answered`, `p99`, `wrong`, `loadgen`), empty if held.
    pub reason: &'static str,
    /// 0 for the first attempt at this rate, 1 for the first retry, ...
    pub attempt: u32,
}

/// The search's result (the `find_max` object of `--json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindMaxReport {
    /// The highest rate that held; `None` if not even the start rate did.
    pub best_rps: Option<u64>,
    /// The lowest rate that failed, if any did.
    pub failed_rps: Option<u64>,
    /// What ended the ramp: the reason of the first failed step, or
    /// `max_rps` when every step up to the ceiling held.
    pub limited_by: &'static str,
    pub p99_max_us: f64,
    pub min_answered_share: f64,
    pub step_duration_s: f64,
    pub steps: Vec<StepResult>,
}

/// The search state.
#[derive(Debug, Clone)]
pub struct FindMax {
    cfg: FindMaxConfig,
    best: Option<u64>,
    failed: Option<u64>,
    limited_by: &'static str,
    refine_left: u32,
    descents_left: u32,
    /// Attempts made so far at the rate of `next` (for retries).
    attempt: u32,
    next: Option<u64>,
    steps: Vec<StepResult>,
}

impl FindMax {
    pub fn new(cfg: FindMaxConfig) -> FindMax {
        let start = cfg.start_rps.clamp(1, cfg.max_rps.max(1));
        FindMax {
            cfg,
            best: None,
            failed: None,
            limited_by: "",
            refine_left: cfg.refine_steps,
            descents_left: DESCENTS,
            attempt: 0,
            next: Some(start),
            steps: Vec::new(),
        }
    }

    pub fn config(&self) -> &FindMaxConfig {
        &self.cfg
    }

    /// The rate of the next step, or `None` when the search is over.
    pub fn next_rate(&self) -> Option<u64> {
        self.next
    }

    fn verdict(&self, step: &StepOutcome) -> Option<&'static str> {
        if step.wrong {
            Some("wrong")
        } else if step.generator_behind {
            Some("loadgen")
        } else if step.answered_share < self.cfg.min_answered {
            Some("answered")
        } else if step.p99_us > self.cfg.p99_max.as_secs_f64() * 1e6 {
            Some("p99")
        } else {
            None
        }
    }

    /// Takes the outcome of the step at [`next_rate`](Self::next_rate).
    pub fn record(&mut self, step: StepOutcome) {
        let reason = self.verdict(&step);
        self.steps.push(StepResult {
            rps: step.rps,
            achieved_rps: step.achieved_rps,
            answered_share: step.answered_share,
            p99_us: step.p99_us,
            held: reason.is_none(),
            reason: reason.unwrap_or(""),
            attempt: self.attempt,
        });
        if reason.is_some() && !step.wrong && self.attempt < self.cfg.retries {
            self.attempt += 1;
            self.next = Some(step.rps);
            return;
        }
        self.attempt = 0;
        match reason {
            None => self.best = Some(self.best.map_or(step.rps, |b| b.max(step.rps))),
            Some(why) => {
                if self.failed.is_none() {
                    self.limited_by = why;
                }
                self.failed = Some(self.failed.map_or(step.rps, |f| f.min(step.rps)));
            }
        }
        self.next = if step.wrong {
            // A target that computes wrongly has no meaningful maximum.
            None
        } else {
            match (self.best, self.failed) {
                (_, None) => self.grow(step.rps),
                (None, Some(_)) => self.descend(step.rps),
                (Some(best), Some(failed)) => self.bisect(best, failed),
            }
        };
    }

    fn grow(&mut self, rps: u64) -> Option<u64> {
        if rps >= self.cfg.max_rps {
            self.limited_by = "max_rps";
            return None;
        }
        let next = match self.cfg.growth {
            Growth::Factor(f) => (rps as f64 * f).round() as u64,
            Growth::Increment(i) => rps.saturating_add(i),
        };
        Some(next.max(rps + 1).min(self.cfg.max_rps))
    }

    fn descend(&mut self, rps: u64) -> Option<u64> {
        if self.descents_left == 0 || rps < 2 {
            return None;
        }
        self.descents_left -= 1;
        Some(rps / 2)
    }

    fn bisect(&mut self, best: u64, failed: u64) -> Option<u64> {
        // Stop when the gap is within 1 % or the refinement budget is spent.
        if self.refine_left == 0 || failed.saturating_sub(best) * 100 <= best {
            return None;
        }
        self.refine_left -= 1;
        Some(best + (failed - best) / 2)
    }

    /// The search's result so far.
    pub fn report(&self) -> FindMaxReport {
        FindMaxReport {
            best_rps: self.best,
            failed_rps: self.failed,
            limited_by: self.limited_by,
            p99_max_us: self.cfg.p99_max.as_secs_f64() * 1e6,
            min_answered_share: self.cfg.min_answered,
            step_duration_s: self.cfg.step_duration.as_secs_f64(),
            steps: self.steps.clone(),
        }
    }
}

impl fmt::Display for FindMaxReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "find-max: steps of {:.1} s, held = answered ≥ {:.1} % and p99 ≤ {:.0} µs",
            self.step_duration_s,
            self.min_answered_share * 100.0,
            self.p99_max_us
        )?;
        for s in &self.steps {
            writeln!(
                f,
                "  {:>9} rps  achieved {:>11.1}  answered {:>8.3} %  p99 {:>10.1} µs  {}{}",
                s.rps,
                s.achieved_rps,
                s.answered_share * 100.0,
                s.p99_us,
                if s.held {
                    "held".to_string()
                } else {
                    format!("FAILED ({})", s.reason)
                },
                if s.attempt > 0 { "  (retry)" } else { "" }
            )?;
        }
        match self.best_rps {
            Some(best) => write!(f, "  highest rate that held: {best} rps")?,
            None => write!(f, "  no rate held (try a lower --start-rps)")?,
        }
        let why = match self.limited_by {
            "max_rps" => " (every step held up to --max-rps)",
            "answered" => " (limited by lost requests)",
            "p99" => " (limited by p99 latency)",
            "wrong" => " (stopped: wrong replies)",
            "loadgen" => " (limited by loadgen itself falling behind, not the target)",
            _ => "",
        };
        writeln!(f, "{why}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(growth: Growth) -> FindMaxConfig {
        FindMaxConfig {
            start_rps: 10_000,
            growth,
            max_rps: 1_000_000,
            step_duration: Duration::from_secs(1),
            p99_max: Duration::from_millis(1),
            min_answered: 0.999,
            refine_steps: 3,
            retries: 0,
        }
    }

    /// A target that holds up to `capacity` rps.
    fn step(rps: u64, capacity: u64) -> StepOutcome {
        let over = rps > capacity;
        StepOutcome {
            rps,
            achieved_rps: rps.min(capacity) as f64,
            answered_share: if over {
                capacity as f64 / rps as f64
            } else {
                1.0
            },
            p99_us: if over { 50_000.0 } else { 200.0 },
            wrong: false,
            generator_behind: false,
        }
    }

    fn run(mut fm: FindMax, capacity: u64) -> FindMaxReport {
        let mut guard = 0;
        while let Some(rps) = fm.next_rate() {
            fm.record(step(rps, capacity));
            guard += 1;
            assert!(guard < 50, "search does not end");
        }
        fm.report()
    }

    #[test]
    fn ramps_then_bisects() {
        let r = run(FindMax::new(cfg(Growth::Factor(1.5))), 120_000);
        let rates: Vec<u64> = r.steps.iter().map(|s| s.rps).collect();
        assert_eq!(
            &rates[..8],
            &[10_000, 15_000, 22_500, 33_750, 50_625, 75_938, 113_907, 170_861]
        );
        assert_eq!(rates.len(), 11, "{rates:?}");
        let best = r.best_rps.unwrap();
        assert!((113_907..=120_000).contains(&best), "{best}");
        assert!(r.failed_rps.unwrap() > 120_000);
        assert_eq!(r.limited_by, "answered");
    }

    #[test]
    fn increments_and_ceiling() {
        let mut c = cfg(Growth::Increment(20_000));
        c.max_rps = 50_000;
        let r = run(FindMax::new(c), 10_000_000);
        let rates: Vec<u64> = r.steps.iter().map(|s| s.rps).collect();
        assert_eq!(rates, [10_000, 30_000, 50_000]);
        assert_eq!(r.best_rps, Some(50_000));
        assert_eq!(r.limited_by, "max_rps");
    }

    #[test]
    fn p99_fails_every_step_so_it_descends_then_reports_nothing_held() {
        let mut fm = FindMax::new(cfg(Growth::Factor(2.0)));
        let mut rates = Vec::new();
        while let Some(rps) = fm.next_rate() {
            rates.push(rps);
            let mut s = step(rps, 1_000_000);
            s.p99_us = 1500.0;
            fm.record(s);
        }
        assert_eq!(rates, [10_000, 5_000, 2_500, 1_250, 625]);
        let r = fm.report();
        assert_eq!(r.best_rps, None);
        assert_eq!(r.failed_rps, Some(625));
        assert_eq!(r.limited_by, "p99");
        assert!(r.steps.iter().all(|s| !s.held));
        assert!(r.to_string().contains("no rate held"));
    }

    #[test]
    fn a_start_rate_too_high_descends_then_bisects_up() {
        let r = run(FindMax::new(cfg(Growth::Factor(1.5))), 7_000);
        let rates: Vec<u64> = r.steps.iter().map(|s| s.rps).collect();
        assert_eq!(&rates[..3], &[10_000, 5_000, 7_500], "{rates:?}");
        let best = r.best_rps.unwrap();
        assert!((5_000..=7_000).contains(&best), "{rates:?}");
        assert_eq!(r.failed_rps, Some(7_500));
    }

    #[test]
    fn a_failed_step_is_retried_and_a_blip_does_not_end_the_ramp() {
        let mut c = cfg(Growth::Factor(2.0));
        c.retries = 1;
        let mut fm = FindMax::new(c);
        fm.record(step(10_000, 1_000_000));
        // A blip at 20k: the same rate again, and it holds.
        let mut blip = step(20_000, 1_000_000);
        blip.answered_share = 0.9;
        fm.record(blip);
        assert_eq!(fm.next_rate(), Some(20_000));
        fm.record(step(20_000, 1_000_000));
        assert_eq!(fm.next_rate(), Some(40_000));
        // A real limit at 40k fails twice and then counts.
        fm.record(step(40_000, 30_000));
        assert_eq!(fm.next_rate(), Some(40_000));
        fm.record(step(40_000, 30_000));
        assert_eq!(fm.next_rate(), Some(30_000), "bisects 20k..40k");
        let r = fm.report();
        assert_eq!(r.best_rps, Some(20_000));
        assert_eq!(r.failed_rps, Some(40_000));
        let attempts: Vec<u32> = r.steps.iter().map(|s| s.attempt).collect();
        assert_eq!(attempts, [0, 0, 1, 0, 1]);
        assert!(r.to_string().contains("(retry)"));
    }

    #[test]
    fn wrong_replies_are_never_retried() {
        let mut c = cfg(Growth::Factor(2.0));
        c.retries = 3;
        let mut fm = FindMax::new(c);
        let mut s = step(10_000, 1_000_000);
        s.wrong = true;
        fm.record(s);
        assert_eq!(fm.next_rate(), None);
        assert_eq!(fm.report().limited_by, "wrong");
    }

    #[test]
    fn wrong_replies_stop_and_loadgen_limits_are_named() {
        let mut fm = FindMax::new(cfg(Growth::Factor(2.0)));
        fm.record(step(10_000, 1_000_000));
        let mut s = step(20_000, 1_000_000);
        s.generator_behind = true;
        fm.record(s);
        assert_eq!(fm.report().limited_by, "loadgen");
        let mut s = step(fm.next_rate().unwrap(), 1_000_000);
        s.wrong = true;
        fm.record(s);
        assert_eq!(fm.next_rate(), None);
        assert!(fm.report().to_string().contains("loadgen itself"));
    }
}
