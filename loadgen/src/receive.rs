//! The receiving thread of a worker: waits for replies on the worker's
//! sockets (one mio `Poll`), drains each readable socket in batches with
//! `recvmmsg` (accepting coalesced replies where the kernel offers it),
//! hands every datagram to that socket's [`Tracker`], and
//! expires requests whose timeout has passed. It ends once the sending
//! thread is done and every request it issued is resolved.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipcs_common::sys::udp::{set_on_every, MAX_GRO_SEGMENTS};
use ipcs_common::sys::{set_udp_gro, MsgBatch};
use mio::{Events, Interest, Poll, Token};

use crate::run::Shared;
use crate::schedule::Plan;
use crate::stats::Stats;
use crate::tracker::Tracker;

/// Receive slots are larger than any valid datagram so that oversized ones
/// are seen whole enough to be called malformed.
const RECV_SLOT: usize = 64;
/// How often the thread wakes up without traffic (to expire requests and
/// notice the end of the run).
const RECV_TICK: Duration = Duration::from_millis(5);

/// Runs until the worker's requests are all resolved.
pub(crate) fn receive_loop(
    plan: &Plan,
    worker: u32,
    mut sockets: Vec<mio::net::UdpSocket>,
    shared: &Shared,
    batch: usize,
    gro: bool,
    window: u64,
) -> io::Result<()> {
    let mut poll = Poll::new()?;
    for (i, socket) in sockets.iter_mut().enumerate() {
        poll.registry()
            .register(socket, Token(i), Interest::READABLE)?;
    }
    let mut trackers: Vec<Tracker> = (0..sockets.len())
        .map(|l| Tracker::new(worker, l as u32, window))
        .collect();
    let mut inbox = receive_batch(&sockets, batch, gro);
    let mut events = Events::with_capacity(sockets.len().max(8));
    loop {
        if let Err(e) = poll.poll(&mut events, Some(RECV_TICK)) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        // Read before the issued counts, so that "done and all resolved"
        // below cannot miss requests issued at the very end.
        let sender_done = shared.sender_done.load(Ordering::Acquire);
        let mut stats = shared.stats();
        for event in events.iter() {
            let l = event.token().0;
            drain(
                plan,
                &sockets[l],
                &mut trackers[l],
                &shared.issued[l],
                &mut inbox,
                &mut stats,
            );
        }
        let now = Instant::now();
        let mut resolved = true;
        for (tracker, issued) in trackers.iter_mut().zip(&shared.issued) {
            let issued = issued.load(Ordering::Acquire);
            tracker.sweep(plan, now, issued, &mut stats);
            resolved &= tracker.is_resolved(issued);
        }
        drop(stats);
        if sender_done && resolved {
            return Ok(());
        }
    }
}

/// The receive batch: with `gro`, and the kernel taking `UDP_GRO` on every
/// socket, slots for a coalesced message each.
fn receive_batch(sockets: &[mio::net::UdpSocket], batch: usize, gro: bool) -> MsgBatch {
    let set = |s: &mio::net::UdpSocket| set_udp_gro(s, true);
    let undo = |s: &mio::net::UdpSocket| drop(set_udp_gro(s, false));
    let coalesced = gro
        && set_on_every(sockets, set, undo)
            .map_err(|e| tracing::info!("UDP GRO unavailable ({e}); reading replies one by one"))
            .is_ok();
    if !coalesced {
        return MsgBatch::new(batch, RECV_SLOT);
    }
    let mut inbox = MsgBatch::new(batch, RECV_SLOT * MAX_GRO_SEGMENTS);
    inbox.receive_segment_sizes();
    inbox
}

/// Reads one socket until it would block.
fn drain(
    plan: &Plan,
    socket: &mio::net::UdpSocket,
    tracker: &mut Tracker,
    issued: &AtomicU64,
    inbox: &mut MsgBatch,
    stats: &mut Stats,
) {
    loop {
        match inbox.recv_from(socket) {
            Ok(_) => {
                let now = Instant::now();
                let issued = issued.load(Ordering::Acquire);
                for message in inbox.iter() {
                    if message.truncated {
                        stats.malformed += 1;
                        continue;
                    }
                    for datagram in message.datagrams() {
                        tracker.on_datagram(plan, datagram, now, issued, stats);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => stats.refused += 1,
            Err(e) => {
                tracing::warn!("receive failed: {e}");
                return;
            }
        }
    }
}
