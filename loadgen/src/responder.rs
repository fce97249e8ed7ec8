//! A small HSMAP responder over UDP, for loadgen's own tests and for
//! measuring loadgen alone (`examples/echo_responder.rs`). It computes every
//! answer with [`Request::answer`] (that is, `Op::apply`) and replies with
//! [`Reply`] bytes, moving datagrams in batches with [`MsgBatch`] (replies
//! to one client address leave in one segmentation-offloaded send when the
//! kernel allows, as loadgen's own requests do). It can
//! misbehave on purpose — drop, answer wrongly, stall — so that tests can
//! check that loadgen reports exactly that.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ipcs_common::sys::udp::{set_udp_segment, MAX_GSO_SEGMENTS};
use ipcs_common::sys::MsgBatch;
use ipcs_common::wire::hsmap::REPLY_LEN;
use ipcs_common::wire::{Reply, Request};
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

const SOCKET: Token = Token(0);
const BATCH: usize = 256;
const SOCKET_BUFFER: usize = 4 << 20;
/// How often the loop looks at the stop flag.
const TICK: Duration = Duration::from_millis(10);
/// Most replies held back during a stall (more are dropped).
const MAX_HELD: usize = 1 << 20;
/// Client addresses gathered per round of offloaded sends.
const MAX_GROUPS: usize = 16;

/// Replies waiting to be sent: with segmentation offload, gathered per
/// client address into one message each; without, one datagram per slot.
struct ReplyQueue {
    batch: MsgBatch,
    groups: Option<Vec<(SocketAddr, Vec<u8>)>>,
}

impl ReplyQueue {
    fn new(gso: bool) -> ReplyQueue {
        if gso {
            ReplyQueue {
                batch: MsgBatch::new(MAX_GROUPS, MAX_GSO_SEGMENTS * REPLY_LEN),
                groups: Some(Vec::with_capacity(MAX_GROUPS)),
            }
        } else {
            ReplyQueue {
                batch: MsgBatch::new(BATCH, REPLY_LEN),
                groups: None,
            }
        }
    }

    /// Queues a reply; returns how many were sent to make room.
    fn push(
        &mut self,
        reply: &[u8; REPLY_LEN],
        addr: SocketAddr,
        socket: &mio::net::UdpSocket,
    ) -> u64 {
        let mut sent = 0;
        let Some(groups) = &mut self.groups else {
            if self.batch.is_full() {
                sent = self.flush(socket);
            }
            self.batch.push(reply, Some(addr));
            return sent;
        };
        let position = groups.iter().position(|(a, _)| *a == addr);
        let full = position.is_some_and(|i| groups[i].1.len() == MAX_GSO_SEGMENTS * REPLY_LEN);
        if full || (position.is_none() && groups.len() == MAX_GROUPS) {
            sent = self.flush(socket);
        }
        let groups = self.groups.as_mut().expect("gso mode");
        match groups.iter_mut().find(|(a, _)| *a == addr) {
            Some((_, bytes)) => bytes.extend_from_slice(reply),
            None => groups.push((addr, reply.to_vec())),
        }
        sent
    }

    /// Sends what is queued; what the kernel will not take now is dropped
    /// (a responder that cannot keep up loses replies, as a real one would).
    /// Returns how many replies left.
    fn flush(&mut self, socket: &mio::net::UdpSocket) -> u64 {
        let mut sizes = Vec::new();
        if let Some(groups) = &mut self.groups {
            for (addr, bytes) in groups.drain(..) {
                self.batch.push(&bytes, Some(addr));
                sizes.push((bytes.len() / REPLY_LEN) as u64);
            }
        }
        let report = self.batch.send_to(socket);
        self.batch.clear();
        if sizes.is_empty() {
            report.sent as u64
        } else {
            sizes.iter().take(report.sent).sum()
        }
    }
}

/// A pause of the responder: from `after` past its first request, for
/// `length`, it keeps reading but answers nothing; then it answers
/// everything it held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    pub after: Duration,
    pub length: Duration,
}

/// Deliberate misbehaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Ignore every n-th request (0: never).
    pub drop_one_in: u64,
    /// Answer every n-th request with a wrong result (0: never).
    pub wrong_one_in: u64,
    pub stall: Option<Stall>,
    /// Answer at most this many requests per second and drop the rest, like
    /// a server at its capacity (0: no limit). Allows bursts of 10 ms.
    pub max_rps: u64,
}

/// A token bucket for [`Faults::max_rps`].
struct RateCap {
    per_sec: u64,
    tokens: f64,
    last: Instant,
}

impl RateCap {
    fn admit(&mut self, now: Instant) -> bool {
        if self.per_sec == 0 {
            return true;
        }
        let burst = (self.per_sec as f64 / 100.0).max(1.0);
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.per_sec as f64;
        self.tokens = (self.tokens + refill).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How to run the responder.
#[derive(Debug, Clone, Copy)]
pub struct ResponderConfig {
    pub bind: SocketAddr,
    /// Replies carry server ids `1..=server_ids` in turn, like a load
    /// balancer spreading over that many servers.
    pub server_ids: u8,
    pub faults: Faults,
}

impl ResponderConfig {
    /// A well-behaved responder on `bind` that reports server id 1.
    pub fn new(bind: SocketAddr) -> ResponderConfig {
        ResponderConfig {
            bind,
            server_ids: 1,
            faults: Faults::default(),
        }
    }
}

/// What the responder did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponderStats {
    pub received: u64,
    pub replied: u64,
    pub dropped: u64,
    pub wrong: u64,
    pub malformed: u64,
}

/// Binds the responder's socket (non-blocking, large buffers).
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Answers requests on `socket` until `stop` is set.
pub fn serve(
    socket: UdpSocket,
    cfg: &ResponderConfig,
    stop: &AtomicBool,
) -> io::Result<ResponderStats> {
    let mut socket = mio::net::UdpSocket::from_std(socket);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut socket, SOCKET, Interest::READABLE)?;
    let mut events = Events::with_capacity(4);
    let mut inbox = MsgBatch::new(BATCH, 64);
    let gso = set_udp_segment(&socket, REPLY_LEN as u16).is_ok();
    let mut outbox = ReplyQueue::new(gso);
    let mut held: Vec<([u8; REPLY_LEN], SocketAddr)> = Vec::new();
    let mut stats = ResponderStats::default();
    let mut first_request: Option<Instant> = None;
    let server_ids = u64::from(cfg.server_ids.max(1));
    let mut cap = RateCap {
        per_sec: cfg.faults.max_rps,
        tokens: (cfg.faults.max_rps as f64 / 100.0).max(1.0),
        last: Instant::now(),
    };
    while !stop.load(Ordering::Relaxed) {
        let stall_end = cfg.faults.stall.zip(first_request).map(|(s, t)| {
            let begin = t + s.after;
            (begin, begin + s.length)
        });
        let now = Instant::now();
        let stalled = stall_end.is_some_and(|(b, e)| now >= b && now < e);
        let timeout = match stall_end {
            Some((_, end)) if stalled => end.saturating_duration_since(now).min(TICK),
            _ => TICK,
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        loop {
            match inbox.recv_from(&socket) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("responder receive failed: {e}");
                    break;
                }
            }
            let now = Instant::now();
            first_request.get_or_insert(now);
            let stalled = cfg
                .faults
                .stall
                .zip(first_request)
                .is_some_and(|(s, t)| now >= t + s.after && now < t + s.after + s.length);
            for datagram in inbox.iter() {
                stats.received += 1;
                let n = stats.received;
                let (Some(addr), Ok(request)) =
                    (datagram.addr, Request::parse_bytes(datagram.data))
                else {
                    stats.malformed += 1;
                    continue;
                };
                let over_capacity = !cap.admit(now);
                if over_capacity || (cfg.faults.drop_one_in > 0 && n % cfg.faults.drop_one_in == 0)
                {
                    stats.dropped += 1;
                    continue;
                }
                let mut result = request.answer();
                if cfg.faults.wrong_one_in > 0 && n % cfg.faults.wrong_one_in == 0 {
                    result = result.wrapping_add(1);
                    stats.wrong += 1;
                }
                let reply = Reply {
                    result,
                    server_id: (n % server_ids + 1) as u8,
                }
                .to_bytes();
                if stalled {
                    if held.len() < MAX_HELD {
                        held.push((reply, addr));
                    } else {
                        stats.dropped += 1;
                    }
                    continue;
                }
                stats.replied += outbox.push(&reply, addr, &socket);
            }
            stats.replied += outbox.flush(&socket);
        }
        let now = Instant::now();
        let stall_over = stall_end.is_some_and(|(_, e)| now >= e);
        if stall_over && !held.is_empty() {
            for (reply, addr) in held.drain(..) {
                stats.replied += outbox.push(&reply, addr, &socket);
            }
            stats.replied += outbox.flush(&socket);
        }
    }
    Ok(stats)
}

/// A responder on its own thread; stopped (and joined) on drop.
pub struct Responder {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<ResponderStats>>>,
}

impl Responder {
    /// Binds `cfg.bind` and starts answering.
    pub fn spawn(cfg: ResponderConfig) -> io::Result<Responder> {
        let socket = bind(cfg.bind)?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::Builder::new()
            .name("responder".into())
            .spawn(move || serve(socket, &cfg, &flag))?;
        Ok(Responder {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it answers on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops it and returns what it did.
    pub fn stop(mut self) -> io::Result<ResponderStats> {
        self.finish()
    }

    fn finish(&mut self) -> io::Result<ResponderStats> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("responder panicked"))),
            None => Ok(ResponderStats::default()),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}
