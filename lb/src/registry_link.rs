//! The load balancer's connection to the registry: a non-blocking TCP
//! client driven by the reactor (readiness events and a deadline), which
//! keeps the shared [`ServerSnapshot`] current.
//!
//! ```text
//!  Down --retry time--> Resolving --addresses--> Connecting --connected--> Up
//!   ^                       |                        |                      |
//!   +------ failure (backoff doubles, jittered, capped) ---------------------+
//! ```
//!
//! Once up it sends `LIST`, then after each answer `WATCH <version>` no
//! sooner than one interval after the previous request: the registry answers
//! a `WATCH` at once when its list has changed (so a change arrives
//! immediately), else after its own watch timeout. An answer that takes
//! longer than the answer timeout counts as a dead registry.
//!
//! While the registry is unreachable the last snapshot stays in use; the
//! change of state is logged once each way, not once per attempt. Host names
//! are resolved on a short-lived thread so a slow DNS never stalls the
//! reactor.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipcs_common::registry_client::{ClientError, ListReader, ServerList, MAX_SERVERS};
use ipcs_common::registry_proto::ClientLine;
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};

use crate::metrics::{bump, RegistryStatus};
use crate::snapshot::{Backend, ServerSnapshot, SharedSnapshot};

/// How the link talks to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryLinkConfig {
    /// `host:port` of the registry.
    pub addr: String,
    /// Least time between two requests.
    pub interval: Duration,
    /// Longest wait for an answer; must exceed the registry's watch timeout.
    pub answer_timeout: Duration,
    /// Longest wait for a connection (resolution included).
    pub connect_timeout: Duration,
    /// First reconnect delay; doubles on each failure up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl RegistryLinkConfig {
    /// The defaults for `addr`: 1 s interval, 10 s answer timeout (the
    /// registry's default watch timeout is 5 s), 2 s connect timeout, backoff
    /// from 100 ms to 5 s.
    pub fn new(addr: &str) -> RegistryLinkConfig {
        RegistryLinkConfig {
            addr: addr.to_owned(),
            interval: Duration::from_secs(1),
            answer_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

type Resolved = io::Result<Vec<SocketAddr>>;

enum State {
    Down {
        retry_at: Instant,
    },
    Resolving {
        answer: mpsc::Receiver<Resolved>,
        deadline: Instant,
    },
    Connecting {
        stream: TcpStream,
        /// Addresses still to try if this one fails.
        rest: Vec<SocketAddr>,
        deadline: Instant,
    },
    Up {
        stream: TcpStream,
        /// Bytes of a request the socket did not take yet.
        out: Vec<u8>,
        /// When the request now unanswered was sent.
        asked_at: Option<Instant>,
        /// When the next request may be sent.
        next_ask: Instant,
        /// A list arrived on this connection (until then, ask with LIST:
        /// a restarted registry may reuse an old version number).
        listed: bool,
    },
}

/// How often a link waiting for a resolver thread checks on it.
const RESOLVE_POLL: Duration = Duration::from_millis(20);

/// The registry connection and its state machine.
pub struct RegistryLink {
    config: RegistryLinkConfig,
    state: State,
    reader: ListReader,
    snapshot: SharedSnapshot,
    status: Arc<RegistryStatus>,
    token: Option<Token>,
    /// The stream is registered with the attached poll.
    registered: bool,
    backoff: Duration,
    /// The unreachable state has been logged and not yet cleared.
    reported_down: bool,
    /// Why the last attempt failed, for the start-up message.
    last_error: Option<String>,
    has_list: bool,
}

impl RegistryLink {
    /// A link that will publish into `snapshot`. Nothing happens before
    /// [`attach`](Self::attach) and the first [`on_timer`](Self::on_timer).
    pub fn new(
        config: RegistryLinkConfig,
        snapshot: SharedSnapshot,
        status: Arc<RegistryStatus>,
    ) -> RegistryLink {
        RegistryLink {
            backoff: config.backoff_min,
            config,
            state: State::Down {
                retry_at: Instant::now(),
            },
            reader: ListReader::new(MAX_SERVERS),
            snapshot,
            status,
            token: None,
            registered: false,
            reported_down: false,
            last_error: None,
            has_list: false,
        }
    }

    /// Whether a list has been received since start.
    pub fn has_list(&self) -> bool {
        self.has_list
    }

    /// Whether the connection is up.
    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up { .. })
    }

    /// Why the last attempt failed, if it did.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Joins a poll: the connection's events will carry `token`.
    pub fn attach(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        self.token = Some(token);
        self.registered = false;
        self.register(registry)
    }

    /// Leaves the poll it was attached to (to move to another one).
    pub fn detach(&mut self, registry: &Registry) {
        if self.registered {
            if let Some(stream) = self.stream_mut() {
                let _ = registry.deregister(stream);
            }
        }
        self.registered = false;
        self.token = None;
    }

    /// Connects and waits until the first list arrives or `wait` passes,
    /// on a poll of its own. Returns whether a list arrived.
    pub fn load_initial(&mut self, wait: Duration) -> io::Result<bool> {
        let mut poll = Poll::new()?;
        self.attach(poll.registry(), Token(0))?;
        let deadline = Instant::now() + wait;
        let mut events = Events::with_capacity(8);
        let mut now = Instant::now();
        self.on_timer(poll.registry(), now);
        while !self.has_list && now < deadline {
            let next = self.next_deadline().unwrap_or(deadline).min(deadline);
            if let Err(e) = poll.poll(&mut events, Some(next.saturating_duration_since(now))) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            now = Instant::now();
            for event in events.iter() {
                self.on_event(poll.registry(), event, now);
            }
            self.on_timer(poll.registry(), now);
        }
        self.detach(poll.registry());
        Ok(self.has_list)
    }

    /// When [`on_timer`](Self::on_timer) next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        Some(match &self.state {
            State::Down { retry_at } => *retry_at,
            State::Resolving { deadline, .. } => (Instant::now() + RESOLVE_POLL).min(*deadline),
            State::Connecting { deadline, .. } => *deadline,
            State::Up {
                asked_at: Some(at), ..
            } => *at + self.config.answer_timeout,
            State::Up { next_ask, .. } => *next_ask,
        })
    }

    /// A readiness event for the connection.
    pub fn on_event(&mut self, registry: &Registry, event: &Event, now: Instant) {
        match &mut self.state {
            State::Connecting { stream, .. } => {
                match connect_result(stream) {
                    Ok(true) => self.on_connected(registry, now),
                    Ok(false) => {} // not yet: a spurious wake-up
                    Err(e) => self.next_address(registry, now, format!("connect: {e}")),
                }
            }
            State::Up { .. } => {
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.read(registry, now);
                }
                if event.is_writable() {
                    self.write(registry, now);
                }
            }
            _ => {}
        }
    }

    /// Advances timers: reconnects, gives up on slow answers, asks again.
    pub fn on_timer(&mut self, registry: &Registry, now: Instant) {
        match &mut self.state {
            State::Down { retry_at } if now >= *retry_at => self.start(registry, now),
            State::Resolving { answer, deadline } => match answer.try_recv() {
                Ok(Ok(addrs)) if !addrs.is_empty() => self.connect(registry, addrs, now),
                Ok(Ok(_)) => self.fail(registry, now, "the name resolves to no address".into()),
                Ok(Err(e)) => self.fail(registry, now, format!("cannot resolve: {e}")),
                Err(mpsc::TryRecvError::Empty) if now >= *deadline => {
                    self.fail(registry, now, "name resolution timed out".into())
                }
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.fail(registry, now, "name resolution failed".into())
                }
            },
            State::Connecting { deadline, .. } if now >= *deadline => {
                self.next_address(registry, now, "connect timed out".into())
            }
            State::Up {
                asked_at: Some(at), ..
            } if now >= *at + self.config.answer_timeout => {
                let waited = self.config.answer_timeout.as_millis();
                self.fail(registry, now, format!("no answer within {waited} ms"))
            }
            State::Up {
                asked_at: None,
                next_ask,
                ..
            } if now >= *next_ask => self.ask(registry, now),
            _ => {}
        }
    }

    fn stream_mut(&mut self) -> Option<&mut TcpStream> {
        match &mut self.state {
            State::Connecting { stream, .. } | State::Up { stream, .. } => Some(stream),
            _ => None,
        }
    }

    fn register(&mut self, registry: &Registry) -> io::Result<()> {
        let Some(token) = self.token else {
            return Ok(());
        };
        if self.registered {
            return Ok(());
        }
        if let Some(stream) = self.stream_mut() {
            registry.register(stream, token, Interest::READABLE | Interest::WRITABLE)?;
            self.registered = true;
        }
        Ok(())
    }

    /// Drops the current stream (if any) from the poll.
    fn drop_stream(&mut self, registry: &Registry) {
        if self.registered {
            if let Some(stream) = self.stream_mut() {
                let _ = registry.deregister(stream);
            }
            self.registered = false;
        }
    }

    fn start(&mut self, registry: &Registry, now: Instant) {
        let deadline = now + self.config.connect_timeout;
        if let Ok(addr) = self.config.addr.parse::<SocketAddr>() {
            return self.connect(registry, vec![addr], now);
        }
        let (tx, rx) = mpsc::channel();
        let name = self.config.addr.clone();
        let spawned = std::thread::Builder::new()
            .name("ipcs-lb-resolve".into())
            .spawn(move || {
                let _ = tx.send(name.to_socket_addrs().map(Iterator::collect));
            });
        match spawned {
            Ok(_) => {
                self.state = State::Resolving {
                    answer: rx,
                    deadline,
                }
            }
            Err(e) => self.fail(
                registry,
                now,
                format!("cannot start a resolver thread: {e}"),
            ),
        }
    }

    fn connect(&mut self, registry: &Registry, mut addrs: Vec<SocketAddr>, now: Instant) {
        self.drop_stream(registry);
        let addr = addrs.remove(0);
        match TcpStream::connect(addr) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                self.state = State::Connecting {
                    stream,
                    rest: addrs,
                    deadline: now + self.config.connect_timeout,
                };
                if let Err(e) = self.register(registry) {
                    self.fail(registry, now, format!("cannot poll the connection: {e}"));
                }
            }
            Err(e) => {
                self.state = State::Down { retry_at: now };
                if addrs.is_empty() {
                    self.fail(registry, now, format!("connect to {addr}: {e}"));
                } else {
                    self.connect(registry, addrs, now);
                }
            }
        }
    }

    /// The current address failed; tries the next one or gives up.
    fn next_address(&mut self, registry: &Registry, now: Instant, reason: String) {
        let rest = match &mut self.state {
            State::Connecting { rest, .. } => std::mem::take(rest),
            _ => Vec::new(),
        };
        if rest.is_empty() {
            self.fail(registry, now, reason);
        } else {
            self.connect(registry, rest, now);
        }
    }

    fn on_connected(&mut self, registry: &Registry, now: Instant) {
        let State::Connecting { stream, .. } =
            std::mem::replace(&mut self.state, State::Down { retry_at: now })
        else {
            return;
        };
        self.state = State::Up {
            stream,
            out: Vec::new(),
            asked_at: None,
            next_ask: now,
            listed: false,
        };
        self.reader.reset();
        self.backoff = self.config.backoff_min;
        self.last_error = None;
        bump(&self.status.connects);
        self.status.reachable.store(true, Relaxed);
        if self.reported_down {
            self.reported_down = false;
            tracing::info!(registry = %self.config.addr, "registry reachable again");
        } else {
            tracing::debug!(registry = %self.config.addr, "connected to the registry");
        }
        self.ask(registry, now);
    }

    /// Sends `LIST` (first question on a connection) or `WATCH <version>`.
    fn ask(&mut self, registry: &Registry, now: Instant) {
        let version = self.snapshot.load().version;
        if let State::Up {
            out,
            asked_at,
            listed,
            ..
        } = &mut self.state
        {
            let line = if *listed {
                ClientLine::Watch(version)
            } else {
                ClientLine::List
            };
            let _ = line.write(out);
            *asked_at = Some(now);
        }
        self.write(registry, now);
    }

    fn write(&mut self, registry: &Registry, now: Instant) {
        let State::Up { stream, out, .. } = &mut self.state else {
            return;
        };
        while !out.is_empty() {
            match stream.write(out) {
                Ok(0) => return self.fail(registry, now, "connection closed".into()),
                Ok(n) => {
                    out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(registry, now, format!("write: {e}")),
            }
        }
    }

    fn read(&mut self, registry: &Registry, now: Instant) {
        let mut buf = [0u8; 4096];
        loop {
            let State::Up { stream, .. } = &mut self.state else {
                return;
            };
            let n = match stream.read(&mut buf) {
                Ok(0) => {
                    return self.fail(registry, now, "the registry closed the connection".into())
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(registry, now, format!("read: {e}")),
            };
            match self.reader.feed(&buf[..n]) {
                Ok(Some(list)) => self.on_list(list, now),
                Ok(None) => {}
                Err(e) => return self.fail(registry, now, protocol_error(&e)),
            }
        }
    }

    fn on_list(&mut self, list: ServerList, now: Instant) {
        bump(&self.status.lists);
        let servers = list
            .servers
            .iter()
            .map(|e| Backend {
                id: e.id,
                mac: e.mac,
                ip: e.ip,
                udp: e.udp,
            })
            .collect();
        let fresh = ServerSnapshot::new(list.version, servers);
        let current = self.snapshot.load();
        if !self.has_list || **current != fresh {
            let ids: Vec<u8> = fresh.servers.iter().map(|b| b.id).collect();
            tracing::info!(version = fresh.version, servers = ?ids, "server list updated");
            self.status.version.store(fresh.version, Relaxed);
            self.snapshot.store(Arc::new(fresh));
        }
        self.has_list = true;
        if let State::Up {
            asked_at,
            next_ask,
            listed,
            ..
        } = &mut self.state
        {
            *listed = true;
            let asked = asked_at.take().unwrap_or(now);
            *next_ask = (asked + self.config.interval).max(now);
        }
    }

    fn fail(&mut self, registry: &Registry, now: Instant, reason: String) {
        self.drop_stream(registry);
        let jitter = self.backoff.mul_f64(fastrand::f64() * 0.5);
        self.state = State::Down {
            retry_at: now + self.backoff / 2 + jitter,
        };
        self.backoff = (self.backoff * 2).min(self.config.backoff_max);
        self.status.reachable.store(false, Relaxed);
        if !self.reported_down {
            self.reported_down = true;
            let snap = self.snapshot.load();
            tracing::warn!(
                registry = %self.config.addr,
                "registry unreachable ({reason}); serving with the last list ({} servers, version {}); reconnecting with backoff",
                snap.len(),
                snap.version
            );
        } else {
            tracing::debug!(registry = %self.config.addr, "registry still unreachable: {reason}");
        }
        self.last_error = Some(reason);
    }
}

/// Whether a non-blocking connect has completed (`Ok(false)`: not yet).
fn connect_result(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

fn protocol_error(e: &ClientError) -> String {
    format!("bad answer: {e}")
}

#[cfg(test)]
#[path = "registry_link_tests.rs"]
mod tests;
