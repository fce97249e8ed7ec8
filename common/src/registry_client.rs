//! The client side of the registry protocol, for the other IPCS processes:
//!
//! * [`Heartbeat`]: a server's background thread that registers with the
//!   registry and keeps beating, reconnecting with backoff for as long as it
//!   runs, and unregisters at once when stopped.
//! * [`ListReader`]: an incremental, bounded parser of `SERVERS ... END`
//!   answers for a non-blocking socket (the load balancer's reactor).
//! * [`fetch_list`], [`fetch_watch`], [`fetch_stats`], [`connect`]: blocking
//!   helpers with timeouts, for threads, tools and tests.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::registry_auth::{seal, Key};
use crate::registry_proto::{
    ClientLine, LineBuffer, LineTooLong, ProtoError, RegistryLine, ServerEntry, SignedLine,
    MAX_LINE,
};
use crate::wire::MacAddr;

/// The most servers a list can hold (ids are 1..=255).
pub const MAX_SERVERS: usize = 255;

/// A snapshot of the live servers and the version it shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerList {
    pub version: u64,
    /// In the registry's order (by id); ids are unique.
    pub servers: Vec<ServerEntry>,
}

/// What went wrong talking to the registry. After any error other than
/// [`ClientError::Refused`] the connection is out of step: drop it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot resolve registry address {addr:?}: {source}")]
    Resolve { addr: String, source: io::Error },
    #[error("registry address {0:?} resolves to no address")]
    NoAddress(String),
    #[error("i/o error talking to the registry: {0}")]
    Io(io::Error),
    #[error("timed out waiting for the registry")]
    Timeout,
    #[error("the registry closed the connection")]
    Closed,
    #[error("malformed line from the registry: {0}")]
    Proto(#[from] ProtoError),
    #[error("line from the registry longer than {0} bytes")]
    LineTooLong(usize),
    #[error("the registry refused: {0}")]
    Refused(String),
    #[error("unexpected line from the registry: {0:?}")]
    Unexpected(String),
    #[error("list of {count} servers exceeds the cap of {cap}")]
    TooMany { count: usize, cap: usize },
    #[error("list announced {expected} servers but had {got}")]
    CountMismatch { expected: usize, got: usize },
    #[error("list names server id {0} twice")]
    DuplicateId(u8),
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> ClientError {
        match e.kind() {
            // What a std socket read/write timeout reports.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
            _ => ClientError::Io(e),
        }
    }
}

impl From<LineTooLong> for ClientError {
    fn from(e: LineTooLong) -> ClientError {
        ClientError::LineTooLong(e.max)
    }
}

fn unexpected(line: &RegistryLine) -> ClientError {
    ClientError::Unexpected(line.to_string())
}

/// A list being received: the header's promises and what arrived so far.
#[derive(Debug)]
struct PartialList {
    version: u64,
    count: usize,
    servers: Vec<ServerEntry>,
    seen_ids: [bool; 256],
}

/// Parses `SERVERS ... END` blocks from a byte stream fed in pieces of any
/// size. Memory is bounded: one partial line of at most [`MAX_LINE`] bytes
/// and at most `cap` entries.
#[derive(Debug)]
pub struct ListReader {
    lines: LineBuffer,
    cap: usize,
    partial: Option<PartialList>,
}

impl ListReader {
    /// A reader that refuses lists of more than `cap` servers (clamped to
    /// [`MAX_SERVERS`]).
    pub fn new(cap: usize) -> ListReader {
        ListReader {
            lines: LineBuffer::new(MAX_LINE),
            cap: cap.min(MAX_SERVERS),
            partial: None,
        }
    }

    /// Consumes `bytes`; returns the newest list completed by them, if any
    /// (when one read holds several answers, only the last matters). An
    /// `ERR` line from the registry is [`ClientError::Refused`]. After any
    /// error the rest of `bytes` is dropped and the reader starts afresh.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<Option<ServerList>, ClientError> {
        let mut newest = None;
        loop {
            let line = match self.lines.next_line(&mut bytes) {
                Ok(Some(line)) => RegistryLine::parse_bytes(line),
                Ok(None) => return Ok(newest),
                Err(e) => {
                    self.reset();
                    return Err(e.into());
                }
            };
            match line
                .map_err(ClientError::from)
                .and_then(|l| self.on_line(l))
            {
                Ok(Some(list)) => newest = Some(list),
                Ok(None) => {}
                Err(e) => {
                    self.reset();
                    return Err(e);
                }
            }
        }
    }

    /// Whether part of a line or of a list has arrived but not the rest.
    pub fn in_progress(&self) -> bool {
        self.partial.is_some() || self.lines.pending() > 0
    }

    /// Forgets any partial line or list (after reconnecting, say).
    pub fn reset(&mut self) {
        self.lines = LineBuffer::new(MAX_LINE);
        self.partial = None;
    }

    fn on_line(&mut self, line: RegistryLine) -> Result<Option<ServerList>, ClientError> {
        match (line, self.partial.as_mut()) {
            (RegistryLine::Err(reason), _) => Err(ClientError::Refused(reason)),
            (RegistryLine::Servers { version, count }, None) => {
                if count > self.cap {
                    return Err(ClientError::TooMany {
                        count,
                        cap: self.cap,
                    });
                }
                self.partial = Some(PartialList {
                    version,
                    count,
                    servers: Vec::with_capacity(count),
                    seen_ids: [false; 256],
                });
                Ok(None)
            }
            (RegistryLine::Entry(entry), Some(partial)) => {
                if partial.servers.len() == partial.count {
                    return Err(ClientError::CountMismatch {
                        expected: partial.count,
                        got: partial.count + 1,
                    });
                }
                let seen = &mut partial.seen_ids[usize::from(entry.id)];
                if *seen {
                    return Err(ClientError::DuplicateId(entry.id));
                }
                *seen = true;
                partial.servers.push(entry);
                Ok(None)
            }
            (RegistryLine::End, Some(partial)) => {
                if partial.servers.len() != partial.count {
                    return Err(ClientError::CountMismatch {
                        expected: partial.count,
                        got: partial.servers.len(),
                    });
                }
                let partial = self.partial.take().expect("checked above");
                Ok(Some(ServerList {
                    version: partial.version,
                    servers: partial.servers,
                }))
            }
            (other, _) => Err(unexpected(&other)),
        }
    }
}

/// Resolves `registry` (`host:port`, looked up now, so a registry that moved
/// is found) and connects to the first address that answers.
pub fn connect(registry: &str, timeout: Duration) -> Result<TcpStream, ClientError> {
    let addrs: Vec<SocketAddr> = registry
        .to_socket_addrs()
        .map_err(|source| ClientError::Resolve {
            addr: registry.to_string(),
            source,
        })?
        .collect();
    let mut last_err = ClientError::NoAddress(registry.to_string());
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last_err = e.into(),
        }
    }
    Err(last_err)
}

/// Remaining time until `deadline`, or a timeout error once it has passed.
fn remaining(deadline: Instant) -> Result<Duration, ClientError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(ClientError::Timeout)
    } else {
        Ok(left)
    }
}

/// Sends `request` and feeds the answer to `on_bytes` until it says done.
fn exchange<T>(
    stream: &mut TcpStream,
    request: &SignedLine,
    timeout: Duration,
    mut on_bytes: impl FnMut(&[u8]) -> Result<Option<T>, ClientError>,
) -> Result<T, ClientError> {
    let deadline = Instant::now() + timeout;
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    let mut out = Vec::with_capacity(192);
    request.write(&mut out)?;
    stream.write_all(&out)?;
    let mut buf = [0u8; 4096];
    loop {
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        let n = match stream.read(&mut buf) {
            Ok(0) => return Err(ClientError::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if let Some(done) = on_bytes(&buf[..n])? {
            return Ok(done);
        }
    }
}

/// Sends `LIST` on a blocking `stream` and reads the answer, giving up after
/// `timeout`. Only one request may be outstanding on the stream. The line
/// carries no proof: for a registry run with `--insecure-no-auth` (tests);
/// see [`fetch_list_as`].
pub fn fetch_list(stream: &mut TcpStream, timeout: Duration) -> Result<ServerList, ClientError> {
    fetch_list_as(stream, None, timeout)
}

/// [`fetch_list`] with a proof made with `key` (none without one).
pub fn fetch_list_as(
    stream: &mut TcpStream,
    key: Option<&Key>,
    timeout: Duration,
) -> Result<ServerList, ClientError> {
    let mut reader = ListReader::new(MAX_SERVERS);
    let request = seal(key, ClientLine::List);
    exchange(stream, &request, timeout, |b| reader.feed(b))
}

/// Sends `WATCH version` and waits for the answer: at once if the registry's
/// version differs, else at the next change or the registry's watch timeout.
/// `timeout` should exceed the registry's watch timeout (5 s by default).
/// No proof, like [`fetch_list`]; see [`fetch_watch_as`].
pub fn fetch_watch(
    stream: &mut TcpStream,
    version: u64,
    timeout: Duration,
) -> Result<ServerList, ClientError> {
    fetch_watch_as(stream, None, version, timeout)
}

/// [`fetch_watch`] with a proof made with `key` (none without one).
pub fn fetch_watch_as(
    stream: &mut TcpStream,
    key: Option<&Key>,
    version: u64,
    timeout: Duration,
) -> Result<ServerList, ClientError> {
    let mut reader = ListReader::new(MAX_SERVERS);
    let request = seal(key, ClientLine::Watch(version));
    exchange(stream, &request, timeout, |b| reader.feed(b))
}

/// Sends `STATS` and returns the registry's counters by name. No proof,
/// like [`fetch_list`]; see [`fetch_stats_as`].
pub fn fetch_stats(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<Vec<(String, u64)>, ClientError> {
    fetch_stats_as(stream, None, timeout)
}

/// [`fetch_stats`] with a proof made with `key` (none without one).
pub fn fetch_stats_as(
    stream: &mut TcpStream,
    key: Option<&Key>,
    timeout: Duration,
) -> Result<Vec<(String, u64)>, ClientError> {
    const MAX_STATS: usize = 256;
    let mut lines = LineBuffer::new(MAX_LINE);
    let mut stats = Vec::new();
    let request = seal(key, ClientLine::Stats);
    exchange(stream, &request, timeout, |mut bytes| {
        while let Some(line) = lines.next_line(&mut bytes)? {
            match RegistryLine::parse_bytes(line)? {
                RegistryLine::Stat { name, value } if stats.len() < MAX_STATS => {
                    stats.push((name, value))
                }
                RegistryLine::End => return Ok(Some(std::mem::take(&mut stats))),
                RegistryLine::Err(reason) => return Err(ClientError::Refused(reason)),
                other => return Err(unexpected(&other)),
            }
        }
        Ok(None)
    })
}

/// How a server registers: where the registry is and the address it gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// `host:port`; resolved again on every (re)connect.
    pub registry: String,
    /// 1..=255.
    pub id: u8,
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    pub udp: Option<u16>,
    /// How often to send `BEAT` ([`HeartbeatConfig::DEFAULT_BEAT_INTERVAL`]
    /// by default; keep it well under the registry's TTL).
    pub beat_interval: Duration,
    /// The deployment key: the `HELLO` carries a proof made with it. `None`
    /// only for a registry run with `--insecure-no-auth`.
    pub key: Option<Key>,
}

impl HeartbeatConfig {
    pub const DEFAULT_BEAT_INTERVAL: Duration = Duration::from_millis(500);
}

/// Retry delays (see [`Backoff`]): from `BACKOFF_START` to `BACKOFF_CAP`.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// While the registry's name does not resolve yet, the retry delay: a
/// container's name service learns a new service's records a few hundred
/// milliseconds after the container starts (Swarm's DNS, measured: the
/// first lookups of a new server failed), and a lookup loads only the local
/// resolver, so the registration follows the name closely instead of
/// doubling past it. Only before the first registration, and only for
/// `RESOLVE_FAST_FOR` after the start: a name that never resolves (a typo)
/// then gets the usual back-off, not 20 lookups a second for ever.
const RESOLVE_RETRY: Duration = Duration::from_millis(50);
const RESOLVE_FAST_FOR: Duration = Duration::from_secs(10);
/// Bounds connecting and the wait for `OK`, so a stop is never stuck longer.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// A server's registration, kept alive by a background thread until
/// [`Heartbeat::stop`] or drop.
#[derive(Debug)]
pub struct Heartbeat {
    /// Dropping it wakes the thread at once, whatever it is waiting for.
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    registered: Arc<AtomicBool>,
}

impl Heartbeat {
    /// Starts the thread: connect, `HELLO`, expect `OK`, `BEAT` every
    /// interval; on any failure, reconnect after a backoff, forever.
    pub fn spawn(config: HeartbeatConfig) -> Heartbeat {
        let (stop, stop_rx) = mpsc::channel();
        let registered = Arc::new(AtomicBool::new(false));
        let flag = registered.clone();
        let thread = std::thread::Builder::new()
            .name(format!("heartbeat-{}", config.id))
            .spawn(move || run(&config, &stop_rx, &flag))
            .expect("cannot spawn the heartbeat thread");
        Heartbeat {
            stop: Some(stop),
            thread: Some(thread),
            registered,
        }
    }

    /// Whether the registry has accepted this server and the connection is
    /// up (as of the last beat).
    pub fn is_registered(&self) -> bool {
        self.registered.load(Ordering::SeqCst)
    }

    /// The flag behind [`Heartbeat::is_registered`], to share with logs or
    /// status reporting.
    pub fn registered_flag(&self) -> Arc<AtomicBool> {
        self.registered.clone()
    }

    /// Closes the connection (so the registry drops the server at once) and
    /// waits for the thread to end.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.registered.store(false, Ordering::SeqCst);
    }
}

/// The stop channel fired (or its sender was dropped).
struct Stopped;

fn run(config: &HeartbeatConfig, stop: &Receiver<()>, registered: &AtomicBool) {
    let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_CAP);
    // Failures are logged once per change of state, not once per attempt:
    // the first failure after starting or after losing the registration.
    let mut failure_logged = false;
    let mut ever_registered = false;
    let started = std::time::Instant::now();
    loop {
        let err = match session(config, stop, registered, &mut backoff) {
            Ok(Stopped) => return,
            Err(e) => e,
        };
        let unresolved = matches!(err, ClientError::Resolve { .. } | ClientError::NoAddress(_));
        ever_registered |= registered.load(Ordering::SeqCst);
        if registered.swap(false, Ordering::SeqCst) {
            warn!(registry = %config.registry, id = config.id, "lost registration: {err}; reconnecting");
            failure_logged = true;
        } else if !failure_logged {
            warn!(registry = %config.registry, id = config.id, "cannot register: {err}; retrying with backoff");
            failure_logged = true;
        } else {
            debug!(registry = %config.registry, id = config.id, "registration attempt failed: {err}");
        }
        let delay = if unresolved && !ever_registered && started.elapsed() < RESOLVE_FAST_FOR {
            RESOLVE_RETRY
        } else {
            backoff.next_delay()
        };
        match stop.recv_timeout(delay) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// One connection: register, then beat until stopped or something fails.
fn session(
    config: &HeartbeatConfig,
    stop: &Receiver<()>,
    registered: &AtomicBool,
    backoff: &mut Backoff,
) -> Result<Stopped, ClientError> {
    let mut stream = connect(&config.registry, HANDSHAKE_TIMEOUT)?;
    // A fresh proof on every connection: the registry refuses a replay.
    let hello = seal(
        config.key.as_ref(),
        ClientLine::Hello {
            id: config.id,
            mac: config.mac,
            ip: config.ip,
            udp: config.udp,
        },
    );
    let mut lines = LineBuffer::new(MAX_LINE);
    let ttl_ms = exchange(
        &mut stream,
        &hello,
        HANDSHAKE_TIMEOUT,
        |mut bytes| match lines.next_line(&mut bytes)? {
            None => Ok(None),
            Some(line) => match RegistryLine::parse_bytes(line)? {
                RegistryLine::Ok { ttl_ms } => Ok(Some(ttl_ms)),
                RegistryLine::Err(reason) => Err(ClientError::Refused(reason)),
                other => Err(unexpected(&other)),
            },
        },
    )?;
    registered.store(true, Ordering::SeqCst);
    backoff.reset();
    info!(
        registry = %config.registry, id = config.id, mac = %config.mac, ttl_ms,
        "registered with the registry"
    );
    if config.beat_interval.as_millis() >= u128::from(ttl_ms) {
        warn!(
            beat_interval_ms = config.beat_interval.as_millis() as u64,
            ttl_ms,
            "beat interval is not shorter than the registry's TTL; the registration will expire"
        );
    }
    // From here the thread only writes `BEAT` and checks, without waiting,
    // whether the registry said anything (an ERR, or closing).
    stream.set_nonblocking(true)?;
    let mut next_beat = Instant::now() + config.beat_interval;
    let mut buf = [0u8; MAX_LINE];
    loop {
        let wait = next_beat.saturating_duration_since(Instant::now());
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let _ = stream.shutdown(Shutdown::Both);
                return Ok(Stopped);
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => return Err(ClientError::Closed),
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                let first = text.lines().next().unwrap_or_default();
                return Err(match RegistryLine::parse(first) {
                    Ok(RegistryLine::Err(reason)) => ClientError::Refused(reason),
                    _ => ClientError::Unexpected(first.chars().take(64).collect()),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(ClientError::Io(e)),
        }
        match stream.write(b"BEAT\n") {
            Ok(5) => {}
            // Five bytes not fitting an idle socket's buffer means the
            // registry stopped reading long ago.
            Ok(_) => return Err(ClientError::Timeout),
            Err(e) => return Err(e.into()),
        }
        next_beat += config.beat_interval;
        let now = Instant::now();
        if next_beat < now {
            // Fell behind (the machine was suspended, say): beat from now on.
            next_beat = now + config.beat_interval;
        }
    }
}

#[cfg(test)]
#[path = "registry_client_tests.rs"]
mod tests;
