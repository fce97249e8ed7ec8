//! What one worker's core is configured with, and the rules a usable
//! configuration keeps (checked once, before any worker starts).

use std::time::Duration;

use ipcs_common::wire::records::{requests_within, MAX_RECORDS};

use crate::budget::BudgetPolicy;
use crate::outlier::EjectionPolicy;
use crate::pending::{MAX_ATTEMPTS, MAX_CAPACITY};
use crate::pick::Policy;
use crate::rtt::TimeoutPolicy;
use crate::tag::LbSecret;

/// What one worker's core is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreConfig {
    /// This worker's index; the low byte of every tag it issues.
    pub worker: u8,
    /// Slots in this worker's table of requests in flight.
    pub capacity: usize,
    /// The bounds of each server's adaptive attempt deadline.
    pub timeout: TimeoutPolicy,
    /// How long a request may wait in all before its client gets status 4.
    pub request_timeout: Duration,
    /// Attempts per request, the first one included.
    pub attempts: u32,
    pub budget: BudgetPolicy,
    pub ejection: EjectionPolicy,
    /// How a new request's server is chosen.
    pub policy: Policy,
    /// Seeds the p2c draws (tests pass a fixed one).
    pub seed: u64,
    /// Error replies per second this worker may send.
    pub error_rate: f64,
    /// Error replies this worker may send at once.
    pub error_burst: f64,
    /// The most request records this worker puts in one frame to a server
    /// that reads that many (1: one request per frame).
    pub max_records: u8,
    /// Keys the tag checks and the source buckets (crate::tag).
    pub secret: LbSecret,
    /// The share (0 < share <= 1) of the table of requests in flight and
    /// of the error replies one source prefix may take (crate::fairness).
    pub source_share: f64,
    /// The backend interface's MTU, as read from the kernel: no frame is
    /// packed past it (see [`requests_within`]).
    pub link_mtu: usize,
}

/// Why a configuration cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("capacity must be 1..={MAX_CAPACITY} per worker, got {0}")]
    Capacity(usize),
    #[error("attempts must be 1..={MAX_ATTEMPTS}, got {0}")]
    Attempts(u32),
    #[error("the attempt timeouts must satisfy 0 < min <= max, got min {min:?}, max {max:?}")]
    Timeout { min: Duration, max: Duration },
    #[error("the request timeout ({0:?}) must be at least the shortest attempt timeout")]
    RequestTimeout(Duration),
    #[error("the ejection threshold must be at least 1 failure")]
    EjectAfter,
    #[error("the retry budget ratio must be 0..=1, got {0}")]
    BudgetRatio(f64),
    #[error("the ejection cap must be 0..=100 percent, got {0}")]
    EjectPercent(u32),
    #[error("records per frame must be 1..={MAX_RECORDS}, got {0}")]
    MaxRecords(u8),
    #[error("the source share must be above 0 and at most 100 percent, got {0}")]
    SourceShare(f64),
}

impl CoreConfig {
    /// The most request records one frame may carry: what `--frame-records`
    /// allows and what fits the link's MTU, whichever is fewer.
    pub fn frame_records(&self) -> u8 {
        self.max_records.min(requests_within(self.link_mtu))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_CAPACITY).contains(&self.capacity) {
            return Err(ConfigError::Capacity(self.capacity));
        }
        if !(1..=MAX_ATTEMPTS as u32).contains(&self.attempts) {
            return Err(ConfigError::Attempts(self.attempts));
        }
        let (min, max) = (self.timeout.min, self.timeout.max);
        if min.is_zero() || max < min {
            return Err(ConfigError::Timeout { min, max });
        }
        if self.request_timeout < min {
            return Err(ConfigError::RequestTimeout(self.request_timeout));
        }
        if !(0.0..=1.0).contains(&self.budget.ratio) {
            return Err(ConfigError::BudgetRatio(self.budget.ratio));
        }
        if self.ejection.max_ejected_percent > 100 {
            return Err(ConfigError::EjectPercent(self.ejection.max_ejected_percent));
        }
        if self.ejection.after_failures == 0 {
            return Err(ConfigError::EjectAfter);
        }
        if !(1..=MAX_RECORDS).contains(&self.max_records) {
            return Err(ConfigError::MaxRecords(self.max_records));
        }
        if !(self.source_share > 0.0 && self.source_share <= 1.0) {
            return Err(ConfigError::SourceShare(self.source_share * 100.0));
        }
        Ok(())
    }
}
