//! The server's event loop: one `mio::Poll` over the raw backend socket, the
//! optional UDP socket and SIGINT/SIGTERM. Each readable socket is drained
//! until `WouldBlock` in batches (`recvmmsg`), every frame is answered by the
//! sans-io [`FrameHandler`]/[`UdpHandler`], and the replies leave in one
//! `sendmmsg`. When the kernel takes only part of a reply batch, the socket
//! stops being read until it is writable again, so memory stays bounded and
//! no reply is lost to our own impatience.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use ipcs_common::sys::{Interface, MsgBatch, PacketSocket};
use ipcs_common::wire::{frame::MAX_FRAME_LEN, ETHERTYPE};
use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, info, warn};

use crate::config::Identity;
use crate::handler::{FrameHandler, FrameOutcome};
use crate::stats::{Stats, StatsTicker};
use crate::udp::UdpHandler;

/// The raw backend socket.
pub const RAW: Token = Token(0);
/// The plain-UDP HSMAP socket.
pub const UDP: Token = Token(1);
/// SIGINT / SIGTERM.
pub const SIGNALS: Token = Token(2);

/// Receive slot for a frame: room for Ethernet padding (60 bytes) and more,
/// so longer frames still arrive whole enough to be judged.
const FRAME_SLOT: usize = 128;
/// Receive slot for a datagram: longer than a request, so a cut datagram
/// still has the wrong length and gets "malformed".
const DATAGRAM_SLOT: usize = 64;
/// Kernel buffer sizes asked for each socket; bursts from the load
/// balancer must not overflow while the reactor is between wake-ups.
const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// What the reactor needs besides the sockets.
#[derive(Debug, Clone, Copy)]
pub struct ReactorOptions {
    /// Frames or datagrams per `recvmmsg`/`sendmmsg`.
    pub batch: usize,
    /// Period of the stats log line.
    pub stats_interval: Duration,
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

/// The raw socket with its batches and handler.
struct RawPath {
    socket: PacketSocket,
    handler: FrameHandler,
    rx: MsgBatch,
    tx: MsgBatch,
    /// WRITABLE interest is registered because `tx` still holds replies.
    blocked: bool,
}

/// The UDP socket with its batches and handler.
struct UdpPath {
    socket: UdpSocket,
    handler: UdpHandler,
    rx: MsgBatch,
    tx: MsgBatch,
    blocked: bool,
}

/// A bound, ready server; [`run`](Self::run) serves until SIGINT/SIGTERM.
pub struct Reactor {
    poll: Poll,
    events: Events,
    raw: RawPath,
    udp: Option<UdpPath>,
    signals: Signals,
    stats: Stats,
    ticker: StatsTicker,
}

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
        let batch = options.batch.max(1);
        let raw = RawPath {
            socket,
            handler: FrameHandler::new(identity.mac, identity.id),
            rx: MsgBatch::new(batch, FRAME_SLOT),
            tx: MsgBatch::new(batch, MAX_FRAME_LEN),
            blocked: false,
        };
        let udp = match udp {
            None => None,
            Some(addr) => {
                let mut socket =
                    bind_udp(addr).map_err(|source| StartError::UdpSocket { addr, source })?;
                poll.registry()
                    .register(&mut socket, UDP, Interest::READABLE)
                    .map_err(StartError::Poll)?;
                Some(UdpPath {
                    socket,
                    handler: UdpHandler::new(identity.id),
                    rx: MsgBatch::new(batch, DATAGRAM_SLOT),
                    tx: MsgBatch::new(batch, DATAGRAM_SLOT),
                    blocked: false,
                })
            }
        };
        let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(StartError::Poll)?;
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
        })
    }

    /// The UDP address actually bound (its port when `:0` was asked for).
    pub fn udp_local_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().and_then(|u| u.socket.local_addr().ok())
    }

    /// Serves until SIGINT or SIGTERM; returns the final counters.
    pub fn run(mut self) -> io::Result<Stats> {
        let mut last_logged = Stats::default();
        loop {
            let timeout = self.ticker.timeout(Instant::now());
            if let Err(err) = self.poll.poll(&mut self.events, Some(timeout)) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            for event in self.events.iter() {
                match event.token() {
                    RAW => self.raw.serve(self.poll.registry(), &mut self.stats)?,
                    UDP => {
                        if let Some(udp) = &mut self.udp {
                            udp.serve(self.poll.registry(), &mut self.stats)?;
                        }
                    }
                    SIGNALS => {
                        if let Some(signal) = self.signals.pending().next() {
                            info!(signal, "shutting down");
                            return Ok(self.stats);
                        }
                    }
                    _ => {}
                }
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

/// Sets the interest of `fd` to READABLE, plus WRITABLE while replies wait.
fn set_blocked(
    registry: &Registry,
    source: &mut impl mio::event::Source,
    token: Token,
    blocked: &mut bool,
    now_blocked: bool,
) -> io::Result<()> {
    if *blocked == now_blocked {
        return Ok(());
    }
    let interest = if now_blocked {
        Interest::READABLE | Interest::WRITABLE
    } else {
        Interest::READABLE
    };
    registry.reregister(source, token, interest)?;
    *blocked = now_blocked;
    Ok(())
}

/// Whether a receive error means "nothing more for now" rather than a fault.
fn drained(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}

impl RawPath {
    /// Sends what is queued, then reads and answers until the socket is
    /// empty or replies back up.
    fn serve(&mut self, registry: &Registry, stats: &mut Stats) -> io::Result<()> {
        let fd = self.socket.as_raw_fd();
        loop {
            if !self.flush(stats) {
                return set_blocked(registry, &mut SourceFd(&fd), RAW, &mut self.blocked, true);
            }
            match self.rx.recv_from(&self.socket) {
                Ok(_) => {}
                Err(err) if drained(&err) => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    // e.g. ENETDOWN while the link flaps: report it and wait
                    // for the next readiness edge rather than exit.
                    warn!("raw socket receive failed: {err}");
                    break;
                }
            }
            // tx was empty and is as large as rx: every reply fits.
            for datagram in self.rx.iter() {
                let outcome = self.handler.handle(datagram.data);
                stats.record_frame(&outcome);
                if let FrameOutcome::Reply(repr) = outcome {
                    self.tx.push_with(None, |slot| repr.emit_into(slot).len());
                }
            }
        }
        set_blocked(registry, &mut SourceFd(&fd), RAW, &mut self.blocked, false)
    }

    /// Returns whether everything queued is out.
    fn flush(&mut self, stats: &mut Stats) -> bool {
        if self.tx.is_empty() {
            return true;
        }
        let report = self.tx.send_to(&self.socket);
        if report.failed > 0 {
            stats.frames_send_failed += report.failed as u64;
            debug!(failed = report.failed, error = ?report.last_error, "replies refused by the kernel");
        }
        self.tx.is_empty()
    }
}

impl UdpPath {
    fn serve(&mut self, registry: &Registry, stats: &mut Stats) -> io::Result<()> {
        loop {
            if !self.flush(stats) {
                return set_blocked(registry, &mut self.socket, UDP, &mut self.blocked, true);
            }
            match self.rx.recv_from(&self.socket) {
                Ok(_) => {}
                Err(err) if drained(&err) => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    warn!("UDP receive failed: {err}");
                    break;
                }
            }
            for datagram in self.rx.iter() {
                let Some(addr) = datagram.addr else { continue };
                let answer = self.handler.handle(datagram.data);
                stats.record_udp(&answer);
                self.tx.push(answer.as_bytes(), Some(addr));
            }
        }
        set_blocked(registry, &mut self.socket, UDP, &mut self.blocked, false)
    }

    fn flush(&mut self, stats: &mut Stats) -> bool {
        if self.tx.is_empty() {
            return true;
        }
        let report = self.tx.send_to(&self.socket);
        if report.failed > 0 {
            stats.udp_send_failed += report.failed as u64;
            debug!(failed = report.failed, error = ?report.last_error, "UDP answers refused by the kernel");
        }
        self.tx.is_empty()
    }
}
