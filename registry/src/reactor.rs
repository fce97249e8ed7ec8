//! The registry's event loop: one thread, one mio `Poll`, non-blocking
//! sockets. It accepts connections, splits their bytes into lines, feeds the
//! [`Membership`] state machine, writes the answers, and drives every timer
//! (TTL expiry, first-line deadline, `WATCH` timeout) from the poll timeout.
//! It owns the sockets and the limits; the decisions about membership are
//! the state machine's.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipcs_common::registry_proto::{ClientLine, ProtoError, RegistryLine, ServerEntry};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, info, warn};

use crate::cidr;
use crate::config::{Config, ConfigError};
use crate::conn::{Conn, PendingWatch};
use crate::metrics::{self, Counters};
use crate::state::{ConnId, HelloError, Membership};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const WAKER: Token = Token(2);
/// Connection ids (and their tokens) start here, above the fixed tokens.
const FIRST_CONN: ConnId = 16;

/// Why the registry could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("event loop failed: {0}")]
    Poll(#[source] io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] io::Error),
}

/// Stops a running registry from another thread.
#[derive(Debug, Clone)]
pub struct StopHandle {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl StopHandle {
    /// Asks the loop to return; it does so within one iteration.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            warn!("cannot wake the registry loop: {e}");
        }
    }
}

/// Why a connection is being closed (for the logs).
#[derive(Debug)]
enum Close {
    PeerClosed,
    Io(io::Error),
    Refused,
    FirstLineTimeout,
    OutputFull,
    Expired,
    Replaced(ConnId),
    Shutdown,
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Close::PeerClosed => f.write_str("connection closed by peer"),
            Close::Io(e) => write!(f, "socket error: {e}"),
            Close::Refused => f.write_str("refused"),
            Close::FirstLineTimeout => f.write_str("no valid line in time"),
            Close::OutputFull => f.write_str("peer not reading its answers"),
            Close::Expired => f.write_str("no BEAT within the TTL"),
            Close::Replaced(by) => write!(f, "replaced by connection {by}"),
            Close::Shutdown => f.write_str("registry stopping"),
        }
    }
}

/// Logs a limit being hit at most once a second per kind, with a count, so a
/// flood cannot turn into a flood of log lines.
#[derive(Debug, Default)]
struct WarnLimiter {
    last: HashMap<&'static str, Instant>,
}

impl WarnLimiter {
    fn allow(&mut self, kind: &'static str, now: Instant) -> bool {
        match self.last.get(kind) {
            Some(&at) if now.duration_since(at) < Duration::from_secs(1) => false,
            _ => {
                self.last.insert(kind, now);
                true
            }
        }
    }
}

/// The registry: listener, connections, membership and timers.
pub struct Registry {
    poll: Poll,
    listener: TcpListener,
    local_addr: SocketAddr,
    signals: Option<Signals>,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    config: Config,
    conns: HashMap<ConnId, Conn>,
    next_conn: ConnId,
    membership: Membership,
    /// First-line and `WATCH` deadlines. Entries are not removed when a
    /// connection closes or its watch is answered; a due entry is checked
    /// against the connection's current state and dropped if stale.
    deadlines: BinaryHeap<Reverse<(Instant, ConnId)>>,
    /// The encoded `SERVERS ... END` block and the version it shows.
    list_cache: Option<(u64, Vec<u8>)>,
    /// The version parked watchers were last told about.
    announced: u64,
    counters: Counters,
    warn_limiter: WarnLimiter,
}

/// Starts a new registration version above any an earlier run of the
/// registry can have reached: microseconds since the Unix epoch.
fn initial_version() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
}

/// Accept-queue length asked for (the kernel caps it at `net.core.somaxconn`).
/// A restarted registry is reconnected by every server and balancer at once;
/// with the usual 128 a burst beyond that loses SYNs, and each lost SYN
/// costs its sender a 1 s retransmission before it is listed again.
const LISTEN_BACKLOG: i32 = 4096;

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // A restarted registry must rebind at once, despite TIME_WAIT leftovers.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

impl Registry {
    /// Checks `config` and binds the listening socket.
    pub fn bind(config: Config) -> Result<Registry, RegistryError> {
        config.validate()?;
        let bind_err = |source| RegistryError::Bind {
            addr: config.listen,
            source,
        };
        let poll = Poll::new().map_err(RegistryError::Poll)?;
        let mut listener = listen(config.listen).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(RegistryError::Poll)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(RegistryError::Poll)?);
        let membership = Membership::new(config.ttl, config.max_servers, initial_version());
        Ok(Registry {
            poll,
            listener,
            local_addr,
            signals: None,
            stop: Arc::new(AtomicBool::new(false)),
            waker,
            announced: membership.version(),
            membership,
            config,
            conns: HashMap::new(),
            next_conn: FIRST_CONN,
            deadlines: BinaryHeap::new(),
            list_cache: None,
            counters: Counters::default(),
            warn_limiter: WarnLimiter::default(),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            stop: self.stop.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Makes SIGINT and SIGTERM stop the loop cleanly.
    pub fn handle_signals(&mut self) -> Result<(), RegistryError> {
        let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(RegistryError::Signals)?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(RegistryError::Signals)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Runs until stopped (signal or [`StopHandle`]); closes every
    /// connection on the way out.
    pub fn run(mut self) -> Result<(), RegistryError> {
        info!(
            listen = %self.local_addr,
            ttl_ms = self.config.ttl.as_millis() as u64,
            max_connections = self.config.max_connections,
            max_servers = self.config.max_servers,
            allow = ?self.config.allow.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "registry listening"
        );
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            self.on_timers(now);
            self.announce();
            let timeout = self.next_timeout(now);
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(RegistryError::Poll(e)),
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    SIGNALS => {
                        if let Some(signals) = self.signals.as_mut() {
                            for signal in signals.pending() {
                                info!(signal, "signal received, stopping");
                                self.stop.store(true, Ordering::SeqCst);
                            }
                        }
                    }
                    WAKER => {}
                    Token(token) => self.on_conn_event(token as ConnId, event.is_readable()),
                }
            }
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
        }
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.close(id, Close::Shutdown);
        }
        info!("registry stopped");
        Ok(())
    }

    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        let membership = self.membership.next_expiry();
        let other = self.deadlines.peek().map(|Reverse((at, _))| *at);
        let next = match (membership, other) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        // Whole milliseconds, rounded up: waking a hair early would only
        // spin the loop until the deadline.
        let wait = next.saturating_duration_since(now);
        Some(Duration::from_millis(wait.as_micros().div_ceil(1000) as u64))
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => self.on_accept(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors, say. The pending connections stay
                    // in the backlog and are retried on the next event.
                    if self.warn_limiter.allow("accept", Instant::now()) {
                        warn!("accept failed: {e}");
                    }
                    return;
                }
            }
        }
    }

    fn on_accept(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        let now = Instant::now();
        if self.conns.len() >= self.config.max_connections {
            self.counters.connections_refused += 1;
            if self.warn_limiter.allow(metrics::CONNECTIONS_REFUSED, now) {
                warn!(
                    %peer,
                    max = self.config.max_connections,
                    refused_total = self.counters.connections_refused,
                    "too many connections, refusing"
                );
            }
            let _ = stream.write_all(b"ERR too many connections\n");
            return;
        }
        let id = self.next_conn;
        self.next_conn += 1;
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(id as usize),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!(%peer, "cannot register connection: {e}");
            return;
        }
        // Lists span several segments; waiting for ACKs would add latency.
        let _ = stream.set_nodelay(true);
        self.counters.connections_accepted += 1;
        let deadline = now + self.config.first_line_timeout;
        let conn = Conn::new(
            stream,
            peer,
            self.config.max_line,
            self.config.max_output,
            deadline,
        );
        self.conns.insert(id, conn);
        self.deadlines.push(Reverse((deadline, id)));
        debug!(conn = id, %peer, "connection accepted");
    }

    fn on_conn_event(&mut self, id: ConnId, readable: bool) {
        if readable {
            self.read_conn(id);
        }
        self.flush_conn(id);
    }

    /// Reads until the socket is drained, handling each complete line.
    fn read_conn(&mut self, id: ConnId) {
        let mut scratch = [0u8; 4096];
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            match conn.stream.read(&mut scratch) {
                Ok(0) => return self.close(id, Close::PeerClosed),
                Ok(n) => {
                    if !self.on_bytes(id, &scratch[..n]) {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.close(id, Close::Io(e)),
            }
        }
    }

    /// Feeds bytes to the connection's line buffer; false once it is closed.
    fn on_bytes(&mut self, id: ConnId, mut input: &[u8]) -> bool {
        let now = Instant::now();
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return false;
            };
            let line = match conn.lines.next_line(&mut input) {
                Ok(Some(line)) => ClientLine::parse_bytes(line),
                Ok(None) => return true,
                Err(too_long) => {
                    self.counters.lines_too_long += 1;
                    if self.warn_limiter.allow(metrics::LINES_TOO_LONG, now) {
                        warn!(conn = id, peer = %conn.peer, "{too_long}, closing");
                    }
                    self.refuse(id, &RegistryLine::err(too_long), true);
                    return false;
                }
            };
            self.on_line(id, line, now);
            if !self.conns.contains_key(&id) {
                return false;
            }
        }
    }

    fn on_line(&mut self, id: ConnId, line: Result<ClientLine, ProtoError>, now: Instant) {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                self.counters.bad_lines += 1;
                return self.refuse(id, &RegistryLine::err(e), false);
            }
        };
        match line {
            ClientLine::Hello { .. } => {
                let entry = line.entry().expect("a HELLO has an entry");
                self.on_hello(id, entry, now);
            }
            ClientLine::Beat => {
                if self.membership.beat(id, now) {
                    self.counters.beats += 1;
                } else {
                    self.counters.bad_lines += 1;
                    self.refuse(id, &RegistryLine::err("not registered"), false);
                }
            }
            ClientLine::List => {
                self.mark_known(id);
                self.send_list(id);
            }
            ClientLine::Watch(version) => self.on_watch(id, version, now),
            ClientLine::Stats => {
                self.mark_known(id);
                self.send_stats(id);
            }
        }
    }

    fn on_hello(&mut self, id: ConnId, entry: ServerEntry, now: Instant) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let peer = conn.peer;
        if !cidr::allowed(&self.config.allow, peer.ip()) {
            self.counters.hello_not_allowed += 1;
            if self.warn_limiter.allow(metrics::HELLO_NOT_ALLOWED, now) {
                warn!(%peer, id = entry.id, mac = %entry.mac, "registration from outside --allow refused");
            }
            return self.refuse(id, &RegistryLine::err("source address not allowed"), false);
        }
        match self.membership.hello(id, entry, now) {
            Ok(registered) => {
                self.counters.registrations += 1;
                self.mark_known(id);
                info!(
                    conn = id, %peer, id = entry.id, mac = %entry.mac, ip = %entry.ip, udp = ?entry.udp,
                    version = self.membership.version(), "server registered"
                );
                let ttl_ms = self.membership.ttl().as_millis() as u64;
                self.send(id, &RegistryLine::Ok { ttl_ms }.to_string());
                if let Some(old) = registered.replaced {
                    self.close(old, Close::Replaced(id));
                }
            }
            Err(e) => {
                match e {
                    HelloError::IdTaken { .. } => self.counters.hello_id_taken += 1,
                    HelloError::TableFull { .. } => self.counters.hello_table_full += 1,
                    HelloError::ZeroId => self.counters.bad_lines += 1,
                }
                if self.warn_limiter.allow("hello refused", now) {
                    warn!(%peer, id = entry.id, mac = %entry.mac, "registration refused: {e:?}");
                }
                self.refuse(id, &RegistryLine::err(e), false);
            }
        }
    }

    fn on_watch(&mut self, id: ConnId, version: u64, now: Instant) {
        self.mark_known(id);
        let current = self.membership.version();
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.watch.is_some() {
            // One at a time keeps the deadline heap bounded per connection.
            self.counters.bad_lines += 1;
            return self.refuse(id, &RegistryLine::err("watch already pending"), false);
        }
        if version != current {
            return self.send_list(id);
        }
        let deadline = now + self.config.watch_timeout;
        conn.watch = Some(PendingWatch { version, deadline });
        self.deadlines.push(Reverse((deadline, id)));
    }

    fn mark_known(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.known = true;
        }
    }

    /// Answers `ERR`; closes the connection if it never sent a valid line
    /// (or `always_close`).
    fn refuse(&mut self, id: ConnId, err: &RegistryLine, always_close: bool) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        debug!(conn = id, peer = %conn.peer, "{err}");
        let close = always_close || !conn.known;
        let queued = conn.queue(format!("{err}\n").as_bytes());
        if close {
            conn.finish();
            self.close(id, Close::Refused);
        } else if queued.is_err() {
            self.overflow(id);
        }
    }

    /// Queues one line (without its newline) to `id`.
    fn send(&mut self, id: ConnId, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.send_bytes(id, &bytes);
    }

    fn send_bytes(&mut self, id: ConnId, bytes: &[u8]) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.queue(bytes).is_err() {
            self.overflow(id);
        }
    }

    fn overflow(&mut self, id: ConnId) {
        self.counters.output_overflows += 1;
        if let Some(conn) = self.conns.get(&id) {
            if self
                .warn_limiter
                .allow(metrics::OUTPUT_OVERFLOWS, Instant::now())
            {
                warn!(
                    conn = id, peer = %conn.peer, pending = conn.pending_output(),
                    "peer is not reading its answers, closing"
                );
            }
        }
        self.close(id, Close::OutputFull);
    }

    fn send_list(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let version = self.membership.version();
        let block = match &self.list_cache {
            Some((v, bytes)) if *v == version => bytes,
            _ => {
                let entries = self.membership.list();
                let mut bytes = Vec::with_capacity(64 + 48 * entries.len());
                let header = RegistryLine::Servers {
                    version,
                    count: entries.len(),
                };
                let _ = header.write(&mut bytes);
                for entry in entries {
                    let _ = RegistryLine::Entry(entry).write(&mut bytes);
                }
                let _ = RegistryLine::End.write(&mut bytes);
                &self.list_cache.insert((version, bytes)).1
            }
        };
        self.counters.lists_sent += 1;
        if conn.queue(block).is_err() {
            self.overflow(id);
        }
    }

    fn send_stats(&mut self, id: ConnId) {
        let mut bytes = Vec::new();
        let gauges = [
            (metrics::CONNECTIONS_OPEN, self.conns.len() as u64),
            (metrics::SERVERS, self.membership.len() as u64),
            (metrics::VERSION, self.membership.version()),
        ];
        for (name, value) in gauges.into_iter().chain(self.counters.named()) {
            let _ = RegistryLine::Stat {
                name: name.to_string(),
                value,
            }
            .write(&mut bytes);
        }
        let _ = RegistryLine::End.write(&mut bytes);
        self.send_bytes(id, &bytes);
    }

    fn flush_conn(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if let Err(e) = conn.flush() {
            self.close(id, Close::Io(e));
        }
    }

    /// Expires silent servers and handles due first-line and watch deadlines.
    fn on_timers(&mut self, now: Instant) {
        for (id, entry) in self.membership.expire(now) {
            self.counters.expired += 1;
            info!(
                conn = id, id = entry.id, mac = %entry.mac, version = self.membership.version(),
                "server expired: no BEAT within the TTL"
            );
            self.close(id, Close::Expired);
        }
        while let Some(&Reverse((at, id))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(conn) = self.conns.get(&id) else {
                continue;
            };
            if !conn.known && conn.first_line_deadline <= now {
                self.counters.first_line_timeouts += 1;
                self.close(id, Close::FirstLineTimeout);
            } else if conn.watch.is_some_and(|w| w.deadline <= now) {
                self.answer_watch(id);
            }
        }
    }

    /// Answers every parked `WATCH` once the version has moved.
    fn announce(&mut self) {
        let version = self.membership.version();
        if version == self.announced {
            return;
        }
        self.announced = version;
        let watchers: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.watch.is_some_and(|w| w.version != version))
            .map(|(&id, _)| id)
            .collect();
        for id in watchers {
            self.answer_watch(id);
        }
    }

    /// Answers the connection's pending `WATCH` with the current list.
    fn answer_watch(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.watch = None;
        }
        self.send_list(id);
        self.flush_conn(id);
    }

    fn close(&mut self, id: ConnId, why: Close) {
        let Some(mut conn) = self.conns.remove(&id) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        let peer = conn.peer;
        let removed = self.membership.closed(id);
        match (&why, removed) {
            (_, Some(entry)) => info!(
                conn = id, %peer, id = entry.id, mac = %entry.mac,
                version = self.membership.version(), "server removed: {why}"
            ),
            (Close::Replaced(by), None) => {
                info!(conn = id, %peer, by, "old connection of a re-registered server closed")
            }
            (Close::FirstLineTimeout, None) => {
                if self
                    .warn_limiter
                    .allow(metrics::FIRST_LINE_TIMEOUTS, Instant::now())
                {
                    warn!(conn = id, %peer, "no valid line in time, closing");
                }
            }
            (_, None) => debug!(conn = id, %peer, "connection closed: {why}"),
        }
    }
}
