//! One worker's event loop: a single mio `Poll` over the UDP listener, the
//! raw packet socket, the signal pipe and (on worker 0) the registry
//! connection, with the poll timeout taken from the earliest deadline. The
//! reactor only moves bytes: datagrams and frames go to the [`Core`], and the
//! [`Action`]s it returns are queued in [`MsgBatch`]es and sent with one
//! `sendmmsg` per batch.
//!
//! Draining: a readable socket is read with `recvmmsg` until a call returns
//! fewer messages than the batch holds (the queue was empty at that moment;
//! anything arriving later raises a new edge) or `WouldBlock`. The two
//! sockets are read in turn, one batch each, so a flood on one cannot starve
//! the other, and one pump reads at most [`PUMP_ROUNDS`] batches of each
//! before the timers get their turn. When the kernel will not take more
//! output, reading pauses until the socket is writable again instead of
//! dropping what was decided; while a socket is known to hold unread data
//! and output is free, the poll does not sleep.
//!
//! Time: the clock is read for every batch received, so a request read
//! late in a long pump is not stamped with the wake-up's instant (and does
//! not expire at once). Deadlines are not processed while output is
//! blocked or replies are still unread (for at most [`TICK_DEFER`]): the
//! load balancer being behind is its own fault, not the servers'. Forwards
//! the load balancer could not send are reported to the core
//! ([`Core::on_local_loss`]) so no server is blamed for them.
//!
//! Stopping: the first SIGINT or SIGTERM makes the worker stop taking
//! requests: it reads what its UDP socket already holds (those clients
//! sent before the signal) and then no more, while frames, deadlines and
//! retries go on, until every request read has its client's answer or
//! its request deadline passed (status 4), and then returns. The drain is
//! bounded by the drain timeout; a second signal ends it at once.
//! Requests still waiting then are counted as abandoned.
//!
//! Replies: with UDP GSO on the listener (`UDP_SEGMENT` of one reply's
//! length), replies queued in one batch for the same client are appended to
//! one message, which the kernel sends as separate 9-byte datagrams after a
//! single pass through the stack. The client sees ordinary datagrams. A
//! reply is sent by the LB's whole output path, so this is a large share of
//! its per-request cost (docs/BENCHMARKS.md).

use std::collections::HashMap;
use std::hash::Hash;
use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipcs_common::sys::batch::SendReport;
use ipcs_common::sys::udp::{MAX_GRO_SEGMENTS, MAX_GSO_SEGMENTS};
use ipcs_common::sys::{set_udp_segment, Interface, MsgBatch, PacketSocket};
use ipcs_common::wire::records::MAX_RECORDS_FRAME_LEN;
use ipcs_common::wire::{frame::MAX_FRAME_LEN, hsmap::REPLY_LEN, FrameRepr, MacAddr, ETHERTYPE};
use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use socket2::{Domain, Protocol, Socket, Type};

use crate::core::{Action, Core};
use crate::metrics::{DropReason, WorkerStats};
use crate::registry_link::RegistryLink;

const UDP: Token = Token(0);
const RAW: Token = Token(1);
const SIGNALS: Token = Token(2);
/// The registry connection (worker 0 only).
pub const REGISTRY: Token = Token(3);

/// Messages moved per system call.
pub const BATCH: usize = 64;
/// Longer than any valid request, so an oversized datagram is seen as such.
const UDP_SLOT: usize = 16;
/// With coalesced receive: room for the most datagrams the kernel merges,
/// each of a slot's length, so a message of valid requests is never cut.
const GRO_SLOT: usize = UDP_SLOT * MAX_GRO_SEGMENTS;
/// Room for as many replies as one GSO send may carry.
const GSO_SLOT: usize = REPLY_LEN * MAX_GSO_SEGMENTS;
/// Room for the longest frame of records (a longer one is cut, and its cut
/// record ignored).
const RAW_SLOT: usize = MAX_RECORDS_FRAME_LEN;
/// How often the latency histogram is copied out for the metrics page.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// How often the backend interface's MAC and MTU are read again. A Linux bridge
/// without a configured address takes the lowest MAC of its ports, so it
/// changes when a server's port comes or goes; frames from the old MAC get
/// replies the bridge no longer hands to us. Its MTU too: an overlay or a
/// changed link must not get frames longer than it carries.
const LINK_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Kernel buffer size asked for on both sockets, for bursts.
const SOCKET_BUFFER: usize = 4 << 20;
/// Batches of each socket one pump reads at most before timers run.
pub const PUMP_ROUNDS: usize = 16;
/// The longest deadlines wait for unread replies or blocked output.
pub const TICK_DEFER: Duration = Duration::from_millis(5);
/// How long a stop signal's drain lasts at most unless configured.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The signals that stop a worker. Made before anything else at start, so
/// a SIGTERM that arrives while the first list loads is held for the
/// workers instead of killing the process.
pub fn stop_signals() -> io::Result<Signals> {
    Signals::new([SIGINT, SIGTERM])
}

/// Binds the client-facing UDP socket. With `reuse_port`, several workers
/// bind the same address and the kernel spreads clients over them.
pub fn bind_udp(addr: SocketAddr, reuse_port: bool) -> io::Result<StdUdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    // Best effort: a small buffer only costs drops under bursts.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Opens the raw socket for backend frames on `iface`. With `fanout`
/// (group, members), joins the `PACKET_FANOUT` group that hands each reply
/// to the worker named in its tag's low byte; workers must call this in
/// index order.
pub fn open_raw(iface: &Interface, fanout: Option<(u16, u32)>) -> io::Result<PacketSocket> {
    let socket = PacketSocket::bind(iface, ETHERTYPE)?;
    let _ = socket.set_buffer_sizes(SOCKET_BUFFER, SOCKET_BUFFER);
    if let Some((group, members)) = fanout {
        // Byte 18 of the frame is the tag's last byte: the worker index.
        socket.join_fanout_by_byte(
            group,
            ipcs_common::wire::TAG_LOW_BYTE_OFFSET as u16,
            members,
        )?;
    }
    Ok(socket)
}

/// The offloads the client-facing UDP socket has on.
#[derive(Debug, Clone, Copy, Default)]
pub struct UdpOffload {
    /// `UDP_SEGMENT` of one reply's length: replies to one client may
    /// share a send.
    pub reply_gso: bool,
    /// `UDP_GRO`: one received message may hold several requests.
    pub request_gro: bool,
}

/// One worker: its sockets, its core and its buffers.
pub struct Reactor {
    poll: Poll,
    signals: Signals,
    core: Core,
    io: Outbox,
    registry: Option<RegistryLink>,
    udp_in: MsgBatch,
    raw_in: MsgBatch,
    udp_readable: bool,
    raw_readable: bool,
    next_publish: Instant,
    next_link_check: Instant,
    /// Since when deadlines have been put off (unread replies, blocked
    /// output).
    tick_deferred_since: Option<Instant>,
    /// The longest a stop signal's drain may last.
    drain_timeout: Duration,
    /// Set by the first stop signal: until when the worker drains.
    draining_until: Option<Instant>,
}

impl Reactor {
    /// Wires a worker. `registry`, if given, is polled by this worker.
    /// `offload` says what the UDP socket was set up for.
    pub fn new(
        udp: StdUdpSocket,
        raw: PacketSocket,
        core: Core,
        stats: Arc<WorkerStats>,
        registry: Option<RegistryLink>,
        offload: UdpOffload,
        signals: Signals,
    ) -> io::Result<Reactor> {
        let UdpOffload {
            reply_gso,
            request_gro,
        } = offload;
        let poll = Poll::new()?;
        let mut udp = UdpSocket::from_std(udp);
        let both = Interest::READABLE | Interest::WRITABLE;
        poll.registry().register(&mut udp, UDP, both)?;
        poll.registry()
            .register(&mut SourceFd(&raw.as_raw_fd()), RAW, both)?;
        let mut signals = signals;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let mut registry = registry;
        if let Some(link) = registry.as_mut() {
            link.attach(poll.registry(), REGISTRY)?;
        }
        let lb_mac = raw.interface().mac;
        Ok(Reactor {
            poll,
            signals,
            core,
            io: Outbox {
                udp,
                raw,
                udp_out: reply_batch(reply_gso),
                coalesce: reply_gso.then(OpenMessages::new),
                raw_out: MsgBatch::new(BATCH * 2, MAX_RECORDS_FRAME_LEN),
                open_frames: OpenMessages::new(),
                lb_mac,
                stats,
                raw_queued: None,
                lost: None,
            },
            registry,
            udp_in: request_batch(request_gro),
            raw_in: MsgBatch::new(BATCH, RAW_SLOT),
            // Requests may have queued while the registry list loaded.
            udp_readable: true,
            raw_readable: true,
            next_publish: Instant::now() + PUBLISH_EVERY,
            next_link_check: Instant::now() + LINK_CHECK_EVERY,
            tick_deferred_since: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            draining_until: None,
        })
    }

    /// How long a stop signal's drain may last (default
    /// [`DEFAULT_DRAIN_TIMEOUT`]).
    pub fn set_drain_timeout(&mut self, timeout: Duration) {
        self.drain_timeout = timeout;
    }

    /// Runs until a stop signal's drain is over (see the module doc).
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        loop {
            let timeout = self.timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            let mut signals = 0;
            for event in events.iter() {
                match event.token() {
                    // A stopping worker takes no new requests.
                    UDP if self.draining_until.is_some() => {}
                    UDP => self.udp_readable |= event.is_readable(),
                    RAW => self.raw_readable |= event.is_readable(),
                    SIGNALS => signals += self.signals.pending().count(),
                    REGISTRY => {
                        if let Some(link) = self.registry.as_mut() {
                            link.on_event(self.poll.registry(), event, now);
                        }
                    }
                    _ => {}
                }
            }
            if signals > 0 && self.draining_until.is_none() {
                self.draining_until = Some(now + self.drain_timeout);
                self.io
                    .stats
                    .stopping
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                // What the socket holds came before the signal: read it.
                self.udp_readable = true;
                tracing::info!(
                    drain_timeout_ms = self.drain_timeout.as_millis() as u64,
                    "stop signal: taking no new requests, finishing those in flight \
                     (a second signal stops at once)"
                );
                signals -= 1;
            }
            if signals > 0 {
                self.stop(now, "a second stop signal");
                return Ok(());
            }
            self.pump();
            self.on_timers(Instant::now());
            self.io.flush();
            self.report_local_loss();
            if let Some(until) = self.draining_until {
                let now = Instant::now();
                let settled =
                    !self.udp_readable && self.core.awaiting_clients() == 0 && !self.io.blocked();
                if settled || now >= until {
                    let why = if settled {
                        "every request answered"
                    } else {
                        "the drain timeout"
                    };
                    self.stop(now, why);
                    return Ok(());
                }
            }
        }
    }

    /// Ends the worker: requests whose client still waits are abandoned.
    fn stop(&mut self, now: Instant, why: &str) {
        let abandoned = self.core.awaiting_clients() as u64;
        crate::metrics::add(&self.io.stats.abandoned, abandoned);
        self.core.publish(now);
        if abandoned > 0 {
            tracing::warn!(
                abandoned,
                "worker stopped by {why}; requests left unanswered"
            );
        } else {
            tracing::debug!("worker stopped: {why}");
        }
    }

    fn timeout(&self, now: Instant) -> Option<Duration> {
        if (self.udp_readable || self.raw_readable) && !self.io.blocked() {
            // Unread data and free output: no edge will come for it.
            return Some(Duration::ZERO);
        }
        let mut next = self.next_publish.min(self.next_link_check);
        if let Some(d) = self.draining_until {
            next = next.min(d);
        }
        if let Some(d) = self.core.next_deadline() {
            next = next.min(d);
        }
        if let Some(d) = self.registry.as_ref().and_then(RegistryLink::next_deadline) {
            next = next.min(d);
        }
        Some(next.saturating_duration_since(now))
    }

    fn on_timers(&mut self, now: Instant) {
        if let Some(link) = self.registry.as_mut() {
            link.on_timer(self.poll.registry(), now);
        }
        if self.tick_allowed(now) {
            let io = &mut self.io;
            self.core.on_tick(now, |action| io.push(action, now));
        }
        if now >= self.next_publish {
            self.core.publish(now);
            self.next_publish = now + PUBLISH_EVERY;
        }
        if now >= self.next_link_check {
            self.follow_link();
            self.next_link_check = now + LINK_CHECK_EVERY;
        }
    }

    /// Reads the backend interface's MAC and MTU again and, if the MAC
    /// changed, sends from and accepts replies to the new one; if the MTU
    /// did, packs frames to the new one.
    fn follow_link(&mut self) {
        let name = &self.io.raw.interface().name;
        let iface = match Interface::lookup(name) {
            Ok(iface) => iface,
            Err(e) => {
                tracing::debug!(iface = %name, "cannot read the backend interface: {e}");
                return;
            }
        };
        if iface.mac != self.io.lb_mac {
            tracing::warn!(
                iface = %name,
                old = %self.io.lb_mac,
                new = %iface.mac,
                "the backend interface's MAC changed; sending from the new one (give the bridge a fixed address to avoid this)"
            );
            self.io.lb_mac = iface.mac;
            self.core.set_lb_mac(iface.mac);
        }
        if iface.mtu != self.core.config().link_mtu {
            tracing::warn!(
                iface = %name,
                old = self.core.config().link_mtu,
                new = iface.mtu,
                "the backend interface's MTU changed; packing frames to the new one"
            );
            self.core.set_link_mtu(iface.mtu);
        }
    }

    /// Whether deadlines may be processed now: not while replies are
    /// unread or output is blocked (the LB is behind, not the servers),
    /// unless that has lasted [`TICK_DEFER`] (a flood must not stop
    /// timeouts for good).
    fn tick_allowed(&mut self, now: Instant) -> bool {
        if !self.raw_readable && !self.io.blocked() {
            self.tick_deferred_since = None;
            return true;
        }
        let since = *self.tick_deferred_since.get_or_insert(now);
        now.saturating_duration_since(since) >= TICK_DEFER
    }

    /// Hands the core the send instants of forwards that may not have
    /// left.
    fn report_local_loss(&mut self) {
        if let Some((from, to)) = self.io.lost.take() {
            self.core.on_local_loss(from, to);
        }
    }

    /// Reads both sockets in turn until both are drained, output is
    /// blocked, or [`PUMP_ROUNDS`] batches of each were read.
    fn pump(&mut self) {
        for _ in 0..PUMP_ROUNDS {
            if self.io.blocked() {
                // The kernel refused output; wait for a writable edge.
                return;
            }
            let mut read = false;
            if self.raw_readable {
                self.read_raw();
                read = true;
            }
            if self.udp_readable {
                self.read_udp();
                read = true;
            }
            self.io.flush();
            self.report_local_loss();
            if !read {
                return;
            }
        }
    }

    fn read_raw(&mut self) {
        match self.raw_in.recv_from(&self.io.raw) {
            Ok(n) => {
                let now = Instant::now();
                self.raw_readable = n == self.raw_in.capacity();
                let io = &mut self.io;
                for frame in self.raw_in.iter() {
                    self.core
                        .on_frame_records(frame.data, now, |action| io.push(action, now));
                }
            }
            Err(e) => self.raw_readable = !read_error("raw socket", e),
        }
    }

    fn read_udp(&mut self) {
        match self.udp_in.recv_from(&self.io.udp) {
            Ok(n) => {
                let now = Instant::now();
                self.udp_readable = n == self.udp_in.capacity();
                for message in self.udp_in.iter() {
                    // Every UDP datagram has a source address.
                    let Some(client) = message.addr else {
                        continue;
                    };
                    let mut datagrams = 0;
                    for datagram in message.datagrams() {
                        datagrams += 1;
                        self.io
                            .push(self.core.on_request(client, datagram, now), now);
                    }
                    if datagrams > 1 {
                        let counter = &self.io.stats.requests_received_coalesced;
                        crate::metrics::add(counter, datagrams - 1);
                    }
                }
            }
            Err(e) => self.udp_readable = !read_error("UDP socket", e),
        }
    }
}

/// Whether a read error means the socket is drained (`true`) or may be
/// read again (`false`, interrupted).
fn read_error(what: &str, e: io::Error) -> bool {
    match e.kind() {
        io::ErrorKind::WouldBlock => true,
        io::ErrorKind::Interrupted => false,
        _ => {
            tracing::warn!("reading the {what}: {e}");
            true
        }
    }
}

/// The sending half: both sockets and their send queues.
struct Outbox {
    udp: UdpSocket,
    raw: PacketSocket,
    udp_out: MsgBatch,
    /// With reply GSO: the queued message that carries replies to each
    /// client.
    coalesce: Option<OpenMessages<SocketAddr>>,
    raw_out: MsgBatch,
    /// The queued frame that carries requests to each server.
    open_frames: OpenMessages<MacAddr>,
    lb_mac: MacAddr,
    stats: Arc<WorkerStats>,
    /// The decision instants of the forwards queued in `raw_out`.
    raw_queued: Option<(Instant, Instant)>,
    /// The decision instants of forwards that may not have left.
    lost: Option<(Instant, Instant)>,
}

/// The smallest range holding `range` and `now`.
fn widen(range: Option<(Instant, Instant)>, from: Instant, to: Instant) -> (Instant, Instant) {
    match range {
        Some((a, b)) => (a.min(from), b.max(to)),
        None => (from, to),
    }
}

impl Outbox {
    /// Queues what an action decided at `now` sends; a full queue is
    /// flushed first.
    fn push(&mut self, action: Action, now: Instant) {
        let queued = match action {
            Action::None => return,
            Action::Forward {
                server, records, ..
            } => {
                let Some(frame) = action.frame(self.lb_mac) else {
                    return;
                };
                let queued = self.push_frame(&frame, server, records);
                if queued {
                    self.raw_queued = Some(widen(self.raw_queued, now, now));
                } else {
                    // Retried at its deadline, and blamed on no server.
                    self.lost = Some(widen(self.lost, now, now));
                }
                queued
            }
            Action::Reply { client, reply } => self.push_reply(&reply.to_bytes(), client),
            Action::Error { client, status } => self.push_udp(&status.to_bytes(), client),
        };
        if !queued {
            // The kernel will not take more right now. A lost reply is lost
            // like any UDP datagram.
            self.stats.count_drop(DropReason::QueueFull);
        }
    }

    /// A request for `server`: appended as a record to the frame queued for
    /// it when it reads `records` > 1 and that frame has fewer, else queued
    /// in a frame of its own.
    fn push_frame(&mut self, frame: &FrameRepr, server: MacAddr, records: u8) -> bool {
        if records > 1 {
            let mut record = [0u8; MAX_FRAME_LEN];
            let len = frame.emit_record(&mut record);
            if self
                .open_frames
                .append(&mut self.raw_out, &server, &record[..len], records)
            {
                crate::metrics::bump(&self.stats.requests_coalesced);
                return true;
            }
        }
        let write = |out: &mut MsgBatch| out.push_with(None, |slot| frame.emit_into(slot).len());
        let queued = write(&mut self.raw_out) || {
            self.send_raw();
            write(&mut self.raw_out)
        };
        if queued && records > 1 {
            self.open_frames.opened(&self.raw_out, server);
        }
        queued
    }

    fn send_raw(&mut self) {
        let report = send(&mut self.raw_out, &self.raw, &self.stats, "raw socket");
        if report.failed > 0 {
            // Which frames the kernel refused is not worth tracking: none
            // of the queued forwards is held against its server.
            if let Some((from, to)) = self.raw_queued {
                self.lost = Some(widen(self.lost, from, to));
            }
        }
        if self.raw_out.is_empty() {
            self.open_frames.clear();
            self.raw_queued = None;
        }
    }

    /// A full reply: appended to a queued message for the same client when
    /// GSO is on, else queued on its own.
    fn push_reply(&mut self, bytes: &[u8; REPLY_LEN], client: SocketAddr) -> bool {
        if let Some(open) = self.coalesce.as_mut() {
            // The slot length caps a message at MAX_GSO_SEGMENTS replies.
            if open.append(&mut self.udp_out, &client, bytes, u8::MAX) {
                crate::metrics::bump(&self.stats.replies_coalesced);
                return true;
            }
        }
        let queued = self.push_udp(bytes, client);
        if let Some(open) = self.coalesce.as_mut().filter(|_| queued) {
            open.opened(&self.udp_out, client);
        }
        queued
    }

    fn push_udp(&mut self, bytes: &[u8], client: SocketAddr) -> bool {
        self.udp_out.push(bytes, Some(client)) || {
            self.send_udp();
            self.udp_out.push(bytes, Some(client))
        }
    }

    fn send_udp(&mut self) {
        let report = send(&mut self.udp_out, &self.udp, &self.stats, "UDP socket");
        if self.udp_out.is_empty() {
            if let Some(open) = self.coalesce.as_mut() {
                open.clear();
            }
        }
        // EIO: the device cannot checksum GSO sends. (EINVAL also comes from
        // a destination port 0, which the core drops before it gets here,
        // so one forged source cannot turn coalescing off.)
        let gso_refused = matches!(report.last_os_error, Some(libc::EIO | libc::EINVAL));
        if self.coalesce.is_some() && gso_refused {
            self.stop_reply_gso();
        }
    }

    /// Falls back to one datagram per reply for good: the kernel refused a
    /// GSO send (`EIO`: the route's device cannot checksum for us, or
    /// IPsec; older kernels refuse even single-segment sends then). The
    /// replies in the refused message are lost (counted as send_failed);
    /// clients retry them.
    fn stop_reply_gso(&mut self) {
        let result = set_udp_segment(&self.udp, 0);
        tracing::warn!(
            "the kernel refused a UDP GSO send of replies; sending each reply on its own from now on{}",
            match &result {
                Ok(()) => String::new(),
                Err(e) => format!(" (and turning UDP_SEGMENT off failed: {e})"),
            }
        );
        self.coalesce = None;
        self.udp_out.set_segment_size(0);
    }

    fn blocked(&self) -> bool {
        !self.udp_out.is_empty() || !self.raw_out.is_empty()
    }

    fn flush(&mut self) {
        self.send_raw();
        self.send_udp();
    }
}

/// For each key (a client, a server), the queued message still open for
/// more items: its slot in the batch and how many items it holds. Slot
/// numbers mean something only until the batch empties, so the owner
/// clears this whenever it does; [`MsgBatch::append`] refuses slots already
/// sent.
struct OpenMessages<K> {
    map: HashMap<K, (usize, u8)>,
}

impl<K: Hash + Eq> OpenMessages<K> {
    fn new() -> Self {
        // Never more entries than the batch has slots: no growth later.
        OpenMessages {
            map: HashMap::with_capacity(BATCH * 2),
        }
    }

    /// Appends `bytes` to `key`'s open message if it holds fewer than
    /// `limit` items and its slot has room.
    fn append(&mut self, batch: &mut MsgBatch, key: &K, bytes: &[u8], limit: u8) -> bool {
        match self.map.get_mut(key) {
            Some((slot, count)) if *count < limit && batch.append(*slot, bytes) => {
                *count += 1;
                true
            }
            _ => false,
        }
    }

    /// The message just pushed into `batch` is `key`'s open one.
    fn opened(&mut self, batch: &MsgBatch, key: K) {
        self.map.insert(key, (batch.next_slot() - 1, 1));
    }

    fn clear(&mut self) {
        self.map.clear();
    }
}

/// The receive batch for client datagrams: slots for a coalesced message
/// each, reading its segment size, when `request_gro`.
fn request_batch(request_gro: bool) -> MsgBatch {
    if request_gro {
        let mut batch = MsgBatch::new(BATCH, GRO_SLOT);
        batch.receive_segment_sizes();
        batch
    } else {
        MsgBatch::new(BATCH, UDP_SLOT)
    }
}

/// The queue for replies: slots long enough for a GSO send of
/// [`MAX_GSO_SEGMENTS`] replies when `reply_gso`, else for one datagram.
fn reply_batch(reply_gso: bool) -> MsgBatch {
    if reply_gso {
        let mut batch = MsgBatch::new(BATCH * 2, GSO_SLOT);
        batch.set_segment_size(REPLY_LEN);
        batch
    } else {
        MsgBatch::new(BATCH * 2, UDP_SLOT)
    }
}

fn send(
    batch: &mut MsgBatch,
    socket: &impl AsRawFd,
    stats: &WorkerStats,
    what: &str,
) -> SendReport {
    if batch.is_empty() {
        return SendReport::default();
    }
    let report = batch.send_to(socket);
    if report.failed > 0 {
        // In datagrams: one refused GSO message may carry 64 replies.
        crate::metrics::add(
            stats.drop_count(DropReason::SendFailed),
            report.failed_datagrams as u64,
        );
        tracing::debug!(
            "{} sends on the {what} failed: {:?}",
            report.failed,
            report.last_error
        );
    }
    report
}
