//! Passive health: when a server is taken out of rotation. Slow is not
//! dead. The rules (docs/LB.md, "Failure handling"):
//!
//! - **A failure is an event, not a record.** An attempt that times out is
//!   held against its server only if the server has answered nothing since
//!   that attempt was sent (it is *silent*), and attempts sent at the same
//!   instant (one frame, one batch) are one event.
//! - **Dead means silent while others answer.** A server is ejected when it
//!   has been silent for its silence window and for at least
//!   `after_failures` events, *and* another server answered during that
//!   time. The window scales with the server's own attempt deadline, as
//!   accrual failure detectors scale with the observed intervals:
//!   [`SILENCE_DEADLINES`] deadlines, within `silence_min..=silence`. On a
//!   quiet path (5 ms deadlines) a dead server is out after 100 ms; on a
//!   path with 50 ms stalls, only silence of 400 ms or more counts. When nobody answers (the whole host is slow), nobody is
//!   ejected; a server that keeps answering, however late, is never
//!   ejected (its deadline grows instead, see [`crate::rtt`]).
//! - **Bad answers are relative.** A server whose error answers are at
//!   least `error_percent` of at least `error_min_volume` answers in an
//!   interval, while the other servers' share is less than half of its, is
//!   an outlier (Envoy's failure-percentage detection).
//! - **Ejections are capped** at `max_ejected_percent` of the listed
//!   servers (at least one), and the last server in rotation is never
//!   ejected (the caller checks both). A server silent while another
//!   answered is ejected past the cap: that is not a judgement relative to
//!   the others but a dead server, and leaving it in rotation only turns
//!   its share into retries.
//! - **Cool-down and probation:** an ejected server returns after
//!   `cooldown`, doubling on each ejection in a row up to `max_cooldown`;
//!   back in rotation its first silent event ejects it again, its first
//!   answer clears its record.

use std::time::{Duration, Instant};

/// A server's silence window is this many of its attempt deadlines.
pub const SILENCE_DEADLINES: u32 = 8;

/// When a server is taken out of rotation, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EjectionPolicy {
    /// Silent events (timeouts with no answer since their send) before a
    /// server can be taken for dead; at least 1.
    pub after_failures: u32,
    /// The longest silence window: a server silent this long (while
    /// others answer) is dead whatever its deadline.
    pub silence: Duration,
    /// The shortest silence window, however short its deadline.
    pub silence_min: Duration,
    /// Error answers, in percent of a server's answers in one interval,
    /// that make it an outlier.
    pub error_percent: u32,
    /// Answers a server must give in an interval before its error share is
    /// judged.
    pub error_min_volume: u32,
    /// How often error shares are judged.
    pub interval: Duration,
    /// The most servers ejected at once, in percent of those listed (at
    /// least one server; see the module docs for the silent exception).
    pub max_ejected_percent: u32,
    /// The first cool-down.
    pub cooldown: Duration,
    /// Cool-downs double on each repeated ejection up to this.
    pub max_cooldown: Duration,
}

impl Default for EjectionPolicy {
    fn default() -> Self {
        EjectionPolicy {
            after_failures: 3,
            silence: Duration::from_millis(500),
            silence_min: Duration::from_millis(100),
            error_percent: 50,
            error_min_volume: 20,
            interval: Duration::from_secs(1),
            max_ejected_percent: 50,
            cooldown: Duration::from_secs(5),
            max_cooldown: Duration::from_secs(60),
        }
    }
}

impl EjectionPolicy {
    /// The silence window of a server whose attempt deadline is `deadline`,
    /// learnt from round trips measured over `measured`. Until the LB has
    /// watched a server for the longest window, its deadline has not seen
    /// the path's stalls (a cold LB, a new server), so the longest window
    /// applies: an accrual detector with no history cannot scale down.
    pub fn silence_window(&self, deadline: Duration, measured: Duration) -> Duration {
        let longest = self.silence.max(self.silence_min);
        if measured < longest {
            return longest;
        }
        deadline
            .saturating_mul(SILENCE_DEADLINES)
            .clamp(self.silence_min, longest)
    }

    /// How many of `listed` servers may be ejected at once.
    pub fn max_ejected(&self, listed: usize) -> usize {
        (listed * self.max_ejected_percent as usize / 100).max(1)
    }
}

/// What a timed-out attempt says about its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutVerdict {
    /// The server answered since the attempt was sent: alive, slow.
    Slow,
    /// The server has answered nothing since; not (yet) taken for dead.
    Silent,
    /// Silent long enough, and others answered meanwhile: eject it if the
    /// caller's caps allow.
    Dead,
    /// The server is already out of rotation; nothing changes.
    Ejected,
}

/// The passive health of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Health {
    last_answer: Option<Instant>,
    /// Send time of the oldest attempt that timed out with no answer since.
    silent_since: Option<Instant>,
    /// Distinct silent events since the last answer.
    silent_events: u32,
    /// Send time of the last silent event (attempts sent together count
    /// once).
    last_event_sent: Option<Instant>,
    ejected_until: Option<Instant>,
    /// Ejections since the server last answered while in rotation; sets
    /// the cool-down and marks probation.
    level: u32,
    /// This interval's answers and error answers.
    answers: u32,
    errors: u32,
}

impl Health {
    /// Whether the server may be picked at `now`.
    pub fn available(&self, now: Instant) -> bool {
        !self.is_ejected(now)
    }

    pub fn is_ejected(&self, now: Instant) -> bool {
        matches!(self.ejected_until, Some(until) if now < until)
    }

    /// Until when the server is out of rotation, if it is at `now`.
    pub fn ejected_until(&self, now: Instant) -> Option<Instant> {
        self.ejected_until.filter(|until| now < *until)
    }

    /// When the server last answered anything.
    pub fn last_answer(&self) -> Option<Instant> {
        self.last_answer
    }

    /// Silent events since its last answer.
    pub fn silent_events(&self) -> u32 {
        self.silent_events
    }

    /// The server answered an attempt (a result or an error record).
    pub fn on_answer(&mut self, now: Instant, error: bool) {
        self.last_answer = Some(now);
        self.silent_since = None;
        self.silent_events = 0;
        self.last_event_sent = None;
        if !self.is_ejected(now) {
            self.level = 0;
        }
        self.answers = self.answers.saturating_add(1);
        if error {
            self.errors = self.errors.saturating_add(1);
        }
    }

    /// An attempt sent at `sent` timed out at `now`; `window` is the
    /// server's silence window ([`EjectionPolicy::silence_window`]).
    /// `others_answered` tells whether another server answered after a
    /// given instant.
    pub fn on_timeout(
        &mut self,
        sent: Instant,
        now: Instant,
        window: Duration,
        policy: &EjectionPolicy,
        others_answered: impl FnOnce(Instant) -> bool,
    ) -> TimeoutVerdict {
        if self.is_ejected(now) {
            // Attempts sent before the ejection may still time out.
            return TimeoutVerdict::Ejected;
        }
        if self.last_answer.is_some_and(|at| at >= sent) {
            return TimeoutVerdict::Slow;
        }
        let since = *self.silent_since.get_or_insert(sent);
        if self.last_event_sent.is_none_or(|at| sent > at) {
            self.silent_events = self.silent_events.saturating_add(1);
            self.last_event_sent = Some(sent);
        }
        let on_probation = self.level > 0;
        let long_enough = self.silent_events >= policy.after_failures.max(1)
            && now.saturating_duration_since(since) >= window;
        if (on_probation || long_enough) && others_answered(since) {
            TimeoutVerdict::Dead
        } else {
            TimeoutVerdict::Silent
        }
    }

    /// Takes the server out of rotation; returns the cool-down.
    pub fn eject(&mut self, now: Instant, policy: &EjectionPolicy) -> Duration {
        let cooldown = policy
            .cooldown
            .saturating_mul(1u32 << self.level.min(16))
            .min(policy.max_cooldown.max(policy.cooldown));
        self.level = self.level.saturating_add(1);
        self.silent_since = None;
        self.silent_events = 0;
        self.last_event_sent = None;
        self.ejected_until = Some(now + cooldown);
        cooldown
    }

    /// This interval's error share in percent, if the server answered at
    /// least `min_volume` times; then starts the next interval.
    pub fn take_error_share(&mut self, min_volume: u32) -> Option<u32> {
        let share = (self.answers >= min_volume.max(1))
            .then(|| (u64::from(self.errors) * 100 / u64::from(self.answers)) as u32);
        self.answers = 0;
        self.errors = 0;
        share
    }
}

#[cfg(test)]
#[path = "outlier_tests.rs"]
mod tests;
