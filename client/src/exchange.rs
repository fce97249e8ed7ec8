//! The decisions of one request/answer exchange over UDP, as a sans-io state
//! machine fed datagrams and `now`: when to send (and send again), which
//! datagram answers the request, when to give up. [`crate::transport`] only
//! moves bytes between this and a socket.
//!
//! HSMAP carries no request id, so an answer is matched by what it says:
//!
//! * every attempt of one exchange sends the same request, so a reply to any
//!   attempt is a correct answer to it;
//! * a reply whose result is the answer of an *earlier* request that may
//!   still echo (it was sent more than once, or given up on) and is not this
//!   request's answer is that earlier request's late duplicate, and is skipped
//!   ([`LateAnswers`]);
//! * an error reply that arrives after a retry may belong to an earlier
//!   attempt while the latest one can still succeed, so it is held until the
//!   current attempt's wait ends and is the answer only if no reply came.

use std::time::{Duration, Instant};

use ipcs_common::wire::{self, Request, Response, Status};

/// How long to wait for each attempt and how many attempts to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    timeout: Duration,
    attempts: u32,
}

impl RetryPolicy {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);
    pub const DEFAULT_ATTEMPTS: u32 = 3;

    /// A policy; a zero timeout or attempt count is raised to the smallest
    /// usable one (1 ms, 1 attempt) so an exchange always sends and always ends.
    pub fn new(timeout: Duration, attempts: u32) -> RetryPolicy {
        RetryPolicy {
            timeout: timeout.max(Duration::from_millis(1)),
            attempts: attempts.max(1),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The longest an exchange under this policy can take.
    pub fn budget(&self) -> Duration {
        self.timeout * self.attempts
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::new(Self::DEFAULT_TIMEOUT, Self::DEFAULT_ATTEMPTS)
    }
}

/// What the driver of an exchange must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send the request (again), then call [`Exchange::on_sent`].
    Send,
    /// Wait for a datagram until this instant, then poll again.
    WaitUntil(Instant),
    /// The exchange is over.
    Done(Outcome),
}

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The service answered, with a result or an error status.
    Answered(Response),
    /// Every attempt's wait ran out without an answer.
    NoAnswer { attempts: u32 },
}

/// What an exchange made of one datagram from the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It answers this request; the exchange is over.
    Answer,
    /// An error reply that may belong to an earlier attempt; kept until the
    /// current attempt's wait ends, in case a result still comes.
    HeldError(Status),
    /// The late duplicate of an earlier request's reply; skipped.
    LateDuplicate,
    /// Not an HSMAP response at all; skipped.
    Malformed(wire::Error),
    /// It came before the request was sent or after the exchange ended.
    OutOfExchange,
}

/// One request's exchange. Feed it with [`poll`](Self::poll),
/// [`on_sent`](Self::on_sent) and [`on_datagram`](Self::on_datagram).
#[derive(Debug, Clone)]
pub struct Exchange {
    request: Request,
    policy: RetryPolicy,
    sent: u32,
    /// End of the current attempt's wait; `None` before the first send.
    wait_until: Option<Instant>,
    held_error: Option<Status>,
    outcome: Option<Outcome>,
}

impl Exchange {
    pub fn new(request: Request, policy: RetryPolicy) -> Exchange {
        Exchange {
            request,
            policy,
            sent: 0,
            wait_until: None,
            held_error: None,
            outcome: None,
        }
    }

    pub fn request(&self) -> Request {
        self.request
    }

    /// How many times the request has been sent.
    pub fn sent(&self) -> u32 {
        self.sent
    }

    /// The next thing to do at `now`.
    pub fn poll(&mut self, now: Instant) -> Action {
        if let Some(outcome) = self.outcome {
            return Action::Done(outcome);
        }
        match self.wait_until {
            None => Action::Send,
            Some(until) if now < until => Action::WaitUntil(until),
            Some(_) => {
                let outcome = if let Some(status) = self.held_error.take() {
                    Outcome::Answered(Response::Error(status))
                } else if self.sent >= self.policy.attempts {
                    Outcome::NoAnswer {
                        attempts: self.sent,
                    }
                } else {
                    return Action::Send;
                };
                self.outcome = Some(outcome);
                Action::Done(outcome)
            }
        }
    }

    /// The request went out (or was handed to the network) at `now`.
    pub fn on_sent(&mut self, now: Instant) {
        self.sent += 1;
        self.wait_until = Some(now + self.policy.timeout);
    }

    /// A datagram from the target arrived; `late` holds the answers earlier
    /// requests may still echo.
    pub fn on_datagram(&mut self, bytes: &[u8], now: Instant, late: &LateAnswers) -> Verdict {
        if self.outcome.is_some() || self.sent == 0 {
            return Verdict::OutOfExchange;
        }
        let response = match Response::parse_bytes(bytes) {
            Ok(response) => response,
            Err(error) => return Verdict::Malformed(error),
        };
        match response {
            Response::Reply(reply)
                if reply.result != self.request.answer() && late.expects(reply.result, now) =>
            {
                Verdict::LateDuplicate
            }
            Response::Error(status) if self.sent > 1 => {
                self.held_error = Some(status);
                Verdict::HeldError(status)
            }
            response => {
                self.outcome = Some(Outcome::Answered(response));
                Verdict::Answer
            }
        }
    }

    /// Whether a reply to this request may still arrive after it ended: it
    /// was sent more than once, or it got no answer at all.
    pub fn may_echo(&self) -> bool {
        self.sent > 1 || matches!(self.outcome, Some(Outcome::NoAnswer { .. }) | None)
    }
}

/// The answers of recent requests whose replies may still arrive late, each
/// until a deadline. Bounded: the oldest entry makes room for a new one.
#[derive(Debug, Clone, Default)]
pub struct LateAnswers {
    entries: Vec<(u64, Instant)>,
}

impl LateAnswers {
    /// How many earlier requests are remembered.
    pub const CAPACITY: usize = 16;
    /// How long after an exchange ends its late replies are recognised,
    /// beyond the exchange's own budget (the load balancer retries too).
    pub const LINGER: Duration = Duration::from_secs(5);

    /// Remembers a finished exchange if replies to it may still come.
    pub fn remember(&mut self, exchange: &Exchange, now: Instant) {
        if !exchange.may_echo() {
            return;
        }
        self.entries.retain(|(_, until)| *until > now);
        if self.entries.len() == Self::CAPACITY {
            self.entries.remove(0);
        }
        let until = now + exchange.policy.budget() + Self::LINGER;
        self.entries.push((exchange.request.answer(), until));
    }

    /// Whether `result` is the answer of a remembered request at `now`.
    pub fn expects(&self, result: u64, now: Instant) -> bool {
        self.entries
            .iter()
            .any(|(answer, until)| *answer == result && now < *until)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
#[path = "exchange_tests.rs"]
mod tests;
