//! The decisions of an LB node's supervisor, as a state machine fed events
//! and `now` (sans-I/O, tested without processes or sleeps); `run.rs` only
//! starts and reaps the processes and writes the down file.
//!
//! A node runs two children: its `ipcs-lb` and its keepalived. keepalived
//! watches the node's down file (`track_file`): the node may hold the VIP
//! only while the file says 0. The rules:
//!
//! * The file says 1 from the moment the LB is (re)started until it has
//!   answered a real request (1+1 on the node's own address), and from the
//!   moment it exits: written *before* anything else is done about the
//!   exit, so keepalived gives the address up at once.
//! * A dead child is restarted after a back-off that starts at
//!   [`Backoff::first`] and doubles while it keeps dying soon after its
//!   start, up to [`Backoff::max`] (a crash loop costs little CPU and
//!   never spins); a child that ran [`Backoff::reset_after`] starts afresh.
//! * An LB that has not answered [`STARTUP_PROBE_LIMIT`] after its start is
//!   killed and restarted (it would never let the node take part).
//! * On stop: both children are asked to stop (SIGTERM: the LB drains,
//!   keepalived hands the address over), killed after [`STOP_GRACE`], and
//!   the supervisor exits once both are gone.

use std::time::{Duration, Instant};

/// How often a starting LB is asked 1+1 until it answers.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// A starting LB that has not answered within this is restarted.
pub const STARTUP_PROBE_LIMIT: Duration = Duration::from_secs(30);
/// After SIGTERM, how long the children get before SIGKILL: longer than the
/// LB's default drain timeout (5 s).
pub const STOP_GRACE: Duration = Duration::from_secs(6);

/// Restart back-off of one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    /// A child that ran at least this long before dying restarts after
    /// `first` again.
    pub reset_after: Duration,
}

impl Backoff {
    pub const DEFAULT: Backoff = Backoff {
        first: Duration::from_millis(200),
        max: Duration::from_secs(5),
        reset_after: Duration::from_secs(10),
    };
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::DEFAULT
    }
}

/// The node's two children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    Lb,
    Keepalived,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A child exited (or could not be started).
    Exited(Child),
    /// The probe of a starting LB came back: answered or not.
    ProbeDone { answered: bool },
    /// SIGTERM or SIGINT.
    Stop,
}

/// What the runner must do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Write the down file: `true` = 1 (the node must not hold the VIP).
    MarkDown(bool),
    Start(Child),
    /// Ask the LB 1+1 on the node's address (reported by `ProbeDone`).
    Probe,
    /// SIGTERM to a running child.
    Terminate(Child),
    /// SIGKILL to a running child.
    Kill(Child),
    /// Both children are gone after a stop: exit.
    Exit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Started at `since`; the LB has not answered yet.
    Starting {
        since: Instant,
    },
    Running {
        since: Instant,
    },
    /// Dead; starts again at `at`.
    Waiting {
        at: Instant,
    },
    /// Stopping: no restart.
    Gone,
}

#[derive(Debug, Clone, Copy)]
struct ChildState {
    phase: Phase,
    delay: Duration,
}

impl ChildState {
    /// Started and not seen to exit.
    fn alive(&self) -> bool {
        matches!(self.phase, Phase::Starting { .. } | Phase::Running { .. })
    }
}

/// The supervisor's state.
#[derive(Debug)]
pub struct NodeCore {
    backoff: Backoff,
    lb: ChildState,
    keepalived: ChildState,
    probe_in_flight: bool,
    next_probe: Instant,
    /// When the stop began (SIGKILL after [`STOP_GRACE`]).
    stopping: Option<Instant>,
    killed: bool,
}

impl NodeCore {
    /// A new node: the actions that start it (down file 1, keepalived, LB).
    pub fn start(now: Instant, backoff: Backoff) -> (NodeCore, Vec<Action>) {
        let child = ChildState {
            phase: Phase::Starting { since: now },
            delay: backoff.first,
        };
        let core = NodeCore {
            backoff,
            lb: child,
            keepalived: ChildState {
                phase: Phase::Running { since: now },
                ..child
            },
            probe_in_flight: false,
            next_probe: now,
            stopping: None,
            killed: false,
        };
        let actions = vec![
            Action::MarkDown(true),
            Action::Start(Child::Keepalived),
            Action::Start(Child::Lb),
        ];
        (core, actions)
    }

    fn child(&mut self, which: Child) -> &mut ChildState {
        match which {
            Child::Lb => &mut self.lb,
            Child::Keepalived => &mut self.keepalived,
        }
    }

    /// Whether the node is up: its LB answered and runs.
    pub fn lb_up(&self) -> bool {
        matches!(self.lb.phase, Phase::Running { .. })
    }

    /// Whether a stop is under way.
    pub fn stopping(&self) -> bool {
        self.stopping.is_some()
    }

    /// Feeds one event.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Exited(which) => {
                if which == Child::Lb {
                    // First: keepalived demotes the node on this write.
                    // A probe in flight still reports (ProbeDone), and
                    // counts only while a live LB is starting.
                    out.push(Action::MarkDown(true));
                }
                let backoff = self.backoff;
                let stopping = self.stopping.is_some();
                let c = self.child(which);
                if stopping {
                    c.phase = Phase::Gone;
                } else {
                    let ran = match c.phase {
                        Phase::Starting { since } | Phase::Running { since } => {
                            now.saturating_duration_since(since)
                        }
                        _ => Duration::ZERO,
                    };
                    if ran >= backoff.reset_after {
                        c.delay = backoff.first;
                    }
                    c.phase = Phase::Waiting { at: now + c.delay };
                    c.delay = (c.delay * 2).min(backoff.max);
                }
                if stopping && !self.lb.alive() && !self.keepalived.alive() {
                    out.push(Action::Exit);
                }
            }
            Event::ProbeDone { answered } => {
                self.probe_in_flight = false;
                if let Phase::Starting { .. } = self.lb.phase {
                    if answered && self.stopping.is_none() {
                        self.lb.phase = Phase::Running { since: now };
                        out.push(Action::MarkDown(false));
                    } else {
                        self.next_probe = now + PROBE_INTERVAL;
                    }
                }
            }
            Event::Stop => {
                if self.stopping.is_none() {
                    self.stopping = Some(now);
                    out.push(Action::MarkDown(true));
                    for which in [Child::Lb, Child::Keepalived] {
                        let c = self.child(which);
                        if c.alive() {
                            out.push(Action::Terminate(which));
                        } else {
                            c.phase = Phase::Gone;
                        }
                    }
                    if !self.lb.alive() && !self.keepalived.alive() {
                        out.push(Action::Exit);
                    }
                }
            }
        }
        out
    }

    /// Time-driven work: restarts that are due, probes, the startup limit,
    /// SIGKILL after the stop grace.
    pub fn poll(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(since) = self.stopping {
            if !self.killed && now.saturating_duration_since(since) >= STOP_GRACE {
                self.killed = true;
                for which in [Child::Lb, Child::Keepalived] {
                    if self.child(which).alive() {
                        out.push(Action::Kill(which));
                    }
                }
            }
            return out;
        }
        for which in [Child::Keepalived, Child::Lb] {
            let c = self.child(which);
            if let Phase::Waiting { at } = c.phase {
                if now >= at {
                    if which == Child::Keepalived {
                        // keepalived needs no probe: it runs or exits.
                        c.phase = Phase::Running { since: now };
                    } else {
                        c.phase = Phase::Starting { since: now };
                        self.next_probe = now;
                    }
                    out.push(Action::Start(which));
                }
            }
        }
        if let Phase::Starting { since } = self.lb.phase {
            if now.saturating_duration_since(since) >= STARTUP_PROBE_LIMIT {
                // Its exit restarts it (with back-off).
                out.push(Action::Kill(Child::Lb));
                self.lb.phase = Phase::Starting { since: now };
            } else if !self.probe_in_flight && now >= self.next_probe {
                self.probe_in_flight = true;
                out.push(Action::Probe);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn up(t0: Instant) -> NodeCore {
        let (mut core, _) = NodeCore::start(t0, Backoff::default());
        assert_eq!(core.poll(t0), vec![Action::Probe]);
        assert_eq!(
            core.handle(Event::ProbeDone { answered: true }, t0 + ms(5)),
            vec![Action::MarkDown(false)]
        );
        core
    }

    #[test]
    fn starts_down_and_comes_up_once_the_lb_answers() {
        let t0 = Instant::now();
        let (mut core, start) = NodeCore::start(t0, Backoff::default());
        assert_eq!(
            start,
            vec![
                Action::MarkDown(true),
                Action::Start(Child::Keepalived),
                Action::Start(Child::Lb)
            ]
        );
        assert_eq!(core.poll(t0), vec![Action::Probe]);
        // One probe at a time.
        assert!(core.poll(t0 + ms(50)).is_empty());
        assert!(core
            .handle(Event::ProbeDone { answered: false }, t0 + ms(60))
            .is_empty());
        assert!(!core.lb_up());
        assert!(core.poll(t0 + ms(100)).is_empty(), "next probe not due yet");
        assert_eq!(core.poll(t0 + ms(160)), vec![Action::Probe]);
        assert_eq!(
            core.handle(Event::ProbeDone { answered: true }, t0 + ms(170)),
            vec![Action::MarkDown(false)]
        );
        assert!(core.lb_up());
        assert!(core.poll(t0 + ms(500)).is_empty(), "no probes once up");
    }

    #[test]
    fn a_dead_lb_marks_the_node_down_first_then_restarts_after_the_backoff() {
        let t0 = Instant::now();
        let mut core = up(t0);
        let t1 = t0 + ms(1000);
        assert_eq!(
            core.handle(Event::Exited(Child::Lb), t1),
            vec![Action::MarkDown(true)]
        );
        assert!(core.poll(t1 + ms(199)).is_empty());
        assert_eq!(
            core.poll(t1 + ms(200)),
            vec![Action::Start(Child::Lb), Action::Probe]
        );
        assert_eq!(
            core.handle(Event::ProbeDone { answered: true }, t1 + ms(250)),
            vec![Action::MarkDown(false)]
        );
    }

    #[test]
    fn a_crash_loop_backs_off_and_a_long_run_resets_it() {
        let t0 = Instant::now();
        let mut core = up(t0);
        let mut t = t0 + ms(100);
        let mut delays = Vec::new();
        for _ in 0..7 {
            core.handle(Event::Exited(Child::Lb), t);
            let start = t;
            loop {
                t += ms(10);
                if core.poll(t).contains(&Action::Start(Child::Lb)) {
                    break;
                }
            }
            delays.push((t - start).as_millis() / 100 * 100);
            t += ms(20); // dies again soon
        }
        assert_eq!(delays, vec![200, 400, 800, 1600, 3200, 5000, 5000]);
        // Answers and runs long: the next death waits only the first delay.
        core.handle(Event::ProbeDone { answered: true }, t);
        t += Duration::from_secs(11);
        core.handle(Event::Exited(Child::Lb), t);
        assert_eq!(
            core.poll(t + ms(200)),
            vec![Action::Start(Child::Lb), Action::Probe]
        );
    }

    #[test]
    fn keepalived_is_restarted_without_touching_the_lb() {
        let t0 = Instant::now();
        let mut core = up(t0);
        let t1 = t0 + ms(500);
        assert!(core.handle(Event::Exited(Child::Keepalived), t1).is_empty());
        assert_eq!(
            core.poll(t1 + ms(200)),
            vec![Action::Start(Child::Keepalived)]
        );
        assert!(core.lb_up());
    }

    #[test]
    fn an_lb_that_never_answers_is_killed_after_the_startup_limit() {
        let t0 = Instant::now();
        let (mut core, _) = NodeCore::start(t0, Backoff::default());
        let mut t = t0;
        let mut killed = false;
        while t < t0 + STARTUP_PROBE_LIMIT + ms(200) {
            for a in core.poll(t) {
                match a {
                    Action::Probe => {
                        core.handle(Event::ProbeDone { answered: false }, t);
                    }
                    Action::Kill(Child::Lb) => killed = true,
                    other => panic!("unexpected {other:?}"),
                }
            }
            t += ms(50);
        }
        assert!(killed);
    }

    #[test]
    fn stop_terminates_both_kills_after_the_grace_and_exits_when_both_are_gone() {
        let t0 = Instant::now();
        let mut core = up(t0);
        let t1 = t0 + ms(100);
        assert_eq!(
            core.handle(Event::Stop, t1),
            vec![
                Action::MarkDown(true),
                Action::Terminate(Child::Lb),
                Action::Terminate(Child::Keepalived)
            ]
        );
        assert!(core.poll(t1 + ms(100)).is_empty());
        assert_eq!(
            core.handle(Event::Exited(Child::Lb), t1 + ms(200)),
            vec![Action::MarkDown(true)]
        );
        assert!(
            core.poll(t1 + ms(300)).is_empty(),
            "no restart while stopping"
        );
        assert_eq!(
            core.poll(t1 + STOP_GRACE),
            vec![Action::Kill(Child::Keepalived)]
        );
        assert!(
            core.poll(t1 + STOP_GRACE + ms(10)).is_empty(),
            "one SIGKILL"
        );
        assert_eq!(
            core.handle(Event::Exited(Child::Keepalived), t1 + STOP_GRACE + ms(20)),
            vec![Action::Exit]
        );
    }

    #[test]
    fn a_probe_answer_after_the_lb_died_does_not_mark_it_up() {
        let t0 = Instant::now();
        let (mut core, _) = NodeCore::start(t0, Backoff::default());
        assert_eq!(core.poll(t0), vec![Action::Probe]);
        core.handle(Event::Exited(Child::Lb), t0 + ms(10));
        assert!(core
            .handle(Event::ProbeDone { answered: true }, t0 + ms(20))
            .is_empty());
        assert!(!core.lb_up());
    }
}
