//! The failure-handling rules under load, in simulated time: a [`Sim`]
//! offers requests at a fixed rate to a [`Core`] and plays each server as
//! a behaviour (how long it takes to answer at a given moment, or never),
//! delivering answers, deadlines and requests in time order. No sockets,
//! no sleeps: a few seconds of traffic run in milliseconds.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering::Relaxed;

use ipcs_common::Op;

use super::tests::{answer, backend, config, mac, request, LB, MS};
use super::*;
use crate::snapshot::shared_empty;

/// How long server `id` takes to answer a request that reaches it `at`
/// after the start; `None`: it never answers.
type Behaviour = Box<dyn FnMut(u8, Duration) -> Option<Duration>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Answered { server_id: u8 },
    Error(Status),
}

struct Sim {
    core: Core,
    stats: Arc<WorkerStats>,
    t0: Instant,
    now: Instant,
    behaviour: Behaviour,
    /// Answers on their way back: (due, sequence, frame).
    in_transit: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    seq: u64,
    sent: u64,
    outcomes: HashMap<SocketAddr, Outcome>,
    /// Each server's share of first attempts.
    first_attempts: HashMap<u8, u64>,
}

fn client_no(i: u64) -> SocketAddr {
    let ip = Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8);
    SocketAddr::from((ip, 1000 + (i >> 24) as u16))
}

impl Sim {
    fn new(config: CoreConfig, ids: &[u8], behaviour: Behaviour) -> Sim {
        let shared = shared_empty();
        let list = ids.iter().map(|id| backend(*id)).collect();
        shared.store(Arc::new(ServerSnapshot::new(1, list)));
        let stats = Arc::new(WorkerStats::default());
        let t0 = Instant::now();
        let core = Core::new(config, LB, shared, stats.clone(), t0).unwrap();
        Sim {
            core,
            stats,
            t0,
            now: t0,
            behaviour,
            in_transit: BinaryHeap::new(),
            seq: 0,
            sent: 0,
            outcomes: HashMap::new(),
            first_attempts: HashMap::new(),
        }
    }

    fn handle(&mut self, action: Action) {
        match action {
            Action::None => {}
            Action::Forward { server, .. } => {
                let id = server.0[5] - 10;
                let at = self.now.saturating_duration_since(self.t0);
                if let Some(delay) = (self.behaviour)(id, at) {
                    self.seq += 1;
                    let frame = answer(action, server, id);
                    self.in_transit
                        .push(Reverse((self.now + delay, self.seq, frame)));
                }
            }
            Action::Reply { client, reply } => {
                let old = self.outcomes.insert(
                    client,
                    Outcome::Answered {
                        server_id: reply.server_id,
                    },
                );
                assert_eq!(old, None, "{client} answered twice");
            }
            Action::Error { client, status } => {
                let old = self.outcomes.insert(client, Outcome::Error(status));
                assert_eq!(old, None, "{client} answered twice");
            }
        }
    }

    /// Offers `rps` requests per second until `until` after the start,
    /// then lets everything in flight finish (answered or given up).
    fn run(&mut self, rps: u64, until: Duration) {
        let end = self.t0 + until;
        let gap = Duration::from_nanos(1_000_000_000 / rps);
        let mut next_request = self.now;
        loop {
            let next_answer = self.in_transit.peek().map(|Reverse((at, ..))| *at);
            let next_tick = self.core.next_deadline();
            let candidates = [
                (next_request < end).then_some(next_request),
                next_answer,
                next_tick,
            ];
            let Some(now) = candidates.into_iter().flatten().min() else {
                break;
            };
            if now >= end && next_request >= end && self.core.in_flight() == 0 {
                break;
            }
            self.now = now.max(self.now);
            if next_answer == Some(now) {
                let Reverse((_, _, frame)) = self.in_transit.pop().unwrap();
                let mut actions = Vec::new();
                self.core
                    .on_frame_records(&frame, self.now, |a| actions.push(a));
                actions.into_iter().for_each(|a| self.handle(a));
            } else if next_tick == Some(now) {
                let mut actions = Vec::new();
                self.core.on_tick(self.now, |a| actions.push(a));
                actions.into_iter().for_each(|a| self.handle(a));
            } else {
                let client = client_no(self.sent);
                self.sent += 1;
                let bytes = request(7, 6, Op::Mul).to_bytes();
                let action = self.core.on_request(client, &bytes, self.now);
                if let Action::Forward { server, .. } = action {
                    *self.first_attempts.entry(server.0[5] - 10).or_default() += 1;
                }
                self.handle(action);
                next_request += gap;
            }
        }
    }

    fn answered(&self) -> u64 {
        self.outcomes
            .values()
            .filter(|o| matches!(o, Outcome::Answered { .. }))
            .count() as u64
    }

    fn ejected(&self, id: u8) -> bool {
        self.core
            .health()
            .get(mac(id))
            .is_some_and(|s| s.health.is_ejected(self.now))
    }

    fn retries(&self) -> u64 {
        self.stats.retries.load(Relaxed)
    }

    /// Retries the budget paid for (failovers are outside it).
    fn budgeted_retries(&self) -> u64 {
        self.retries() - self.stats.failovers.load(Relaxed)
    }

    fn ejections(&self) -> u64 {
        self.stats.ejections.load(Relaxed)
    }
}

fn sim_config() -> CoreConfig {
    CoreConfig {
        capacity: 1 << 16,
        ..config()
    }
}

/// A server that answers in `base`, give or take a quarter, drawn per
/// request.
fn jittered(base: Duration, rng: &mut fastrand::Rng) -> Duration {
    base.mul_f64(0.75 + rng.f64() * 0.5)
}

#[test]
fn a_server_2ms_slower_than_the_others_is_never_ejected_nor_retried() {
    let mut rng = fastrand::Rng::with_seed(3);
    let behaviour = Box::new(move |id: u8, _at: Duration| {
        let base = if id == 3 { 2_300 } else { 300 };
        Some(jittered(Duration::from_micros(base), &mut rng))
    });
    let mut sim = Sim::new(sim_config(), &[1, 2, 3], behaviour);
    sim.run(5_000, Duration::from_secs(4));
    assert_eq!(sim.sent, 20_000);
    assert_eq!(sim.answered(), 20_000);
    assert_eq!(sim.ejections(), 0);
    assert_eq!(sim.retries(), 0);
    // Its round trip is known; its deadline is above it (still holding
    // the conservative start, which decays over tens of seconds).
    let s3 = sim.core.health().get(mac(3)).unwrap();
    let srtt = s3.rtt.srtt().unwrap();
    assert!(srtt > 2 * MS && srtt < 3 * MS, "{srtt:?}");
    let t = s3.rtt.timeout(&sim_config().timeout);
    assert!(t >= 5 * MS && t <= 40 * MS, "{t:?}");
    // Round-robin keeps the exact spread.
    assert_eq!(sim.first_attempts[&3], 20_000 / 3);
}

#[test]
fn a_host_brownout_ejects_nobody_answers_everyone_and_stays_in_budget() {
    let mut rng = fastrand::Rng::with_seed(4);
    // Every server +30 ms at once from 1 s to 3 s.
    let behaviour = Box::new(move |_id: u8, at: Duration| {
        let slow = at >= Duration::from_secs(1) && at < Duration::from_secs(3);
        let extra = if slow { 30 * MS } else { Duration::ZERO };
        Some(jittered(Duration::from_micros(400), &mut rng) + extra)
    });
    let mut sim = Sim::new(sim_config(), &[1, 2, 3], behaviour);
    sim.run(5_000, Duration::from_secs(4));
    assert_eq!(sim.answered(), sim.sent, "every request answered");
    assert_eq!(sim.ejections(), 0);
    let budget = sim.sent / 5 + 100;
    // A fresh LB's deadline starts above 30 ms (twice the initial 20 ms
    // peak, decaying), so a brownout this early may need no retry at all.
    let r = sim.budgeted_retries();
    assert!(r <= budget, "retries {r} of budget {budget}");
}

#[test]
fn a_black_holed_server_is_out_within_a_second_and_nothing_is_lost() {
    let behaviour = Box::new(|id: u8, at: Duration| {
        (id != 2 || at < Duration::from_secs(1)).then_some(Duration::from_micros(400))
    });
    let mut sim = Sim::new(sim_config(), &[1, 2, 3], behaviour);
    sim.run(2_000, Duration::from_secs(2));
    assert!(
        sim.ejected(2),
        "server 2 out of rotation 1 s after the fault"
    );
    sim.run(2_000, Duration::from_secs(3));
    assert_eq!(sim.answered(), sim.sent, "no request lost");
    assert_eq!(sim.ejections(), 1);
    assert!(!sim.ejected(1) && !sim.ejected(3));
}

#[test]
fn two_of_three_dead_still_serves_from_the_third() {
    let behaviour = Box::new(|id: u8, at: Duration| {
        (id == 3 || at < Duration::from_secs(1)).then_some(Duration::from_micros(400))
    });
    let mut sim = Sim::new(sim_config(), &[1, 2, 3], behaviour);
    sim.run(2_000, Duration::from_secs(4));
    assert_eq!(sim.answered(), sim.sent, "no request lost");
    assert!(sim.ejected(1) && sim.ejected(2) && !sim.ejected(3));
}

#[test]
fn when_every_server_is_slow_retries_stay_within_the_budget() {
    let behaviour = Box::new(|_id: u8, _at: Duration| Some(60 * MS));
    let mut sim = Sim::new(sim_config(), &[1, 2, 3], behaviour);
    sim.run(5_000, Duration::from_secs(3));
    assert_eq!(sim.answered(), sim.sent);
    assert_eq!(sim.ejections(), 0);
    let budget = sim.sent / 5 + 100;
    let r = sim.budgeted_retries();
    assert!(r <= budget, "retries {r} over budget {budget}");
    // Deadlines learnt the 60 ms round trip.
    for id in 1..=3 {
        let t = sim
            .core
            .health()
            .get(mac(id))
            .unwrap()
            .rtt
            .timeout(&sim_config().timeout);
        assert!(t >= 60 * MS, "server {id}: {t:?}");
    }
}

#[test]
fn a_retry_storm_is_cut_off_by_the_budget() {
    // No sample can help: every server takes 300 ms, past the longest
    // deadline, so every attempt times out.
    let behaviour = Box::new(|_id: u8, _at: Duration| Some(300 * MS));
    let config = CoreConfig {
        request_timeout: Duration::from_secs(1),
        ..sim_config()
    };
    let mut sim = Sim::new(config, &[1, 2, 3], behaviour);
    sim.run(5_000, Duration::from_secs(3));
    assert_eq!(sim.answered(), sim.sent);
    let budget = sim.sent / 5 + 100;
    let r = sim.budgeted_retries();
    assert!(r <= budget, "retries {r} over budget {budget}");
    assert!(sim.stats.retries_over_budget.load(Relaxed) > 0);
}

#[test]
fn p2c_sends_less_to_a_slow_server() {
    let mut rng = fastrand::Rng::with_seed(5);
    let behaviour = Box::new(move |id: u8, _at: Duration| {
        let base = if id == 3 { 10_000 } else { 300 };
        Some(jittered(Duration::from_micros(base), &mut rng))
    });
    let config = CoreConfig {
        policy: Policy::P2c,
        ..sim_config()
    };
    let mut sim = Sim::new(config, &[1, 2, 3], behaviour);
    sim.run(5_000, Duration::from_secs(2));
    assert_eq!(sim.answered(), sim.sent);
    let share3 = sim.first_attempts.get(&3).copied().unwrap_or(0) as f64 / sim.sent as f64;
    assert!(share3 < 0.05, "slow server's share {share3}");
    assert_eq!(sim.ejections(), 0);
}

#[test]
fn a_server_answering_errors_is_an_outlier_and_is_ejected() {
    let shared = shared_empty();
    let list = [1, 2, 3].iter().map(|id| backend(*id)).collect();
    shared.store(Arc::new(ServerSnapshot::new(1, list)));
    let stats = Arc::new(WorkerStats::default());
    let t0 = Instant::now();
    let mut core = Core::new(sim_config(), LB, shared, stats.clone(), t0).unwrap();
    let bytes = request(1, 2, Op::Add).to_bytes();
    for i in 0..300u64 {
        let now = t0 + Duration::from_micros(i * 1000);
        let a = core.on_request(client_no(i), &bytes, now);
        let Action::Forward { server, tag, .. } = a else {
            panic!("{a:?}")
        };
        let frame = if server == mac(1) {
            let f = FrameRepr {
                dst: LB,
                src: server,
                tag,
                body: FrameBody::Error(Status::Overloaded),
            };
            let mut buf = [0u8; 64];
            f.emit_into(&mut buf).to_vec()
        } else {
            answer(a, server, server.0[5] - 10)
        };
        let mut retry = None;
        core.on_frame_records(&frame, now, |a| retry = Some(a));
        if let Some(a @ Action::Forward { server, .. }) = retry {
            core.on_frame_records(&answer(a, server, server.0[5] - 10), now, |_| {});
        }
    }
    core.on_tick(t0 + Duration::from_secs(1), |_| {});
    let s1 = core.health().get(mac(1)).unwrap();
    assert!(s1.health.is_ejected(t0 + Duration::from_secs(1)));
    assert_eq!(stats.ejections.load(Relaxed), 1);
}

#[test]
fn what_the_lb_lost_itself_is_held_against_nobody() {
    let behaviour =
        Box::new(|id: u8, _at: Duration| (id != 1).then_some(Duration::from_micros(400)));
    let mut sim = Sim::new(sim_config(), &[1, 2], behaviour);
    // Everything server 1 is sent is "lost by the LB".
    sim.core
        .on_local_loss(sim.t0, sim.t0 + Duration::from_secs(10));
    sim.run(2_000, Duration::from_secs(2));
    // Its retries were failovers, not budgeted.
    assert_eq!(sim.stats.retries_over_budget.load(Relaxed), 0);
    assert_eq!(sim.answered(), sim.sent);
    assert_eq!(sim.ejections(), 0);
    assert_eq!(
        sim.core
            .health()
            .get(mac(1))
            .unwrap()
            .health
            .silent_events(),
        0
    );
}

#[test]
fn a_source_port_of_zero_is_dropped() {
    let behaviour = Box::new(|_id: u8, _at: Duration| Some(MS));
    let mut sim = Sim::new(sim_config(), &[1], behaviour);
    let client = SocketAddr::from(([10, 0, 0, 1], 0));
    let action = sim
        .core
        .on_request(client, &request(1, 2, Op::Add).to_bytes(), sim.t0);
    assert_eq!(action, Action::None);
    assert_eq!(sim.stats.drop_count(DropReason::BadSource).load(Relaxed), 1);
    assert_eq!(sim.core.in_flight(), 0);
}

/// The LB tier's failover, as the chaos soak met it on a busy machine: a
/// standby that has carried nothing takes the VIP and gets 20,000 rps at
/// once, while the servers, on a host whose load is several times its
/// cores, are descheduled in turn for a while (here 200 ms each, one after
/// the other, the first at the very start). Every server is alive and
/// answers everything; none may be taken out of rotation, nothing may be
/// lost, and the retries must stay near what the stalls cost.
#[test]
fn a_cold_lb_taking_over_under_load_ejects_no_stalled_server() {
    let stall = 200 * MS;
    let mut rng = fastrand::Rng::with_seed(6);
    let behaviour = Box::new(move |id: u8, at: Duration| {
        let start = (300 * MS) * u32::from(id - 1);
        let usual = jittered(Duration::from_micros(400), &mut rng);
        let wait = if at >= start && at < start + stall {
            start + stall - at
        } else {
            Duration::ZERO
        };
        Some(wait + usual)
    });
    let mut sim = Sim::new(sim_config(), &[1, 2, 3, 4], behaviour);
    sim.run(20_000, Duration::from_millis(1_500));
    assert_eq!(sim.sent, 30_000);
    let (retries, failovers) = (sim.retries(), sim.stats.failovers.load(Relaxed));
    eprintln!(
        "cold takeover: {retries} retries ({failovers} failovers), {} ejections, {} answered",
        sim.ejections(),
        sim.answered()
    );
    assert_eq!(sim.ejections(), 0, "a stalled server is not a dead one");
    assert_eq!(sim.answered(), sim.sent, "nothing lost");
}
