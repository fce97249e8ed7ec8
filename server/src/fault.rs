//! Fault injection for tests: a server that answers late but is alive.
//!
//! With a delay set (`--fault-delay`, or at run time from
//! `--fault-delay-file` on SIGUSR1), every answer is held in a bounded
//! [`DelayQueue`] and sent when due, so the reactor never sleeps and keeps
//! reading, counting and answering on time as far as it is concerned. This
//! is how tests and the chaos soak make a "slow but not dead" server on a
//! kernel without `sch_netem`. It is not for production.
//!
//! Sans-io: the queue is fed answers and `now`, and says what is due and when
//! the reactor must wake up next.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ipcs_common::duration::{parse_duration, DurationError};

/// The longest delay accepted: longer would only hold memory for nothing;
/// any load balancer has given up on such a server long before.
pub const MAX_FAULT_DELAY: Duration = Duration::from_secs(60);

/// Why a fault delay (flag or file contents) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultDelayError {
    #[error(transparent)]
    Duration(#[from] DurationError),
    #[error("fault delay {0:?} is longer than the maximum of 60 s")]
    TooLong(Duration),
}

/// Parses a fault delay: a duration as `loadgen` spells them (`30ms`,
/// `0.5s`, `0` for none), surrounding whitespace (a file's newline)
/// ignored, at most [`MAX_FAULT_DELAY`].
pub fn parse_fault_delay(text: &str) -> Result<Duration, FaultDelayError> {
    let delay = parse_duration(text)?;
    if delay > MAX_FAULT_DELAY {
        return Err(FaultDelayError::TooLong(delay));
    }
    Ok(delay)
}

/// Answers held until they are due, oldest first.
///
/// All answers wait the same delay, so the order they arrive in is the order
/// they fall due: a FIFO is a deadline queue, and only its head needs
/// looking at. When the delay is lowered at run time, a new answer is not
/// due before the one ahead of it (its due time is clamped to the tail's),
/// which keeps the FIFO ordered: the change takes full effect once the
/// answers already held, at most the old delay's worth, have left.
#[derive(Debug)]
pub struct DelayQueue<T> {
    delay: Duration,
    capacity: usize,
    held: VecDeque<(Instant, T)>,
}

impl<T> DelayQueue<T> {
    /// An empty queue holding at most `capacity` answers (at least 1).
    pub fn new(delay: Duration, capacity: usize) -> DelayQueue<T> {
        DelayQueue {
            delay,
            capacity: capacity.max(1),
            held: VecDeque::new(),
        }
    }

    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Changes the delay of answers held from now on.
    pub fn set_delay(&mut self, delay: Duration) {
        self.delay = delay;
    }

    /// Whether an answer made now must go through the queue: a delay is
    /// set, or answers are still held (sending past them would reorder).
    pub fn holds_answers(&self) -> bool {
        !self.delay.is_zero() || !self.held.is_empty()
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Holds `answer`, made at `now`, until `now + delay`. A full queue
    /// refuses it and gives it back (the caller counts the drop).
    pub fn push(&mut self, now: Instant, answer: T) -> Result<(), T> {
        if self.held.len() >= self.capacity {
            return Err(answer);
        }
        let mut due = now + self.delay;
        if let Some(&(tail, _)) = self.held.back() {
            due = due.max(tail);
        }
        self.held.push_back((due, answer));
        Ok(())
    }

    /// When the oldest held answer falls due.
    pub fn next_due(&self) -> Option<Instant> {
        self.held.front().map(|&(due, _)| due)
    }

    /// How long the reactor may sleep before an answer falls due (`None`:
    /// nothing held).
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.next_due()
            .map(|due| due.saturating_duration_since(now))
    }

    /// The oldest answer, if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        match self.held.front() {
            Some(&(due, _)) if due <= now => self.held.pop_front().map(|(_, answer)| answer),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn answers_leave_no_sooner_than_the_delay_and_in_order() {
        let t0 = Instant::now();
        let mut q = DelayQueue::new(30 * MS, 8);
        assert!(q.holds_answers());
        assert_eq!(q.timeout(t0), None);
        q.push(t0, 'a').unwrap();
        q.push(t0 + 5 * MS, 'b').unwrap();
        q.push(t0 + 5 * MS, 'c').unwrap();
        assert_eq!(q.next_due(), Some(t0 + 30 * MS));
        assert_eq!(q.timeout(t0 + 10 * MS), Some(20 * MS));
        assert_eq!(q.pop_due(t0 + 29 * MS), None);
        assert_eq!(q.pop_due(t0 + 30 * MS), Some('a'));
        assert_eq!(q.pop_due(t0 + 30 * MS), None);
        assert_eq!(q.timeout(t0 + 30 * MS), Some(5 * MS));
        // Late wake-ups release everything due, still in order.
        assert_eq!(q.pop_due(t0 + 100 * MS), Some('b'));
        assert_eq!(q.pop_due(t0 + 100 * MS), Some('c'));
        assert_eq!(q.pop_due(t0 + 100 * MS), None);
        assert!(q.is_empty());
        assert_eq!(q.timeout(t0 + 100 * MS), None);
    }

    #[test]
    fn a_full_queue_refuses_and_gives_the_answer_back() {
        let t0 = Instant::now();
        let mut q = DelayQueue::new(10 * MS, 2);
        q.push(t0, 1).unwrap();
        q.push(t0, 2).unwrap();
        assert_eq!(q.push(t0, 3), Err(3));
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop_due(t0 + 10 * MS), Some(1));
        q.push(t0 + 10 * MS, 4).unwrap();
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn no_delay_and_nothing_held_means_answers_go_straight_out() {
        let t0 = Instant::now();
        let mut q: DelayQueue<u8> = DelayQueue::new(Duration::ZERO, 4);
        assert!(!q.holds_answers());
        q.set_delay(30 * MS);
        assert!(q.holds_answers());
        q.push(t0, 1).unwrap();
        q.set_delay(Duration::ZERO);
        // Turned off, but one answer is still held: the next must queue
        // behind it, not overtake it.
        assert!(q.holds_answers());
        q.push(t0 + MS, 2).unwrap();
        assert_eq!(q.pop_due(t0 + 29 * MS), None);
        assert_eq!(q.pop_due(t0 + 30 * MS), Some(1));
        assert_eq!(q.pop_due(t0 + 30 * MS), Some(2));
        assert!(!q.holds_answers());
    }

    #[test]
    fn raising_the_delay_applies_to_new_answers_only() {
        let t0 = Instant::now();
        let mut q = DelayQueue::new(10 * MS, 4);
        q.push(t0, 'a').unwrap();
        q.set_delay(50 * MS);
        q.push(t0, 'b').unwrap();
        assert_eq!(q.pop_due(t0 + 10 * MS), Some('a'));
        assert_eq!(q.pop_due(t0 + 49 * MS), None);
        assert_eq!(q.pop_due(t0 + 50 * MS), Some('b'));
    }

    #[test]
    fn capacity_is_at_least_one() {
        let mut q = DelayQueue::new(MS, 0);
        let t0 = Instant::now();
        q.push(t0, ()).unwrap();
        assert_eq!(q.push(t0, ()), Err(()));
    }

    #[test]
    fn fault_delays_parse_like_loadgen_durations() {
        assert_eq!(parse_fault_delay("30ms"), Ok(30 * MS));
        assert_eq!(parse_fault_delay("30ms\n"), Ok(30 * MS));
        assert_eq!(parse_fault_delay("0"), Ok(Duration::ZERO));
        assert_eq!(parse_fault_delay("0.5s"), Ok(500 * MS));
        assert_eq!(parse_fault_delay("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(
            parse_fault_delay("2m"),
            Err(FaultDelayError::TooLong(Duration::from_secs(120)))
        );
        for bad in ["", "fast", "-1ms", "30 parsecs"] {
            assert!(
                matches!(parse_fault_delay(bad), Err(FaultDelayError::Duration(_))),
                "{bad}"
            );
        }
    }
}
