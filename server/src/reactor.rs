//! The server's event loop: one `mio::Poll` over the raw backend socket, the
//! optional UDP socket and SIGINT/SIGTERM. A readable socket is read in
//! batches (`recvmmsg`) until `WouldBlock`, every frame is answered by the
//! sans-io [`FrameHandler`]/[`UdpHandler`], and each batch of replies leaves
//! in one `sendmmsg`. A turn is bounded, so a flood that never drains cannot
//! starve signals, the stats timer or the other socket. When the kernel takes
//! only part of a reply batch, the socket is not read again until it is
//! writable, so memory stays bounded and the server drops no reply itself.
//!
//! Fault injection (tests only): with a delay set, answers go to a bounded
//! [`DelayQueue`] instead of the socket and leave when due; the poll timeout
//! is taken from the oldest one's due time, so the loop never sleeps on
//! them. SIGUSR1 re-reads the delay from `--fault-delay-file`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipcs_common::admin_http::{LoopState, TURN_AT_LEAST_EVERY};
use ipcs_common::sys::batch::Datagram;
use ipcs_common::sys::{Interface, MsgBatch, PacketSocket};
use ipcs_common::wire::records::{MAX_ETHERNET_FRAME_LEN, MAX_RECORDS_FRAME_LEN};
use ipcs_common::wire::ETHERTYPE;
use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, info, warn};

use crate::config::Identity;
use crate::fault::{parse_fault_delay, DelayQueue, FaultDelayError};
use crate::handler::FrameHandler;
use crate::stats::{Stats, StatsTicker};
use crate::udp::UdpHandler;

/// The raw backend socket.
pub const RAW: Token = Token(0);
/// The plain-UDP HSMAP socket.
pub const UDP: Token = Token(1);
/// SIGINT / SIGTERM (shut down), SIGUSR1 (re-read the fault delay).
pub const SIGNALS: Token = Token(2);

/// Receive slot for a frame: a whole Ethernet frame, so that request records
/// beyond the 64 a frame may carry are seen (and counted as dropped).
const FRAME_SLOT: usize = MAX_ETHERNET_FRAME_LEN;
/// Send slot: the longest reply frame (64 records and the capability).
const REPLY_SLOT: usize = MAX_RECORDS_FRAME_LEN;
/// Receive slot for a datagram: longer than a request, so a cut datagram
/// still has the wrong length and gets "malformed".
const DATAGRAM_SLOT: usize = 64;
/// Kernel buffer sizes asked for each socket: bursts from the load balancer
/// must not overflow while the reactor is between wake-ups.
const SOCKET_BUFFER_BYTES: usize = 4 << 20;
/// Batches one socket may receive per turn of the event loop before the
/// loop looks at signals, the stats timer and the other socket again.
const BATCHES_PER_TURN: usize = 16;

/// What the reactor needs besides the sockets.
#[derive(Debug, Clone)]
pub struct ReactorOptions {
    /// Frames or datagrams per `recvmmsg`/`sendmmsg`.
    pub batch: usize,
    /// Period of the stats log line.
    pub stats_interval: Duration,
    /// Fault injection (tests only); the default injects nothing.
    pub fault: FaultOptions,
}

/// Fault injection (tests only): answers held back to play a slow server.
#[derive(Debug, Clone, Default)]
pub struct FaultOptions {
    /// Delay of every answer from the start (zero: none).
    pub delay: Duration,
    /// Where SIGUSR1 reads a new delay from.
    pub delay_file: Option<PathBuf>,
    /// Most answers held back at once, per socket.
    pub queue: usize,
}

/// Why SIGUSR1 could not change the fault delay.
#[derive(Debug, thiserror::Error)]
enum FaultFileError {
    #[error("no --fault-delay-file was given")]
    NoFile,
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: FaultDelayError,
    },
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open raw socket on {iface}: {source} (needs CAP_NET_RAW)")]
    RawSocket { iface: String, source: io::Error },
    #[error("cannot bind UDP socket on {addr}: {source}")]
    UdpSocket { addr: SocketAddr, source: io::Error },
    #[error("cannot set up the event loop: {0}")]
    Poll(io::Error),
}

/// A bound, ready server; [`run`](Self::run) serves until SIGINT/SIGTERM.
pub struct Reactor {
    poll: Poll,
    events: Events,
    raw: Path<RawEndpoint>,
    udp: Option<Path<UdpEndpoint>>,
    signals: Signals,
    stats: Stats,
    ticker: StatsTicker,
    fault_file: Option<PathBuf>,
    /// Where the loop publishes its counters and liveness for the admin
    /// endpoint, at most every [`PUBLISH_EVERY`].
    admin: LoopState,
    next_publish: Instant,
}

/// How often the loop copies its counters out for `/metrics`: often enough
/// for a scrape, rare enough to stay off the hot path.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

impl Reactor {
    /// Opens the raw socket on `iface`, the UDP socket on `udp` if given,
    /// and registers them and the signals with a new `Poll`.
    pub fn bind(
        iface: &Interface,
        identity: Identity,
        udp: Option<SocketAddr>,
        options: ReactorOptions,
    ) -> Result<Reactor, StartError> {
        let poll = Poll::new().map_err(StartError::Poll)?;
        let batch = options.batch.max(1);
        let socket =
            PacketSocket::bind(iface, ETHERTYPE).map_err(|source| StartError::RawSocket {
                iface: iface.name.clone(),
                source,
            })?;
        if let Err(err) = socket.set_buffer_sizes(SOCKET_BUFFER_BYTES, SOCKET_BUFFER_BYTES) {
            warn!("cannot enlarge raw socket buffers: {err}");
        }
        poll.registry()
            .register(&mut SourceFd(&socket.as_raw_fd()), RAW, Interest::READABLE)
            .map_err(StartError::Poll)?;
        // Reply frames stay within the interface's MTU (1450 on an overlay),
        // which the capability record tells the load balancer.
        let handler = FrameHandler::new(identity.mac, identity.id).within_mtu(iface.mtu);
        tracing::info!(
            "{} has MTU {}: answering up to {} requests per frame",
            iface.name,
            iface.mtu,
            handler.max_records()
        );
        let raw = Path::new(
            RawEndpoint { socket, handler },
            RAW,
            MsgBatch::new(batch, FRAME_SLOT),
            MsgBatch::new(batch, REPLY_SLOT),
            &options.fault,
        );
        let udp = match udp {
            None => None,
            Some(addr) => {
                let mut socket =
                    bind_udp(addr).map_err(|source| StartError::UdpSocket { addr, source })?;
                poll.registry()
                    .register(&mut socket, UDP, Interest::READABLE)
                    .map_err(StartError::Poll)?;
                Some(Path::new(
                    UdpEndpoint {
                        socket,
                        handler: UdpHandler::new(identity.id),
                    },
                    UDP,
                    MsgBatch::new(batch, DATAGRAM_SLOT),
                    MsgBatch::new(batch, DATAGRAM_SLOT),
                    &options.fault,
                ))
            }
        };
        // SIGUSR1 is always caught, so a stray one (or one meant for a
        // server started without --fault-delay-file) is logged, not fatal.
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGUSR1]).map_err(StartError::Poll)?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(StartError::Poll)?;
        Ok(Reactor {
            poll,
            events: Events::with_capacity(16),
            raw,
            udp,
            signals,
            stats: Stats::default(),
            ticker: StatsTicker::new(options.stats_interval, Instant::now()),
            fault_file: options.fault.delay_file.clone(),
            admin: LoopState::default(),
            next_publish: Instant::now(),
        })
    }

    /// The UDP address actually bound (its port when `:0` was asked for).
    pub fn udp_local_addr(&self) -> Option<SocketAddr> {
        self.udp
            .as_ref()
            .and_then(|u| u.endpoint.socket.local_addr().ok())
    }

    /// What the admin endpoint reads: the counters and that the loop turns.
    pub fn admin_state(&self) -> LoopState {
        self.admin.clone()
    }

    /// Serves until SIGINT or SIGTERM; returns the final counters.
    pub fn run(mut self) -> io::Result<Stats> {
        let mut last_logged = Stats::default();
        // A socket whose turn ended with frames still queued is served again
        // after a poll that does not sleep.
        let mut raw_more = false;
        let mut udp_more = false;
        self.admin.publish(self.stats.counters(), true);
        loop {
            let timeout = if raw_more || udp_more {
                Duration::ZERO
            } else {
                let now = Instant::now();
                [
                    self.raw.held_timeout(now),
                    self.udp.as_ref().and_then(|u| u.held_timeout(now)),
                ]
                .into_iter()
                .flatten()
                .fold(self.ticker.timeout(now), Duration::min)
                // Turn at least every second, so a stuck loop shows in
                // /healthz.
                .min(TURN_AT_LEAST_EVERY)
            };
            if let Err(err) = self.poll.poll(&mut self.events, Some(timeout)) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            let mut signalled = false;
            for event in self.events.iter() {
                match event.token() {
                    RAW => raw_more = true,
                    UDP => udp_more = true,
                    SIGNALS => signalled = true,
                    _ => {}
                }
            }
            if signalled {
                let signals: Vec<i32> = self.signals.pending().collect();
                for signal in signals {
                    if signal == SIGUSR1 {
                        self.reload_fault_delay();
                    } else {
                        info!(signal, "shutting down");
                        self.admin.publish(self.stats.counters(), false);
                        return Ok(self.stats);
                    }
                }
            }
            if raw_more {
                raw_more = self.raw.serve(self.poll.registry(), &mut self.stats)? == Turn::More;
            }
            if let (true, Some(udp)) = (udp_more, &mut self.udp) {
                udp_more = udp.serve(self.poll.registry(), &mut self.stats)? == Turn::More;
            }
            let now = Instant::now();
            self.raw
                .release(now, self.poll.registry(), &mut self.stats)?;
            if let Some(udp) = &mut self.udp {
                udp.release(now, self.poll.registry(), &mut self.stats)?;
            }
            if now >= self.next_publish {
                self.admin.publish(self.stats.counters(), true);
                self.next_publish = now + PUBLISH_EVERY;
            }
            if self.ticker.poll(Instant::now()) {
                if self.stats != last_logged {
                    info!("stats {}", self.stats);
                    last_logged = self.stats.clone();
                } else {
                    debug!("stats {}", self.stats);
                }
            }
        }
    }
}

impl Reactor {
    /// SIGUSR1: the fault delay from `--fault-delay-file` applies to answers
    /// from now on. A missing or malformed file keeps the current delay.
    fn reload_fault_delay(&mut self) {
        match self.read_fault_delay() {
            Ok(delay) => {
                self.raw.held.set_delay(delay);
                if let Some(udp) = &mut self.udp {
                    udp.held.set_delay(delay);
                }
                info!(
                    "fault delay set to {} us (SIGUSR1; held now: {})",
                    delay.as_micros(),
                    self.raw.held.len() + self.udp.as_ref().map_or(0, |u| u.held.len())
                );
            }
            Err(err) => warn!(
                "SIGUSR1: fault delay unchanged at {} us: {err}",
                self.raw.held.delay().as_micros()
            ),
        }
    }

    fn read_fault_delay(&self) -> Result<Duration, FaultFileError> {
        let path = self.fault_file.as_ref().ok_or(FaultFileError::NoFile)?;
        let shown = || path.display().to_string();
        // A few bytes of a local file, read on a test's signal: blocking
        // the loop for that is harmless.
        let text = std::fs::read_to_string(path).map_err(|source| FaultFileError::Read {
            path: shown(),
            source,
        })?;
        parse_fault_delay(&text).map_err(|source| FaultFileError::Parse {
            path: shown(),
            source,
        })
    }
}

/// A non-blocking UDP socket on `addr` with enlarged buffers (as far as
/// `net.core.rmem_max` allows), so bursts from a load balancer fit.
fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(err) = socket
        .set_recv_buffer_size(SOCKET_BUFFER_BYTES)
        .and_then(|()| socket.set_send_buffer_size(SOCKET_BUFFER_BYTES))
    {
        warn!("cannot enlarge UDP socket buffers: {err}");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(UdpSocket::from_std(socket.into()))
}

/// How one socket's turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// Drained to `WouldBlock`, or waiting to be writable: a readiness
    /// event brings the socket back.
    Idle,
    /// The turn's budget ran out with frames possibly still queued.
    More,
}

/// What differs between the raw and the UDP side: the socket, how it is
/// (re)registered, how a received batch is answered, what failures count.
trait Endpoint {
    type Socket: AsRawFd;
    const NAME: &'static str;

    fn socket(&self) -> &Self::Socket;

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()>;

    /// Writes the answer to `msg` into `out` (a send slot) and returns its
    /// length; 0: no answer. It goes to `msg.addr` (`None` on raw sockets).
    fn answer(&self, msg: &Datagram<'_>, out: &mut [u8], stats: &mut Stats) -> usize;

    fn count_send_failures(stats: &mut Stats, failed: usize);
}

struct RawEndpoint {
    socket: PacketSocket,
    handler: FrameHandler,
}

impl Endpoint for RawEndpoint {
    type Socket = PacketSocket;
    const NAME: &'static str = "raw";

    fn socket(&self) -> &PacketSocket {
        &self.socket
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.reregister(&mut SourceFd(&self.socket.as_raw_fd()), token, interest)
    }

    fn answer(&self, frame: &Datagram<'_>, out: &mut [u8], stats: &mut Stats) -> usize {
        self.handler
            .answer_frame(frame.data, out, |outcome| stats.record_frame(outcome))
    }

    fn count_send_failures(stats: &mut Stats, failed: usize) {
        stats.frames_send_failed += failed as u64;
    }
}

struct UdpEndpoint {
    socket: UdpSocket,
    handler: UdpHandler,
}

impl Endpoint for UdpEndpoint {
    type Socket = UdpSocket;
    const NAME: &'static str = "UDP";

    fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.reregister(&mut self.socket, token, interest)
    }

    fn answer(&self, datagram: &Datagram<'_>, out: &mut [u8], stats: &mut Stats) -> usize {
        if datagram.addr.is_none() {
            return 0;
        }
        let answer = self.handler.handle(datagram.data);
        stats.record_udp(&answer);
        if answer.is_silent() {
            return 0;
        }
        let bytes = answer.as_bytes();
        out[..bytes.len()].copy_from_slice(bytes);
        bytes.len()
    }

    fn count_send_failures(stats: &mut Stats, failed: usize) {
        stats.udp_send_failed += failed as u64;
    }
}

/// An answer held back by fault injection.
struct Held {
    bytes: Vec<u8>,
    addr: Option<SocketAddr>,
}

/// Buffers of sent held answers kept for reuse, so a steady delayed load
/// does not allocate per answer.
const SPARE_BUFFERS: usize = 1024;

/// A socket with its receive and send batches.
struct Path<E: Endpoint> {
    endpoint: E,
    token: Token,
    rx: MsgBatch,
    tx: MsgBatch,
    /// WRITABLE interest is registered because `tx` still holds replies.
    blocked: bool,
    /// Answers held back by fault injection (empty and bypassed without).
    held: DelayQueue<Held>,
    /// Where an answer to be held is written (one send slot).
    scratch: Box<[u8]>,
    spare: Vec<Vec<u8>>,
}

impl<E: Endpoint> Path<E> {
    fn new(endpoint: E, token: Token, rx: MsgBatch, tx: MsgBatch, fault: &FaultOptions) -> Path<E> {
        debug_assert!(tx.capacity() >= rx.capacity());
        let scratch = vec![0; tx.slot_len()].into_boxed_slice();
        Path {
            endpoint,
            token,
            rx,
            tx,
            blocked: false,
            held: DelayQueue::new(fault.delay, fault.queue),
            scratch,
            spare: Vec::new(),
        }
    }

    /// Answers the received batch: into `tx` (which is empty and as large
    /// as `rx`, so every answer fits), or, while fault injection holds
    /// answers, into the delay queue.
    fn answer_received(&mut self, stats: &mut Stats) {
        if !self.held.holds_answers() {
            for msg in self.rx.iter() {
                self.tx
                    .push_unless_empty(msg.addr, |slot| self.endpoint.answer(&msg, slot, stats));
            }
            return;
        }
        let now = Instant::now();
        for msg in self.rx.iter() {
            let len = self.endpoint.answer(&msg, &mut self.scratch, stats);
            if len == 0 {
                continue;
            }
            let mut bytes = self.spare.pop().unwrap_or_default();
            bytes.clear();
            bytes.extend_from_slice(&self.scratch[..len]);
            let held = Held {
                bytes,
                addr: msg.addr,
            };
            if let Err(refused) = self.held.push(now, held) {
                stats.dropped_delay_queue_full += 1;
                recycle(&mut self.spare, refused.bytes);
            }
        }
    }

    /// When the oldest held answer is due, unless the socket is waiting to
    /// be writable (its readiness event wakes the loop then).
    fn held_timeout(&self, now: Instant) -> Option<Duration> {
        if self.blocked {
            None
        } else {
            self.held.timeout(now)
        }
    }

    /// Sends the held answers due at `now`, a batch at a time, for at most
    /// a turn's worth of batches.
    fn release(&mut self, now: Instant, registry: &Registry, stats: &mut Stats) -> io::Result<()> {
        for _ in 0..BATCHES_PER_TURN {
            let due = matches!(self.held.next_due(), Some(due) if due <= now);
            if self.blocked || !due {
                return Ok(());
            }
            if self.flush(stats) {
                while !self.tx.is_full() {
                    let Some(held) = self.held.pop_due(now) else {
                        break;
                    };
                    self.tx.push(&held.bytes, held.addr);
                    recycle(&mut self.spare, held.bytes);
                }
            }
            let sent = self.flush(stats);
            self.set_blocked(registry, !sent)?;
        }
        Ok(())
    }

    /// One turn: send what is queued, then receive and answer up to
    /// [`BATCHES_PER_TURN`] batches.
    fn serve(&mut self, registry: &Registry, stats: &mut Stats) -> io::Result<Turn> {
        for _ in 0..BATCHES_PER_TURN {
            if !self.flush(stats) {
                self.set_blocked(registry, true)?;
                return Ok(Turn::Idle);
            }
            match self.rx.recv_from(self.endpoint.socket()) {
                Ok(_) => self.answer_received(stats),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    if err.kind() != io::ErrorKind::WouldBlock {
                        // e.g. ENETDOWN while a link flaps: the error is
                        // consumed by reading it; wait for the next edge
                        // rather than exit or spin.
                        warn!("{} receive failed: {err}", E::NAME);
                    }
                    self.set_blocked(registry, false)?;
                    return Ok(Turn::Idle);
                }
            }
        }
        let sent = self.flush(stats);
        self.set_blocked(registry, !sent)?;
        Ok(if sent { Turn::More } else { Turn::Idle })
    }

    /// Sends what is queued; returns whether all of it is out.
    fn flush(&mut self, stats: &mut Stats) -> bool {
        if self.tx.is_empty() {
            return true;
        }
        let report = self.tx.send_to(self.endpoint.socket());
        if report.failed > 0 {
            E::count_send_failures(stats, report.failed);
            debug!(failed = report.failed, error = ?report.last_error, "{} sends refused by the kernel", E::NAME);
        }
        self.tx.is_empty()
    }

    /// READABLE, plus WRITABLE while answers wait to be sent.
    fn set_blocked(&mut self, registry: &Registry, blocked: bool) -> io::Result<()> {
        if self.blocked == blocked {
            return Ok(());
        }
        let interest = if blocked {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        self.endpoint.reregister(registry, self.token, interest)?;
        self.blocked = blocked;
        Ok(())
    }
}

fn recycle(spare: &mut Vec<Vec<u8>>, bytes: Vec<u8>) {
    if spare.len() < SPARE_BUFFERS {
        spare.push(bytes);
    }
}
