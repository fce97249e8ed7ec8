//! `--find-max` over real runs: asks the [`FindMax`] controller for a rate,
//! runs one step at it (fresh sockets each step, so replies straggling in
//! from the previous step cannot be mistaken for this one's), and feeds the
//! outcome back until the search ends or is interrupted.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::findmax::{FindMax, FindMaxConfig, StepOutcome};
use crate::report::Report;
use crate::run::{run, Progress, RunConfig, RunError};

/// Runs the search. Returns the report of the highest step that held (or
/// of the step that saw wrong replies, or the last step if none held),
/// with the search's summary in [`Report::find_max`].
pub fn find_max(
    base: &RunConfig,
    cfg: FindMaxConfig,
    stop: &AtomicBool,
    on_step: &mut dyn FnMut(&Report),
    mut on_progress: Option<&mut dyn FnMut(&Progress)>,
) -> Result<Report, RunError> {
    let mut search = FindMax::new(cfg);
    let mut best: Option<Report> = None;
    let mut last: Option<Report> = None;
    while let Some(rps) = search.next_rate() {
        let step_cfg = RunConfig {
            rps,
            duration: cfg.step_duration,
            ..base.clone()
        };
        let progress = on_progress
            .as_mut()
            .map(|p| &mut **p as &mut dyn FnMut(&Progress));
        let report = run(&step_cfg, stop, progress)?;
        if report.interrupted || stop.load(Ordering::Relaxed) {
            // A cut-short step proves nothing either way.
            last.get_or_insert(report);
            break;
        }
        on_step(&report);
        search.record(StepOutcome {
            rps,
            achieved_rps: report.achieved_rps,
            answered_share: report.answered_share(),
            p99_us: report.latency_us.p99,
            wrong: report.saw_wrong(),
            generator_behind: report.generator_behind(),
        });
        let held = search.report().steps.last().is_some_and(|s| s.held);
        if report.saw_wrong() {
            last = Some(report);
            break;
        }
        // Every step that holds is above the previous best: the ramp only
        // climbs, and bisection probes between the best and a failure.
        if held {
            best = Some(report);
        } else {
            last = Some(report);
        }
    }
    let wrong = last.as_ref().is_some_and(|r| r.saw_wrong());
    let mut chosen =
        if wrong { last } else { best.or(last) }.expect("the search always runs a first step");
    chosen.find_max = Some(search.report());
    chosen.interrupted = stop.load(Ordering::Relaxed);
    Ok(chosen)
}
