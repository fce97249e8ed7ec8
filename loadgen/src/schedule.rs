//! The open-loop send schedule: when each request is due and which thread,
//! socket and sequence number it belongs to. Pure arithmetic on request
//! indices, so the sending side ([`Pacer`]) and the receiving side (which
//! needs each request's *scheduled* time to measure latency without
//! coordinated omission) agree exactly without talking to each other.
//!
//! Request `k` (global, from 0) is due at `start + k / rps` seconds. Requests
//! are dealt round-robin: `k` belongs to worker `k mod threads`; within a
//! worker, runs of [`RUN`] consecutive requests go to one socket, the next
//! run to the next socket, each request taking that socket's next sequence
//! number. Runs (rather than one request per socket in turn) let requests
//! that fall due together leave in one segmentation-offloaded send.

use std::time::{Duration, Instant};

use ipcs_common::wire::Request;

use crate::codec::OperandCodec;

const NANOS: u128 = 1_000_000_000;

/// Consecutive requests of a worker that go to the same socket.
pub const RUN: u64 = 16;

/// The request rate and the phases of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    rps: u64,
    warmup: Duration,
    duration: Duration,
}

impl Schedule {
    /// `rps` requests per second (at least 1), first during `warmup` (not
    /// measured) and then during `duration` (measured).
    pub fn new(rps: u64, warmup: Duration, duration: Duration) -> Schedule {
        Schedule {
            rps: rps.max(1),
            warmup,
            duration,
        }
    }

    pub fn rps(&self) -> u64 {
        self.rps
    }

    pub fn warmup(&self) -> Duration {
        self.warmup
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// When request `k` is due, counted from the start of the run.
    pub fn offset(&self, k: u64) -> Duration {
        let nanos = u128::from(k) * NANOS / u128::from(self.rps);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The first request due at or after `t`.
    pub fn index_at(&self, t: Duration) -> u64 {
        let scaled = t.as_nanos() * u128::from(self.rps);
        u64::try_from(scaled.div_ceil(NANOS)).unwrap_or(u64::MAX)
    }

    /// The first measured request (the first one after the warm-up).
    pub fn first_measured(&self) -> u64 {
        self.index_at(self.warmup)
    }

    /// One past the last request of the run.
    pub fn end(&self) -> u64 {
        self.index_at(self.warmup + self.duration)
    }

    /// Whether request `k` falls in the measured phase.
    pub fn is_measured(&self, k: u64) -> bool {
        k >= self.first_measured() && k < self.end()
    }
}

/// How requests are dealt to worker threads and their sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    threads: u32,
    sockets: u32,
}

/// Where one request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub worker: u32,
    /// Index among the worker's own sockets.
    pub local: u32,
    /// Index among all sockets of the run (`local * threads + worker`).
    pub socket: u32,
    /// The socket's sequence number for this request.
    pub seq: u64,
}

impl Layout {
    /// `threads` workers sharing `sockets` sockets; socket `s` belongs to
    /// worker `s mod threads`. Needs `1 <= threads <= sockets`.
    pub fn new(threads: u32, sockets: u32) -> Option<Layout> {
        (threads >= 1 && sockets >= threads).then_some(Layout { threads, sockets })
    }

    pub fn threads(&self) -> u32 {
        self.threads
    }

    pub fn sockets(&self) -> u32 {
        self.sockets
    }

    /// How many sockets worker `w` owns.
    pub fn sockets_of(&self, w: u32) -> u32 {
        (self.sockets - w).div_ceil(self.threads)
    }

    /// The run-wide index of worker `w`'s socket `local`.
    pub fn socket_id(&self, w: u32, local: u32) -> u32 {
        local * self.threads + w
    }

    /// Where request `k` goes.
    pub fn slot(&self, k: u64) -> Slot {
        let threads = u64::from(self.threads);
        let worker = (k % threads) as u32;
        let i = k / threads;
        let per = u64::from(self.sockets_of(worker));
        let run = i / RUN;
        let local = (run % per) as u32;
        Slot {
            worker,
            local,
            socket: self.socket_id(worker, local),
            seq: run / per * RUN + i % RUN,
        }
    }

    /// The request index of sequence number `seq` on worker `w`'s socket
    /// `local` (the inverse of [`slot`](Self::slot)).
    pub fn index(&self, w: u32, local: u32, seq: u64) -> u64 {
        let run = seq / RUN * u64::from(self.sockets_of(w)) + u64::from(local);
        let i = run * RUN + seq % RUN;
        i * u64::from(self.threads) + u64::from(w)
    }

    /// How many of the requests `from..to` belong to worker `w`.
    pub fn count_for(&self, w: u32, from: u64, to: u64) -> u64 {
        let below = |n: u64| {
            n.saturating_sub(u64::from(w))
                .div_ceil(u64::from(self.threads))
        };
        below(to).saturating_sub(below(from))
    }
}

/// One request the pacer hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub k: u64,
    pub slot: Slot,
    /// When it is due, from the start of the run.
    pub at: Duration,
    pub measured: bool,
}

/// The sending side of one worker: walks that worker's requests in order.
#[derive(Debug, Clone)]
pub struct Pacer {
    schedule: Schedule,
    layout: Layout,
    worker: u32,
    /// The worker's next request, as a run-wide index.
    next_k: u64,
}

impl Pacer {
    pub fn new(schedule: Schedule, layout: Layout, worker: u32) -> Pacer {
        Pacer {
            schedule,
            layout,
            worker,
            next_k: u64::from(worker),
        }
    }

    /// The next request, or `None` once the run's schedule is exhausted.
    pub fn peek(&self) -> Option<Due> {
        let k = self.next_k;
        (k < self.schedule.end()).then(|| Due {
            k,
            slot: self.layout.slot(k),
            at: self.schedule.offset(k),
            measured: self.schedule.is_measured(k),
        })
    }

    /// Moves past the request [`peek`](Self::peek) returned.
    pub fn advance(&mut self) {
        self.next_k += u64::from(self.layout.threads());
    }

    /// The next request if it is due at `elapsed`.
    pub fn next_due(&mut self, elapsed: Duration) -> Option<Due> {
        let due = self.peek().filter(|d| d.at <= elapsed)?;
        self.advance();
        Some(due)
    }

    /// How many measured requests of this worker were due at or before
    /// `until` (the whole measured phase when `until` is past it).
    pub fn measured_until(&self, until: Duration) -> u64 {
        let after = until.saturating_add(Duration::from_nanos(1));
        let to = self.schedule.index_at(after).min(self.schedule.end());
        self.layout
            .count_for(self.worker, self.schedule.first_measured(), to)
    }

    /// How many measured requests this worker has handed out.
    pub fn measured_handed_out(&self) -> u64 {
        let to = self.next_k.min(self.schedule.end());
        self.layout
            .count_for(self.worker, self.schedule.first_measured(), to)
    }
}

/// Everything both sides of a run must agree on, fixed before it starts.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// When request 0 is due.
    pub start: Instant,
    pub schedule: Schedule,
    pub layout: Layout,
    pub codec: OperandCodec,
    /// A request not answered this long after its scheduled time is lost.
    pub timeout: Duration,
}

impl Plan {
    /// When request `k` is due.
    pub fn due_at(&self, k: u64) -> Instant {
        self.start + self.schedule.offset(k)
    }

    /// The request that goes into `slot`.
    pub fn request(&self, slot: Slot) -> Request {
        self.codec.request(slot.socket, slot.seq)
    }

    /// When the measured phase begins.
    pub fn measure_start(&self) -> Instant {
        self.start + self.schedule.warmup()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn offsets_are_exact_and_do_not_drift() {
        let s = Schedule::new(3, Duration::ZERO, secs(10.0));
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_nanos(333_333_333));
        assert_eq!(s.offset(3), secs(1.0));
        assert_eq!(s.offset(3_000_000), secs(1_000_000.0));
        assert_eq!(s.end(), 30);
        let fast = Schedule::new(200_000, secs(1.0), secs(2.0));
        assert_eq!(fast.first_measured(), 200_000);
        assert_eq!(fast.end(), 600_000);
        assert!(!fast.is_measured(199_999));
        assert!(fast.is_measured(200_000));
        assert!(!fast.is_measured(600_000));
    }

    #[test]
    fn index_at_inverts_offset() {
        for rps in [1, 7, 1000, 33_333, 200_000] {
            let s = Schedule::new(rps, Duration::ZERO, secs(1.0));
            for k in [0, 1, 2, 99, 12_345] {
                let t = s.offset(k);
                assert_eq!(s.index_at(t), k, "rps {rps} k {k}");
                assert_eq!(s.index_at(t + Duration::from_nanos(1)), k + 1);
            }
        }
    }

    #[test]
    fn layout_round_trips_and_spreads_evenly() {
        for (threads, sockets) in [(1, 1), (1, 4), (2, 4), (2, 5), (3, 7)] {
            let layout = Layout::new(threads, sockets).unwrap();
            let mut per_socket = vec![0u64; sockets as usize];
            for k in 0..10_000 {
                let slot = layout.slot(k);
                assert_eq!(layout.index(slot.worker, slot.local, slot.seq), k);
                assert_eq!(slot.socket % threads, slot.worker);
                assert_eq!(
                    per_socket[slot.socket as usize], slot.seq,
                    "seqs run 0,1,2.."
                );
                per_socket[slot.socket as usize] += 1;
            }
            for w in 0..threads {
                let mine: Vec<u64> = (0..layout.sockets_of(w))
                    .map(|l| per_socket[layout.socket_id(w, l) as usize])
                    .collect();
                let spread = mine.iter().max().unwrap() - mine.iter().min().unwrap();
                assert!(spread <= RUN, "worker {w}: {mine:?}");
            }
            assert_eq!(per_socket.iter().sum::<u64>(), 10_000);
            // A worker's consecutive requests share a socket for a run.
            let first = layout.slot(u64::from(threads) * RUN * 3);
            for i in 0..RUN {
                let slot = layout.slot(u64::from(threads) * (RUN * 3 + i));
                assert_eq!((slot.socket, slot.seq), (first.socket, first.seq + i));
            }
            let total: u64 = (0..threads).map(|w| layout.count_for(w, 10, 9_999)).sum();
            assert_eq!(total, 9_989);
        }
        assert!(Layout::new(3, 2).is_none());
        assert!(Layout::new(0, 2).is_none());
    }

    #[test]
    fn pacer_hands_out_due_requests_in_order() {
        let schedule = Schedule::new(1000, secs(0.01), secs(0.02));
        let layout = Layout::new(2, 4).unwrap();
        let mut pacers = [
            Pacer::new(schedule, layout, 0),
            Pacer::new(schedule, layout, 1),
        ];
        // Nothing of worker 1 is due at t=0: its first request is k=1 at 1 ms.
        assert_eq!(pacers[1].next_due(Duration::ZERO), None);
        let mut seen = Vec::new();
        for pacer in &mut pacers {
            while let Some(due) = pacer.next_due(secs(0.015)) {
                assert!(due.at <= secs(0.015));
                assert_eq!(due.measured, due.k >= 10);
                seen.push(due.k);
            }
            assert_eq!(pacer.measured_handed_out(), 3);
            assert_eq!(pacer.measured_until(secs(0.015)), 3);
            assert_eq!(pacer.measured_until(secs(5.0)), 10);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..=15).collect::<Vec<_>>());
        for pacer in &mut pacers {
            while pacer.next_due(secs(1.0)).is_some() {}
            assert_eq!(pacer.peek(), None);
            assert_eq!(pacer.measured_handed_out(), 10);
        }
    }
}
