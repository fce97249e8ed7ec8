//! `CalcClient`: one UDP socket connected to the target, driving an
//! [`Exchange`] per request. It owns the socket, the counters of what it
//! skipped, and the [`LateAnswers`] of earlier requests.
//!
//! The socket is connected, so the kernel drops datagrams from any other
//! source; the source is checked again on receipt so the rule does not rest
//! on that alone. A connected socket also reports an ICMP "port unreachable"
//! as `ECONNREFUSED`, which makes the final message more useful.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ipcs_common::wire::{Request, Response};

use crate::exchange::{Action, Exchange, LateAnswers, Outcome, RetryPolicy, Verdict};
use crate::target::Target;

/// Larger than any HSMAP response, so a longer datagram arrives truncated to
/// this length and is rejected as malformed instead of read as a prefix.
const RECV_BUF_LEN: usize = 64;
/// At most this many queued datagrams are discarded before a new request.
const DRAIN_MAX: usize = 256;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot open a UDP socket towards {target}: {source}")]
    Socket {
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot send to {target}: {source}")]
    Send {
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot receive from {target}: {source}")]
    Receive {
        target: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "no answer from {target} after {attempts} attempt{}{}",
        if *attempts == 1 { "" } else { "s" },
        if *refused { " (its host says nothing listens on that port)" } else { "" }
    )]
    NoAnswer {
        target: String,
        attempts: u32,
        /// The target's host answered with ICMP "port unreachable".
        refused: bool,
    },
}

/// What the client sent and skipped since it was made, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Datagrams sent, retries included.
    pub sent: u64,
    /// Sends beyond each request's first.
    pub retries: u64,
    /// Datagrams whose source was not the target.
    pub wrong_source: u64,
    /// Datagrams from the target that were not HSMAP responses.
    pub malformed: u64,
    /// Late duplicates of earlier requests' replies.
    pub late_duplicates: u64,
    /// Datagrams queued between requests, discarded before sending.
    pub stale: u64,
}

/// A client of one IPCS target.
#[derive(Debug)]
pub struct CalcClient {
    socket: UdpSocket,
    target: Target,
    policy: RetryPolicy,
    late: LateAnswers,
    stats: ClientStats,
}

impl CalcClient {
    /// Opens a socket on an ephemeral port of the target's address family
    /// and connects it to the target.
    pub fn connect(target: Target, policy: RetryPolicy) -> Result<CalcClient, TransportError> {
        let socket_error = |source| TransportError::Socket {
            target: target.name().to_owned(),
            source,
        };
        let local: SocketAddr = match target.addr() {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).map_err(socket_error)?;
        socket.connect(target.addr()).map_err(socket_error)?;
        Ok(CalcClient {
            socket,
            target,
            policy,
            late: LateAnswers::default(),
            stats: ClientStats::default(),
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// The local address of the socket (for tests and logs).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Sends `request`, sending it again after each timeout, and returns the
    /// answer: a result or an error status. Returns within the policy's
    /// budget (plus scheduling delays) whatever arrives.
    pub fn request(&mut self, request: Request) -> Result<Response, TransportError> {
        self.drain_stale()?;
        let mut exchange = Exchange::new(request, self.policy);
        let mut refused = false;
        let mut buf = [0u8; RECV_BUF_LEN];
        let result = loop {
            let now = Instant::now();
            match exchange.poll(now) {
                Action::Send => {
                    self.send(&request, &mut refused)?;
                    if exchange.sent() > 0 {
                        self.stats.retries += 1;
                        tracing::debug!(%request, attempt = exchange.sent() + 1, "no answer yet, sending again");
                    }
                    exchange.on_sent(Instant::now());
                }
                Action::WaitUntil(until) => {
                    self.receive(&mut exchange, until - now, &mut buf, &mut refused)?;
                }
                Action::Done(Outcome::Answered(response)) => break Ok(response),
                Action::Done(Outcome::NoAnswer { attempts }) => {
                    break Err(TransportError::NoAnswer {
                        target: self.target.name().to_owned(),
                        attempts,
                        refused,
                    })
                }
            }
        };
        self.late.remember(&exchange, Instant::now());
        result
    }

    fn send(&mut self, request: &Request, refused: &mut bool) -> Result<(), TransportError> {
        match self.socket.send(&request.to_bytes()) {
            Ok(_) => {}
            // An earlier ICMP error surfaces on this send; the datagram may
            // not have gone, and the attempt's wait covers that.
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => *refused = true,
            Err(source) => {
                return Err(TransportError::Send {
                    target: self.target.name().to_owned(),
                    source,
                })
            }
        }
        self.stats.sent += 1;
        Ok(())
    }

    /// Waits up to `wait` for one datagram and gives it to the exchange.
    fn receive(
        &mut self,
        exchange: &mut Exchange,
        wait: Duration,
        buf: &mut [u8],
        refused: &mut bool,
    ) -> Result<(), TransportError> {
        let receive_error = |source| TransportError::Receive {
            target: self.target.name().to_owned(),
            source,
        };
        // `wait` is positive (the exchange said "until" is later than now);
        // a zero read timeout would mean "block forever".
        self.socket
            .set_read_timeout(Some(wait.max(Duration::from_micros(1))))
            .map_err(receive_error)?;
        let (len, from) = match self.socket.recv_from(buf) {
            Ok(received) => received,
            Err(error) => {
                return match error.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => Ok(()),
                    io::ErrorKind::ConnectionRefused => {
                        *refused = true;
                        Ok(())
                    }
                    _ => Err(receive_error(error)),
                }
            }
        };
        if from != self.target.addr() {
            self.stats.wrong_source += 1;
            tracing::debug!(%from, "ignoring a datagram that is not from the target");
            return Ok(());
        }
        match exchange.on_datagram(&buf[..len], Instant::now(), &self.late) {
            Verdict::Answer | Verdict::OutOfExchange => {}
            Verdict::HeldError(status) => {
                tracing::debug!(%status, "error reply after a retry; waiting for a result")
            }
            Verdict::LateDuplicate => {
                self.stats.late_duplicates += 1;
                tracing::debug!("ignoring a late reply to an earlier request");
            }
            Verdict::Malformed(error) => {
                self.stats.malformed += 1;
                tracing::debug!(%error, len, "ignoring a datagram that is not an HSMAP response");
            }
        }
        Ok(())
    }

    /// Discards whatever arrived since the last request: it answers nothing
    /// that is about to be asked.
    fn drain_stale(&mut self) -> Result<(), TransportError> {
        let drain_error = |source| TransportError::Receive {
            target: self.target.name().to_owned(),
            source,
        };
        self.socket.set_nonblocking(true).map_err(drain_error)?;
        let mut buf = [0u8; RECV_BUF_LEN];
        let mut outcome = Ok(());
        for _ in 0..DRAIN_MAX {
            match self.socket.recv(&mut buf) {
                Ok(_) => self.stats.stale += 1,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::Interrupted
                    ) => {}
                Err(error) => {
                    outcome = Err(drain_error(error));
                    break;
                }
            }
        }
        self.socket.set_nonblocking(false).map_err(drain_error)?;
        outcome
    }
}
