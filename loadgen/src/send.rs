//! The sending thread of a worker: hands out requests as the [`Pacer`] says
//! they are due and sends them in batches, one system call per socket per
//! round. By default each socket uses UDP segmentation offload, so a round's
//! requests for one socket leave in a single send that the kernel splits
//! into ordinary 9-byte datagrams (several times cheaper than `sendmmsg` on
//! loopback); without it, `sendmmsg` via [`MsgBatch`].
//!
//! Rounds are at least `tick` apart: requests that fall due in between leave
//! together, late by up to `tick` (which the latency includes and the report
//! shows as send lag). Requests are never skipped: a sender that falls
//! behind sends everything overdue at once.

use std::io;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ipcs_common::sys::udp::{set_udp_segment, MAX_GSO_SEGMENTS};
use ipcs_common::sys::MsgBatch;
use ipcs_common::wire::hsmap::REQUEST_LEN;

use crate::run::{SenderSummary, Shared};
use crate::schedule::{Pacer, Plan};
use crate::stats::SendStats;

/// Longest single sleep (so SIGINT is noticed).
const MAX_SEND_SLEEP: Duration = Duration::from_millis(20);
/// Timer slack of the sending thread: its sleeps end this close to the
/// schedule instead of the kernel's default 50 µs late.
const SEND_TIMER_SLACK: Duration = Duration::from_micros(1);
/// Pause when the kernel's send buffer is full.
const BACKOFF: Duration = Duration::from_micros(50);

/// Turns segmentation offload on for `socket`; `false` if the kernel
/// refuses (loadgen then sends datagram by datagram).
pub(crate) fn enable_gso(socket: &UdpSocket) -> bool {
    match set_udp_segment(socket, REQUEST_LEN as u16) {
        Ok(()) => true,
        Err(e) => {
            tracing::info!("UDP segmentation offload unavailable ({e}); using sendmmsg");
            false
        }
    }
}

/// One socket's requests waiting to be sent.
struct Outbox {
    /// Plain: one datagram per slot. GSO: one slot holding `queued`
    /// datagrams back to back.
    batch: MsgBatch,
    gso: bool,
    /// GSO: datagrams gathered for the next send.
    pending: Vec<u8>,
    /// GSO: datagrams in the message queued in `batch`.
    queued: usize,
    /// Most datagrams per send (GSO) or per `sendmmsg` (plain).
    limit: usize,
    /// Whether the waiting requests are measured ones (an outbox never mixes
    /// warm-up and measured requests, so its send report is attributable).
    measured: bool,
}

impl Outbox {
    fn new(gso: bool, batch: usize) -> Outbox {
        let limit = if gso {
            batch.min(MAX_GSO_SEGMENTS)
        } else {
            batch
        };
        Outbox {
            batch: if gso {
                MsgBatch::new(1, limit * REQUEST_LEN)
            } else {
                MsgBatch::new(limit, REQUEST_LEN)
            },
            gso,
            pending: Vec::with_capacity(limit * REQUEST_LEN),
            queued: 0,
            limit,
            measured: false,
        }
    }

    fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.pending.is_empty()
    }

    fn is_full(&self) -> bool {
        if self.gso {
            self.pending.len() == self.limit * REQUEST_LEN
        } else {
            self.batch.is_full()
        }
    }

    fn push(&mut self, request: &[u8; REQUEST_LEN]) {
        if self.gso {
            self.pending.extend_from_slice(request);
        } else {
            self.batch.push(request, None);
        }
    }

    /// Sends what waits; stops when the kernel will take no more.
    fn flush(&mut self, socket: &UdpSocket, send: &mut SendStats) {
        if !self.gso {
            let report = self.batch.send_to(socket);
            if report.failed > 0 {
                tracing::debug!(error = ?report.last_error, failed = report.failed, "send refused");
            }
            self.count(send, report.sent, report.failed);
            return;
        }
        loop {
            if self.batch.is_empty() {
                if self.pending.is_empty() {
                    return;
                }
                self.batch.push(&self.pending, None);
                self.queued = self.pending.len() / REQUEST_LEN;
                self.pending.clear();
            }
            let report = self.batch.send_to(socket);
            let n = self.queued;
            if report.sent > 0 {
                self.count(send, n, 0);
            } else if report.failed > 0 {
                self.count(send, 0, n);
                if report.last_error != Some(io::ErrorKind::ConnectionRefused) {
                    self.fall_back(socket, report.last_error);
                    return self.flush(socket, send);
                }
            } else {
                return; // would block: the message stays queued
            }
        }
    }

    /// Datagrams not sent yet.
    fn waiting(&self) -> usize {
        if self.gso {
            self.batch.len() * self.queued + self.pending.len() / REQUEST_LEN
        } else {
            self.batch.len()
        }
    }

    fn count(&self, send: &mut SendStats, sent: usize, failed: usize) {
        if self.measured {
            send.sent += sent as u64;
            send.failed += failed as u64;
        }
    }

    /// The kernel takes `UDP_SEGMENT` but refuses the sends (e.g. a route
    /// without checksum offload): go on datagram by datagram.
    fn fall_back(&mut self, socket: &UdpSocket, error: Option<io::ErrorKind>) {
        tracing::warn!(
            ?error,
            "segmentation-offloaded send refused; using sendmmsg"
        );
        let _ = set_udp_segment(socket, 0);
        let pending = std::mem::take(&mut self.pending);
        let measured = self.measured;
        *self = Outbox::new(false, self.limit);
        self.measured = measured;
        for request in pending.chunks_exact(REQUEST_LEN) {
            let mut bytes = [0u8; REQUEST_LEN];
            bytes.copy_from_slice(request);
            self.push(&bytes);
        }
    }
}

/// What the sending thread needs besides the plan.
pub(crate) struct SendSide<'a> {
    pub sockets: Vec<&'a UdpSocket>,
    /// Per socket: whether segmentation offload is on.
    pub gso: Vec<bool>,
    pub batch: usize,
    pub tick: Duration,
}

/// Sends worker `worker`'s share of the schedule until it ends or `stop`.
pub(crate) fn send_loop(
    plan: &Plan,
    worker: u32,
    side: SendSide<'_>,
    shared: &Shared,
    stop: &AtomicBool,
) -> SenderSummary {
    if let Err(e) = ipcs_common::sys::set_timer_slack(SEND_TIMER_SLACK) {
        tracing::debug!("cannot lower the timer slack, sends will be less punctual: {e}");
    }
    let sockets = &side.sockets;
    let mut pacer = Pacer::new(plan.schedule, plan.layout, worker);
    let mut outboxes: Vec<Outbox> = side
        .gso
        .iter()
        .map(|g| Outbox::new(*g, side.batch))
        .collect();
    let mut issued = vec![0u64; sockets.len()];
    let mut send = SendStats::default();
    // Due times of the measured requests queued in this round, for the lag.
    let mut queued_due: Vec<Instant> = Vec::with_capacity(side.batch * sockets.len());
    // Requests due this long after the end would be lost anyway: give up on
    // them (they count as unsent) so a generator that cannot keep up still
    // ends in bounded time.
    let give_up = plan.schedule.warmup() + plan.schedule.duration() + plan.timeout;
    let mut interrupted_at = None;
    // The schedule up to here has been handed out (unless we fell behind).
    let mut covered = Duration::ZERO;
    loop {
        let round = Instant::now();
        let elapsed = round.saturating_duration_since(plan.start);
        if stop.load(Ordering::Relaxed) {
            interrupted_at = Some(covered);
            break;
        }
        if elapsed > give_up {
            break;
        }
        let mut blocked = false;
        while let Some(due) = pacer.peek().filter(|d| d.at <= elapsed) {
            let l = due.slot.local as usize;
            let out = &mut outboxes[l];
            if !out.is_empty() && (out.is_full() || out.measured != due.measured) {
                out.flush(sockets[l], &mut send);
                if !out.is_empty() {
                    blocked = true;
                    break;
                }
            }
            out.push(&plan.request(due.slot).to_bytes());
            out.measured = due.measured;
            issued[l] += 1;
            // Published before the send: a reply can never outrun it.
            shared.issued[l].store(issued[l], Ordering::Release);
            if due.measured {
                queued_due.push(plan.start + due.at);
            }
            pacer.advance();
        }
        covered = elapsed;
        for (l, out) in outboxes.iter_mut().enumerate() {
            out.flush(sockets[l], &mut send);
            blocked |= !out.is_empty();
        }
        let sent_at = Instant::now();
        for due in queued_due.drain(..) {
            send.record_lag(sent_at.saturating_duration_since(due));
        }
        let Some(next) = pacer.peek() else {
            if !blocked {
                break;
            }
            thread::sleep(BACKOFF);
            continue;
        };
        let wake = if blocked {
            sent_at + BACKOFF
        } else {
            (plan.start + next.at).max(round + side.tick)
        };
        let wait = wake
            .saturating_duration_since(Instant::now())
            .min(MAX_SEND_SLEEP);
        if !wait.is_zero() {
            thread::sleep(wait);
        }
    }
    // Whatever is still queued never left.
    for out in &outboxes {
        if out.measured {
            send.failed += out.waiting() as u64;
        }
    }
    let due = match interrupted_at {
        Some(t) => pacer.measured_until(t),
        None => pacer.measured_until(Duration::MAX),
    };
    let summary = SenderSummary {
        send,
        due,
        handed_out: pacer.measured_handed_out(),
        interrupted_at,
    };
    shared.sender_done.store(true, Ordering::Release);
    summary
}
