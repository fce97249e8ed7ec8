//! The registry's event loop: one thread, one mio `Poll`, non-blocking
//! sockets. It accepts connections, hands their bytes to the [`Sessions`]
//! state machine, carries out its decisions (queue, close) on the sockets,
//! flushes, and wakes it for its timers (TTL expiry, first-line deadline,
//! `WATCH` timeout) from the poll timeout. It owns the sockets and their
//! output bound; every decision about connections and membership is the
//! state machine's.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipcs_common::admin_http::TURN_AT_LEAST_EVERY;
use ipcs_common::registry_auth::unix_ms_now;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{info, warn};

use crate::admin::LoopState;
use crate::config::{Config, ConfigError};
use crate::conn::Conn;
use crate::discovery::Discovery;
use crate::session::{Admission, Close, Outbox, OutputFull, Sessions, WarnLimiter};
use crate::state::ConnId;

// Connection ids, and so their tokens, start at `session::FIRST_CONN`,
// above these.
const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const WAKER: Token = Token(2);

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

/// The registry: listener, connections and the session state machine.
pub struct Registry {
    poll: Poll,
    listener: TcpListener,
    local_addr: SocketAddr,
    signals: Option<Signals>,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    config: Config,
    conns: HashMap<ConnId, Conn>,
    sessions: Sessions,
    /// For the reactor's own warnings (accept failures).
    warn_limiter: WarnLimiter,
    /// Where each turn of the loop publishes its numbers for the admin
    /// endpoint.
    admin: LoopState,
    /// Where the live list goes for service discovery, and the version
    /// published there last.
    discovery: Discovery,
    discovery_version: Option<u64>,
}

/// The [`Outbox`] the session state machine writes to: the connections'
/// sockets. It notes the connections it queued output for, which the
/// reactor then flushes.
struct Sockets<'a> {
    poll: &'a mio::Registry,
    conns: &'a mut HashMap<ConnId, Conn>,
    written: &'a mut Vec<ConnId>,
}

impl Outbox for Sockets<'_> {
    fn send(&mut self, conn: ConnId, bytes: &[u8]) -> Result<(), OutputFull> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        c.queue(bytes)?;
        self.written.push(conn);
        Ok(())
    }

    fn close(&mut self, conn: ConnId, finish: bool) {
        if let Some(mut c) = self.conns.remove(&conn) {
            if finish {
                c.finish();
            }
            let _ = self.poll.deregister(&mut c.stream);
        }
    }
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
        Ok(Registry {
            poll,
            listener,
            local_addr,
            signals: None,
            stop: Arc::new(AtomicBool::new(false)),
            waker,
            sessions: Sessions::new(config.clone(), initial_version()),
            config,
            conns: HashMap::new(),
            warn_limiter: WarnLimiter::default(),
            admin: LoopState::default(),
            discovery: Discovery::default(),
            discovery_version: None,
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

    /// What the admin endpoint reads: the loop's numbers and liveness.
    pub fn admin_state(&self) -> LoopState {
        self.admin.clone()
    }

    /// What `/sd/servers` reads: the live list.
    pub fn discovery(&self) -> Discovery {
        self.discovery.clone()
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
            max_per_ip = self.config.max_per_ip,
            max_pending = self.config.max_pending,
            auth = self.config.auth.is_some(),
            allow = ?self.config.allow.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "registry listening"
        );
        if self.config.auth.is_none() {
            warn!("--insecure-no-auth: lines need no proof; anyone who reaches the port can register any server");
        }
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            self.on_tick(now);
            self.admin.publish(self.sessions.stats(), true);
            let membership = self.sessions.membership();
            if self.discovery_version != Some(membership.version()) {
                self.discovery_version = Some(membership.version());
                self.discovery.publish(membership.list());
            }
            // Turn at least every second, so a stuck loop shows in /healthz.
            let timeout = self
                .next_timeout(now)
                .map_or(TURN_AT_LEAST_EVERY, |t| t.min(TURN_AT_LEAST_EVERY));
            match self.poll.poll(&mut events, Some(timeout)) {
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
        let now = Instant::now();
        for id in self.sessions.ids() {
            self.close(id, Close::Shutdown, now);
        }
        self.admin.publish(self.sessions.stats(), false);
        info!("registry stopped");
        Ok(())
    }

    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        let next = self.sessions.next_deadline()?;
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
        let mut written = Vec::new();
        let mut out = Sockets {
            poll: self.poll.registry(),
            conns: &mut self.conns,
            written: &mut written,
        };
        let admission = self.sessions.on_accept(peer, Instant::now(), &mut out);
        let id = match admission {
            Admission::Open(id) => id,
            Admission::Refused(words) => {
                let _ = stream.write_all(words);
                return;
            }
        };
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(id as usize),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!(%peer, "cannot register connection: {e}");
            return self.sessions.on_closed(id, Close::Io(e), Instant::now());
        }
        // Lists span several segments; waiting for ACKs would add latency.
        let _ = stream.set_nodelay(true);
        self.conns
            .insert(id, Conn::new(stream, self.config.max_output));
    }

    fn on_conn_event(&mut self, id: ConnId, readable: bool) {
        if readable {
            self.read_conn(id);
        }
        self.flush_conn(id);
    }

    /// Reads until the socket is drained, handing the bytes to the session.
    fn read_conn(&mut self, id: ConnId) {
        let mut scratch = [0u8; 4096];
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            match conn.stream.read(&mut scratch) {
                Ok(0) => return self.close(id, Close::PeerClosed, Instant::now()),
                Ok(n) => {
                    let mut written = Vec::new();
                    let mut out = Sockets {
                        poll: self.poll.registry(),
                        conns: &mut self.conns,
                        written: &mut written,
                    };
                    let open = self.sessions.on_bytes(
                        id,
                        &scratch[..n],
                        Instant::now(),
                        unix_ms_now(),
                        &mut out,
                    );
                    // This connection's answers go out after the read, in
                    // on_conn_event; any for others, now.
                    written.retain(|&w| w != id);
                    self.flush_all(written);
                    if !open {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.close(id, Close::Io(e), Instant::now()),
            }
        }
    }

    /// Expires silent servers, handles due deadlines and answers watchers,
    /// then sends those answers at once.
    fn on_tick(&mut self, now: Instant) {
        let mut written = Vec::new();
        let mut out = Sockets {
            poll: self.poll.registry(),
            conns: &mut self.conns,
            written: &mut written,
        };
        self.sessions.on_tick(now, &mut out);
        self.flush_all(written);
    }

    fn flush_all(&mut self, mut ids: Vec<ConnId>) {
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            self.flush_conn(id);
        }
    }

    fn flush_conn(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if let Err(e) = conn.flush() {
            self.close(id, Close::Io(e), Instant::now());
        }
    }

    /// Closes a connection for a reason the reactor found (peer gone,
    /// socket error, shutdown) and tells the session state machine.
    fn close(&mut self, id: ConnId, why: Close, now: Instant) {
        if let Some(mut conn) = self.conns.remove(&id) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
        self.sessions.on_closed(id, why, now);
    }
}
