//! The load balancer's connection to the registry, the I/O half: a
//! non-blocking TCP client driven by the reactor (readiness events and a
//! deadline) that carries out what the [`LinkCore`] state machine decides
//! (resolve, connect, send, disconnect) and feeds it what happens. The
//! rules (when to ask, give up, reconnect; what a list does to the shared
//! snapshot) are the core's; see `link_core.rs`. Host names are resolved
//! on a short-lived thread so a slow DNS never stalls the reactor.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipcs_common::registry_auth::Key;
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};

pub use crate::link_core::resync_union;
use crate::link_core::{Command, LinkCore};
use crate::metrics::RegistryStatus;
use crate::snapshot::SharedSnapshot;

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
    /// After a reconnect, how long servers missing from the registry's
    /// list stay in the snapshot (see the module docs).
    pub resync_grace: Duration,
    /// The deployment key: each request carries a proof made with it
    /// (`None`: bare requests, for a registry run with --insecure-no-auth).
    pub key: Option<Key>,
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
            resync_grace: Duration::from_secs(3),
            key: None,
        }
    }
}

type Resolved = io::Result<Vec<SocketAddr>>;

/// How often a link waiting for a resolver thread checks on it.
const RESOLVE_POLL: Duration = Duration::from_millis(20);

/// The registry connection: the state machine and the socket it steers.
pub struct RegistryLink {
    core: LinkCore,
    /// The connection, once a connect has started.
    stream: Option<TcpStream>,
    /// Bytes of a request the socket did not take yet.
    out: Vec<u8>,
    /// The resolver thread's answer, while a name is being resolved.
    resolver: Option<mpsc::Receiver<Resolved>>,
    token: Option<Token>,
    /// The stream is registered with the attached poll.
    registered: bool,
    /// The core's commands not carried out yet.
    commands: Vec<Command>,
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
            core: LinkCore::new(config, snapshot, status, Instant::now()),
            stream: None,
            out: Vec::new(),
            resolver: None,
            token: None,
            registered: false,
            commands: Vec::new(),
        }
    }

    /// Whether a list has been received since start.
    pub fn has_list(&self) -> bool {
        self.core.has_list()
    }

    /// Whether the connection is up.
    pub fn is_up(&self) -> bool {
        self.core.is_up()
    }

    /// Why the last attempt failed, if it did.
    pub fn last_error(&self) -> Option<&str> {
        self.core.last_error()
    }

    /// Joins a poll: the connection's events will carry `token`.
    pub fn attach(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        self.token = Some(token);
        self.registered = false;
        self.register(registry)
    }

    /// Leaves the poll it was attached to (to move to another one).
    pub fn detach(&mut self, registry: &Registry) {
        self.deregister(registry);
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
        while !self.has_list() && now < deadline {
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
        Ok(self.has_list())
    }

    /// When [`on_timer`](Self::on_timer) next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let core = self.core.next_deadline();
        if self.resolver.is_some() {
            // The resolver thread cannot wake the poll; look every so often.
            return Some(core.min(Instant::now() + RESOLVE_POLL));
        }
        Some(core)
    }

    /// A readiness event for the connection.
    pub fn on_event(&mut self, registry: &Registry, event: &Event, now: Instant) {
        if self.core.is_connecting() {
            if let Some(stream) = &self.stream {
                match connect_result(stream) {
                    Ok(true) => self.core.on_connected(now, &mut self.commands),
                    Ok(false) => {} // not yet: a spurious wake-up
                    Err(e) => {
                        let reason = format!("connect: {e}");
                        self.core.on_connect_failed(reason, now, &mut self.commands)
                    }
                }
            }
        } else if self.core.is_up() {
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                self.read(now);
            }
            if event.is_writable() {
                self.write(now);
            }
        }
        self.carry_out(registry, now);
    }

    /// Advances timers: reconnects, gives up on slow answers, asks again.
    pub fn on_timer(&mut self, registry: &Registry, now: Instant) {
        if let Some(answer) = &self.resolver {
            let resolved = match answer.try_recv() {
                Ok(Ok(addrs)) => Some(Ok(addrs)),
                Ok(Err(e)) => Some(Err(format!("cannot resolve: {e}"))),
                Err(mpsc::TryRecvError::Empty) => None,
                Err(mpsc::TryRecvError::Disconnected) => {
                    Some(Err("name resolution failed".to_owned()))
                }
            };
            if let Some(resolved) = resolved {
                self.resolver = None;
                self.core.on_resolved(resolved, now, &mut self.commands);
            }
        }
        self.core.on_timer(now, &mut self.commands);
        self.carry_out(registry, now);
    }

    /// Carries out the core's commands, feeding back what they lead to,
    /// until there are none.
    fn carry_out(&mut self, registry: &Registry, now: Instant) {
        while !self.commands.is_empty() {
            for command in std::mem::take(&mut self.commands) {
                match command {
                    Command::Resolve(name) => self.resolve(name, now),
                    Command::Connect(addr) => self.connect(registry, addr, now),
                    Command::Send(bytes) => {
                        self.out.extend_from_slice(&bytes);
                        self.write(now);
                    }
                    Command::Disconnect => self.drop_stream(registry),
                }
            }
        }
    }

    fn resolve(&mut self, name: String, now: Instant) {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("ipcs-lb-resolve".into())
            .spawn(move || {
                let _ = tx.send(name.to_socket_addrs().map(Iterator::collect));
            });
        match spawned {
            Ok(_) => self.resolver = Some(rx),
            Err(e) => {
                let reason = format!("cannot start a resolver thread: {e}");
                self.core.on_resolved(Err(reason), now, &mut self.commands)
            }
        }
    }

    fn connect(&mut self, registry: &Registry, addr: SocketAddr, now: Instant) {
        self.drop_stream(registry);
        match TcpStream::connect(addr) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                self.stream = Some(stream);
                if let Err(e) = self.register(registry) {
                    let reason = format!("cannot poll the connection: {e}");
                    self.core.on_failed(reason, now, &mut self.commands);
                }
            }
            Err(e) => {
                let reason = format!("connect to {addr}: {e}");
                self.core.on_connect_failed(reason, now, &mut self.commands)
            }
        }
    }

    fn register(&mut self, registry: &Registry) -> io::Result<()> {
        let Some(token) = self.token else {
            return Ok(());
        };
        if self.registered {
            return Ok(());
        }
        if let Some(stream) = &mut self.stream {
            registry.register(stream, token, Interest::READABLE | Interest::WRITABLE)?;
            self.registered = true;
        }
        Ok(())
    }

    fn deregister(&mut self, registry: &Registry) {
        if self.registered {
            if let Some(stream) = &mut self.stream {
                let _ = registry.deregister(stream);
            }
            self.registered = false;
        }
    }

    /// Drops the current stream (if any), its unsent bytes and any
    /// resolution under way.
    fn drop_stream(&mut self, registry: &Registry) {
        self.deregister(registry);
        self.stream = None;
        self.out.clear();
        self.resolver = None;
    }

    fn write(&mut self, now: Instant) {
        let Some(stream) = self.stream.as_mut().filter(|_| self.core.is_up()) else {
            return;
        };
        while !self.out.is_empty() {
            match stream.write(&self.out) {
                Ok(0) => {
                    let reason = "connection closed".to_owned();
                    return self.core.on_failed(reason, now, &mut self.commands);
                }
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let reason = format!("write: {e}");
                    return self.core.on_failed(reason, now, &mut self.commands);
                }
            }
        }
    }

    fn read(&mut self, now: Instant) {
        let mut buf = [0u8; 4096];
        while self.core.is_up() {
            let Some(stream) = &mut self.stream else {
                return;
            };
            match stream.read(&mut buf) {
                Ok(0) => {
                    let reason = "the registry closed the connection".to_owned();
                    return self.core.on_failed(reason, now, &mut self.commands);
                }
                Ok(n) => self.core.on_bytes(&buf[..n], now, &mut self.commands),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let reason = format!("read: {e}");
                    return self.core.on_failed(reason, now, &mut self.commands);
                }
            }
        }
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

#[cfg(test)]
#[path = "registry_link_tests.rs"]
mod tests;
