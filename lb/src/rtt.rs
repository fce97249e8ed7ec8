//! How long an attempt may take before it is sent elsewhere: one
//! [`RttEstimator`] per server, following RFC 6298 (smoothed round-trip
//! time and its variation, `RTO = SRTT + 4 * RTTVAR`, clamped by the
//! [`TimeoutPolicy`]), so the deadline follows the path: a server 2 ms
//! slower than the others gets a deadline 2 ms longer instead of being
//! taken for dead.
//!
//! RFC 6298 alone follows the typical round trip, and a shared host's
//! stalls (a container descheduled for 50 ms now and then) sit far outside
//! it: every stall would fire a wave of needless retries. So the deadline
//! is also at least twice ([`PEAK_HEADROOM`]) a slowly decaying peak of the
//! round trips seen ([`PeakEwma`], time constant [`PEAK_DECAY`]): a stall
//! seen once keeps the deadline above it for some seconds, as a windowed
//! maximum would, with room for the next one being longer.
//!
//! Samples come from every answer the load balancer can attribute to one
//! send, late ones included (a late answer is exactly the sample that
//! moves the deadline up). A timeout of a server that has answered other
//! requests since the timed-out one was sent (alive, but slower than its
//! deadline) doubles the deadline, as RFC 6298 5.5 backs off, once per
//! event: requests sent before the last back-off do not double it again,
//! so one late frame carrying 32 requests doubles it once, not 32 times.

use std::time::{Duration, Instant};

/// The bounds of the adaptive attempt deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutPolicy {
    /// The deadline for a server with no sample yet.
    pub initial: Duration,
    /// The deadline is never shorter than this (covers the scheduling
    /// jitter of a shared machine, which no sample predicts).
    pub min: Duration,
    /// Nor longer than this, however slow or backed off.
    pub max: Duration,
}

impl Default for TimeoutPolicy {
    fn default() -> Self {
        TimeoutPolicy {
            initial: Duration::from_millis(20),
            min: Duration::from_millis(5),
            max: Duration::from_millis(250),
        }
    }
}

impl TimeoutPolicy {
    pub fn clamp(&self, d: Duration) -> Duration {
        d.clamp(self.min, self.max.max(self.min))
    }
}

/// How long the deadline remembers a round trip longer than the usual.
pub const PEAK_DECAY: Duration = Duration::from_secs(10);
/// The deadline is at least this many times the decaying peak: the next
/// stall is rarely exactly as long as the last one.
pub const PEAK_HEADROOM: f64 = 2.0;

/// A latency average that jumps up to a higher sample at once and decays
/// towards lower ones with time constant `tau` (Finagle's peak EWMA).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeakEwma {
    tau: Duration,
    micros: f64,
    at: Option<Instant>,
}

impl PeakEwma {
    pub fn new(tau: Duration) -> PeakEwma {
        PeakEwma {
            tau,
            micros: 0.0,
            at: None,
        }
    }

    pub fn sample(&mut self, rtt: Duration, now: Instant) {
        let r = rtt.as_secs_f64() * 1e6;
        self.micros = match self.at {
            Some(at) if r < self.micros => {
                let dt = now.saturating_duration_since(at).as_secs_f64();
                let w = (-dt / self.tau.as_secs_f64().max(1e-9)).exp();
                self.micros * w + r * (1.0 - w)
            }
            _ => r,
        };
        self.at = Some(now);
    }

    /// The average in microseconds (0 before any sample).
    pub fn micros(&self) -> f64 {
        self.micros
    }

    /// Starts the average at `value` as of `now`, if it has no sample yet.
    pub fn seed(&mut self, value: Duration, now: Instant) {
        if self.at.is_none() {
            self.micros = value.as_secs_f64() * 1e6;
            self.at = Some(now);
        }
    }
}

/// One server's round-trip estimate (all in microseconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RttEstimator {
    /// `None` until the first sample.
    srtt_us: Option<u64>,
    rttvar_us: u64,
    /// The slowly decaying peak the deadline never goes below.
    peak: PeakEwma,
    /// The current deadline, when it differs from the policy's initial
    /// (after a sample or a back-off).
    rto: Option<Duration>,
    /// Attempts sent before this instant cannot back the deadline off
    /// again (one back-off per event).
    backed_off_at: Option<Instant>,
    /// When the first round trip was measured: how long the deadline has
    /// had to learn the path's stalls.
    first_sample_at: Option<Instant>,
}

impl Default for RttEstimator {
    fn default() -> Self {
        RttEstimator {
            srtt_us: None,
            rttvar_us: 0,
            peak: PeakEwma::new(PEAK_DECAY),
            rto: None,
            backed_off_at: None,
            first_sample_at: None,
        }
    }
}

impl RttEstimator {
    /// The deadline an attempt to this server gets now.
    pub fn timeout(&self, policy: &TimeoutPolicy) -> Duration {
        policy.clamp(self.rto.unwrap_or(policy.initial))
    }

    /// The smoothed round-trip time, once there is a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt_us.map(Duration::from_micros)
    }

    /// How long round trips have been measured, at `now` (zero before the
    /// first): a deadline learnt over less than a few seconds of stalls
    /// says little about the next one.
    pub fn measured_for(&self, now: Instant) -> Duration {
        self.first_sample_at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at))
    }

    /// An answer that came `rtt` after its attempt was sent, at `now`.
    pub fn sample(&mut self, rtt: Duration, now: Instant, policy: &TimeoutPolicy) {
        self.first_sample_at.get_or_insert(now);
        // Until a stall has been seen, assume one as long as the initial
        // deadline (RFC 6298 starts conservative too), decaying from there:
        // a fresh LB does not fire a wave of retries at its first stall.
        self.peak.seed(policy.initial, now);
        self.peak.sample(rtt, now);
        let r = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
        match self.srtt_us {
            None => {
                self.srtt_us = Some(r);
                self.rttvar_us = r / 2;
            }
            Some(srtt) => {
                // RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R'|; SRTT <- 7/8 SRTT + 1/8 R'
                self.rttvar_us = (3 * self.rttvar_us + srtt.abs_diff(r)) / 4;
                self.srtt_us = Some((7 * srtt + r) / 8);
            }
        }
        let srtt = self.srtt_us.unwrap_or(r);
        let rto = srtt
            .saturating_add(self.rttvar_us.saturating_mul(4))
            .max((self.peak.micros() * PEAK_HEADROOM) as u64);
        self.rto = Some(policy.clamp(Duration::from_micros(rto)));
    }

    /// An attempt sent at `sent` timed out although the server answered
    /// something after it was sent: it is slower than its deadline. Doubles
    /// the deadline, once per event. Returns whether it did.
    pub fn back_off(&mut self, sent: Instant, now: Instant, policy: &TimeoutPolicy) -> bool {
        if self.backed_off_at.is_some_and(|at| sent < at) {
            return false;
        }
        self.rto = Some(policy.clamp(self.timeout(policy).saturating_mul(2)));
        self.backed_off_at = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn no_sample_gives_the_initial_deadline() {
        let policy = TimeoutPolicy::default();
        assert_eq!(RttEstimator::default().timeout(&policy), 20 * MS);
        assert_eq!(RttEstimator::default().srtt(), None);
    }

    #[test]
    fn steady_samples_converge_and_the_minimum_holds() {
        let policy = TimeoutPolicy::default();
        let mut rtt = RttEstimator::default();
        let t0 = Instant::now();
        rtt.sample(Duration::from_micros(400), t0, &policy);
        // At first the peak is the initial 20 ms, twice over.
        assert_eq!(rtt.timeout(&policy), 40 * MS);
        // A minute of 400 us answers later: 400 + 4 * ~0 us, below the
        // 5 ms floor.
        for i in 1..=60 {
            rtt.sample(Duration::from_micros(400), t0 + i * 1000 * MS, &policy);
        }
        assert_eq!(rtt.srtt(), Some(Duration::from_micros(400)));
        assert_eq!(rtt.timeout(&policy), 5 * MS);
    }

    #[test]
    fn a_slower_server_gets_a_longer_deadline_than_its_latency() {
        let policy = TimeoutPolicy::default();
        let mut rtt = RttEstimator::default();
        let t0 = Instant::now();
        for i in 0..100u64 {
            // 32 ms +- 1 ms
            let r = Duration::from_micros(31_000 + (i % 3) * 1_000);
            rtt.sample(r, t0 + MS * i as u32, &policy);
        }
        // Twice the peak of 33 ms: room for the next, longer stall.
        let t = rtt.timeout(&policy);
        assert!(t > 64 * MS && t < 70 * MS, "{t:?}");
    }

    #[test]
    fn the_maximum_caps_samples_and_back_offs() {
        let policy = TimeoutPolicy::default();
        let mut rtt = RttEstimator::default();
        let t0 = Instant::now();
        rtt.sample(Duration::from_secs(3), t0, &policy);
        assert_eq!(rtt.timeout(&policy), 250 * MS);
        assert!(rtt.back_off(t0, t0, &policy));
        assert_eq!(rtt.timeout(&policy), 250 * MS);
    }

    #[test]
    fn back_off_doubles_once_per_event_and_a_sample_recomputes() {
        let policy = TimeoutPolicy::default();
        let mut rtt = RttEstimator::default();
        let t0 = Instant::now();
        // 32 attempts sent together time out together: one doubling.
        assert!(rtt.back_off(t0, t0 + 20 * MS, &policy));
        for _ in 0..31 {
            assert!(!rtt.back_off(t0, t0 + 20 * MS, &policy));
        }
        assert_eq!(rtt.timeout(&policy), 40 * MS);
        // An attempt sent after that back-off may double it again.
        assert!(rtt.back_off(t0 + 21 * MS, t0 + 61 * MS, &policy));
        assert_eq!(rtt.timeout(&policy), 80 * MS);
        // A sample recomputes: 10 + 4 * 5 = 30 ms, but the peak starts at
        // the initial 20 ms, twice over.
        rtt.sample(10 * MS, t0 + 62 * MS, &policy);
        assert_eq!(rtt.timeout(&policy), 40 * MS);
    }

    #[test]
    fn a_stall_keeps_the_deadline_above_it_for_seconds() {
        let policy = TimeoutPolicy::default();
        let mut rtt = RttEstimator::default();
        let t0 = Instant::now();
        for i in 0..100 {
            rtt.sample(Duration::from_micros(400), t0 + i * 1000 * MS, &policy);
        }
        assert_eq!(rtt.timeout(&policy), 5 * MS);
        let t0 = t0 + 100_000 * MS;
        // One 60 ms stall, then the usual 0.4 ms again.
        rtt.sample(60 * MS, t0 + 100 * MS, &policy);
        rtt.sample(Duration::from_micros(400), t0 + 101 * MS, &policy);
        assert!(rtt.timeout(&policy) > 119 * MS);
        // Five seconds of usual answers later it still covers most of it
        // (RFC 6298's variation alone would have forgotten it after a few
        // dozen answers); a minute later it is forgotten.
        for i in 0..5_000 {
            rtt.sample(Duration::from_micros(400), t0 + (101 + i) * MS, &policy);
        }
        let t = rtt.timeout(&policy);
        assert!(t > 60 * MS && t < 80 * MS, "{t:?}");
        rtt.sample(Duration::from_micros(400), t0 + 60_000 * MS, &policy);
        assert_eq!(rtt.timeout(&policy), 5 * MS);
    }

    #[test]
    fn measured_for_counts_from_the_first_sample() {
        let policy = TimeoutPolicy::default();
        let mut rtt = RttEstimator::default();
        let t0 = Instant::now();
        assert_eq!(rtt.measured_for(t0 + 900 * MS), Duration::ZERO);
        rtt.sample(MS, t0 + 100 * MS, &policy);
        rtt.sample(MS, t0 + 300 * MS, &policy);
        assert_eq!(rtt.measured_for(t0 + 900 * MS), 800 * MS);
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new(Duration::from_secs(1));
        assert_eq!(e.micros(), 0.0);
        e.sample(Duration::from_micros(500), t0);
        assert_eq!(e.micros(), 500.0);
        e.sample(30 * MS, t0 + MS);
        assert_eq!(e.micros(), 30_000.0);
        // One time constant later a low sample pulls it about 63 % down.
        e.sample(Duration::from_micros(500), t0 + MS + Duration::from_secs(1));
        assert!((e.micros() - 11_350.0).abs() < 100.0, "{}", e.micros());
    }
}
