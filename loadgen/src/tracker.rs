//! The receiving side's bookkeeping for one socket: classifies every
//! datagram that comes back (answered, wrong, late, duplicate, error,
//! malformed) and declares requests lost once their timeout has passed.
//!
//! It shares nothing with the sending side but the number of requests
//! issued so far on the socket: the expected answer and the scheduled time
//! of any request follow from the [`Plan`] (see [`crate::codec`]). Latency
//! is measured from the *scheduled* time, so a stall of the generator or of
//! the system under test shows up in full (no coordinated omission).
//!
//! State is one ring of `window` entries remembering which sequence numbers
//! were answered, and `swept`: every request below it is resolved (answered
//! or counted lost). Requests that fall more than `window` behind the newest
//! one are declared lost, which keeps memory bounded whatever the target
//! does; the window is sized to hold two timeouts' worth of requests.

use std::time::{Duration, Instant};

use ipcs_common::wire::{Reply, Response, Status};

use crate::codec::{candidates, tag_of};
use crate::schedule::Plan;
use crate::stats::Stats;

/// Smallest and largest ring sizes (entries of 8 bytes).
const MIN_WINDOW: u64 = 1 << 12;
const MAX_WINDOW: u64 = 1 << 22;

/// What one received datagram was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The correct answer to a request still in time.
    Answered { latency: Duration, measured: bool },
    /// A value that is not the answer of the request its tag names.
    Wrong,
    /// A correct answer after the timeout.
    Late,
    /// A correct answer to a request answered before.
    Duplicate,
    /// An HSMAP error reply (it names no request).
    Error(Status),
    /// Neither a reply nor an error reply.
    Malformed,
}

/// Bookkeeping of one socket's requests.
#[derive(Debug, Clone)]
pub struct Tracker {
    worker: u32,
    local: u32,
    /// `seq + 1` of the answered request occupying each ring entry.
    answered: Vec<u64>,
    mask: u64,
    swept: u64,
}

impl Tracker {
    /// Tracks worker `worker`'s socket `local` with a ring of `window`
    /// entries (rounded up to a power of two, clamped to sane bounds).
    pub fn new(worker: u32, local: u32, window: u64) -> Tracker {
        let window = window.clamp(MIN_WINDOW, MAX_WINDOW).next_power_of_two();
        Tracker {
            worker,
            local,
            answered: vec![0; window as usize],
            mask: window - 1,
            swept: 0,
        }
    }

    /// A window holding two timeouts' worth of one socket's requests.
    pub fn window_for(rps: u64, sockets: u32, timeout: Duration) -> u64 {
        let per_socket = rps as f64 / f64::from(sockets.max(1));
        (2.0 * per_socket * timeout.as_secs_f64()) as u64 + 1024
    }

    pub fn window(&self) -> u64 {
        self.mask + 1
    }

    /// Every request below this sequence number is resolved.
    pub fn swept(&self) -> u64 {
        self.swept
    }

    /// Whether every request issued so far is resolved.
    pub fn is_resolved(&self, issued: u64) -> bool {
        self.swept >= issued
    }

    fn is_answered(&self, seq: u64) -> bool {
        self.answered[(seq & self.mask) as usize] == seq + 1
    }

    /// Classifies one datagram received at `now`, `issued` being how many
    /// requests the socket had been given to send.
    pub fn on_datagram(
        &mut self,
        plan: &Plan,
        bytes: &[u8],
        now: Instant,
        issued: u64,
        stats: &mut Stats,
    ) -> Outcome {
        let warmup = now < plan.measure_start();
        match Response::parse_bytes(bytes) {
            Ok(Response::Reply(reply)) => self.on_reply(plan, reply, now, issued, stats),
            Ok(Response::Error(status)) => {
                if !warmup {
                    stats.record_error(status.to_u8());
                }
                Outcome::Error(status)
            }
            Err(_) => {
                stats.malformed += 1;
                Outcome::Malformed
            }
        }
    }

    /// Classifies one reply.
    pub fn on_reply(
        &mut self,
        plan: &Plan,
        reply: Reply,
        now: Instant,
        issued: u64,
        stats: &mut Stats,
    ) -> Outcome {
        let warmup = now < plan.measure_start();
        let layout = &plan.layout;
        let matched = candidates(tag_of(reply.result), issued, self.window())
            .map(|seq| (seq, layout.index(self.worker, self.local, seq)))
            .find(|(_, k)| plan.request(layout.slot(*k)).answer() == reply.result);
        let Some((seq, k)) = matched else {
            stats.record_wrong(reply.server_id, warmup);
            return Outcome::Wrong;
        };
        let measured = plan.schedule.is_measured(k);
        let outcome = if self.is_answered(seq) {
            Outcome::Duplicate
        } else if seq < self.swept {
            Outcome::Late
        } else {
            let latency = now.saturating_duration_since(plan.due_at(k));
            if latency > plan.timeout {
                // Left for `sweep` to count as lost.
                Outcome::Late
            } else {
                self.answered[(seq & self.mask) as usize] = seq + 1;
                if measured {
                    stats.record_answered(latency, reply.server_id);
                }
                Outcome::Answered { latency, measured }
            }
        };
        if measured {
            match outcome {
                Outcome::Late => stats.late += 1,
                Outcome::Duplicate => stats.duplicate += 1,
                _ => {}
            }
        }
        outcome
    }

    /// Resolves, in order, every request that is answered or whose timeout
    /// has passed by `now`, counting the unanswered measured ones as lost.
    pub fn sweep(&mut self, plan: &Plan, now: Instant, issued: u64, stats: &mut Stats) {
        while self.swept < issued {
            let seq = self.swept;
            if !self.is_answered(seq) {
                let k = plan.layout.index(self.worker, self.local, seq);
                let expired = plan.due_at(k) + plan.timeout <= now;
                let out_of_window = issued - seq > self.window();
                if !expired && !out_of_window {
                    break;
                }
                if plan.schedule.is_measured(k) {
                    stats.record_lost(
                        plan.due_at(k)
                            .saturating_duration_since(plan.measure_start()),
                    );
                }
            }
            self.swept += 1;
        }
    }

    /// The earliest time at which [`sweep`](Self::sweep) could resolve
    /// something more, if a request is pending.
    pub fn next_expiry(&self, plan: &Plan, issued: u64) -> Option<Instant> {
        (self.swept < issued).then(|| {
            let k = plan.layout.index(self.worker, self.local, self.swept);
            plan.due_at(k) + plan.timeout
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::OperandCodec;
    use crate::mix::Mix;
    use crate::schedule::Schedule;

    const MS: Duration = Duration::from_millis(1);

    /// 1000 rps on one socket, 10 ms warm-up then 1 s measured, 100 ms timeout.
    fn plan() -> Plan {
        Plan {
            start: Instant::now(),
            schedule: Schedule::new(1000, 10 * MS, 1000 * MS),
            layout: crate::schedule::Layout::new(1, 1).unwrap(),
            codec: OperandCodec::new(99, Mix::default()),
            timeout: 100 * MS,
        }
    }

    fn reply_to(plan: &Plan, k: u64) -> Reply {
        Reply {
            result: plan.request(plan.layout.slot(k)).answer(),
            server_id: 7,
        }
    }

    #[test]
    fn latency_counts_from_the_scheduled_time() {
        let plan = plan();
        let mut t = Tracker::new(0, 0, 0);
        let mut stats = Stats::default();
        // Request 20 was due at 20 ms; the generator stalled and sent it at
        // 60 ms; the reply came at 65 ms: latency is 45 ms, not 5 ms.
        let now = plan.start + 65 * MS;
        let out = t.on_reply(&plan, reply_to(&plan, 20), now, 61, &mut stats);
        assert_eq!(
            out,
            Outcome::Answered {
                latency: 45 * MS,
                measured: true
            }
        );
        assert_eq!(stats.answered, 1);
        assert_eq!(stats.per_server[&7], 1);
        let p = stats.latency.value_at_quantile(1.0);
        assert!((44_900_000..45_100_000).contains(&p), "{p}");
    }

    #[test]
    fn warmup_requests_are_not_measured() {
        let plan = plan();
        let mut t = Tracker::new(0, 0, 0);
        let mut stats = Stats::default();
        let out = t.on_reply(
            &plan,
            reply_to(&plan, 3),
            plan.start + 4 * MS,
            4,
            &mut stats,
        );
        assert!(matches!(
            out,
            Outcome::Answered {
                measured: false,
                ..
            }
        ));
        assert_eq!(stats.answered, 0);
        t.sweep(&plan, plan.start + 500 * MS, 10, &mut stats);
        assert_eq!(stats.lost, 0, "unanswered warm-up requests are not lost");
        assert_eq!(t.swept(), 10);
    }

    #[test]
    fn wrong_values_are_caught() {
        let plan = plan();
        let mut t = Tracker::new(0, 0, 0);
        let mut stats = Stats::default();
        let now = plan.start + 30 * MS;
        let mut bad = reply_to(&plan, 25);
        bad.result += 1;
        assert_eq!(t.on_reply(&plan, bad, now, 30, &mut stats), Outcome::Wrong);
        // A tag that names a request not sent yet.
        let future = reply_to(&plan, 40);
        assert_eq!(
            t.on_reply(&plan, future, now, 30, &mut stats),
            Outcome::Wrong
        );
        assert_eq!(stats.wrong, 2);
        assert_eq!(stats.wrong_per_server[&7], 2);
        // During the warm-up they are counted apart.
        let early = plan.start + 5 * MS;
        let mut bad = reply_to(&plan, 2);
        bad.result ^= 1 << 40;
        assert_eq!(t.on_reply(&plan, bad, early, 5, &mut stats), Outcome::Wrong);
        assert_eq!(stats.wrong_during_warmup, 1);
        assert!(stats.saw_wrong());
    }

    #[test]
    fn timeouts_late_and_duplicate_replies() {
        let plan = plan();
        let mut t = Tracker::new(0, 0, 0);
        let mut stats = Stats::default();
        let issued = 60; // requests 0..60, due at 0..59 ms
        let now = plan.start + 60 * MS;
        for k in 10..60 {
            if k % 10 != 0 {
                t.on_reply(&plan, reply_to(&plan, k), now, issued, &mut stats);
            }
        }
        assert_eq!(stats.answered, 45);
        let dup = t.on_reply(&plan, reply_to(&plan, 11), now, issued, &mut stats);
        assert_eq!(dup, Outcome::Duplicate);
        // Nothing has timed out at 60 ms; the sweep stops at request 0.
        t.sweep(&plan, now, issued, &mut stats);
        assert_eq!((t.swept(), stats.lost), (0, 0));
        assert_eq!(t.next_expiry(&plan, issued), Some(plan.start + 100 * MS));
        // At 125 ms requests due up to 25 ms have expired: 10 and 20 are lost.
        t.sweep(&plan, plan.start + 125 * MS, issued, &mut stats);
        assert_eq!(stats.lost, 2);
        assert_eq!(t.swept(), 30);
        // The reply to 20 finally comes: late, and still lost.
        let late = t.on_reply(
            &plan,
            reply_to(&plan, 20),
            plan.start + 126 * MS,
            issued,
            &mut stats,
        );
        assert_eq!(late, Outcome::Late);
        // 30 answered after its timeout, before any sweep: late, then lost.
        let after = plan.start + 131 * MS;
        let late = t.on_reply(&plan, reply_to(&plan, 30), after, issued, &mut stats);
        assert_eq!(late, Outcome::Late);
        t.sweep(&plan, plan.start + 1000 * MS, issued, &mut stats);
        assert_eq!(stats.lost, 5, "10, 20, 30, 40, 50");
        // Measured from the 10 ms warm-up's end: due at 10 ms and 50 ms.
        let w = stats.loss_window.unwrap();
        assert_eq!((w.first, w.last), (Duration::ZERO, 40 * MS));
        assert_eq!((stats.late, stats.duplicate), (2, 1));
        assert!(t.is_resolved(issued));
        assert_eq!(
            stats.answered + stats.lost,
            50,
            "every measured request once"
        );
    }

    #[test]
    fn errors_and_malformed_datagrams() {
        let plan = plan();
        let mut t = Tracker::new(0, 0, 0);
        let mut stats = Stats::default();
        let now = plan.start + 20 * MS;
        let out = t.on_datagram(&plan, &Status::Overloaded.to_bytes(), now, 20, &mut stats);
        assert_eq!(out, Outcome::Error(Status::Overloaded));
        assert_eq!(
            t.on_datagram(&plan, &[1, 2, 3], now, 20, &mut stats),
            Outcome::Malformed
        );
        assert_eq!(
            t.on_datagram(&plan, &[0], now, 20, &mut stats),
            Outcome::Malformed
        );
        let good = reply_to(&plan, 15).to_bytes();
        assert!(matches!(
            t.on_datagram(&plan, &good, now, 20, &mut stats),
            Outcome::Answered { .. }
        ));
        assert_eq!(stats.errors[&Status::Overloaded.to_u8()], 1);
        assert_eq!(stats.malformed, 2);
        assert_eq!(stats.answered, 1);
    }

    #[test]
    fn memory_stays_bounded_when_nothing_answers() {
        let plan = plan();
        let mut t = Tracker::new(0, 0, 0);
        let window = t.window();
        let mut stats = Stats::default();
        // Issued far more than the window within the timeout: the oldest are
        // pushed out as lost, even before their timeout.
        let issued = window * 3;
        t.sweep(&plan, plan.start, issued, &mut stats);
        assert_eq!(t.swept(), issued - window);
        // A reply to a request pushed out of the window cannot be checked
        // any more: it is not the answer of any request still tracked.
        let out = t.on_reply(&plan, reply_to(&plan, 20), plan.start, issued, &mut stats);
        assert_eq!(out, Outcome::Wrong);
        // Once the rest has timed out, a reply still in the window is late.
        t.sweep(&plan, plan.start + 3600 * MS * 1000, issued, &mut stats);
        assert!(t.is_resolved(issued));
        let out = t.on_reply(
            &plan,
            reply_to(&plan, issued - 10),
            plan.start,
            issued,
            &mut stats,
        );
        assert_eq!(out, Outcome::Late);
    }

    #[test]
    fn window_sizing() {
        assert_eq!(Tracker::new(0, 0, 0).window(), MIN_WINDOW);
        assert_eq!(Tracker::new(0, 0, 5000).window(), 8192);
        assert_eq!(Tracker::new(0, 0, u64::MAX).window(), MAX_WINDOW);
        let w = Tracker::window_for(200_000, 4, Duration::from_secs(1));
        assert!(w >= 100_000, "{w}");
    }
}
