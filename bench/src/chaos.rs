//! The chaos soak: steady load through the load balancer while a schedule of
//! faults runs (a server killed and restarted, one frozen past the registry's
//! TTL, the registry restarted, servers added and removed, one server's link
//! cut; in runs of 30 s or more also one server slowed and then all of them,
//! a "brownout"; with an LB tier, the LB holding the VIP killed; on the
//! two-host topology, the tunnel between the hosts cut for 2 s), then the
//! account: every request must be answered correctly (with an LB tier, or
//! be lost inside the measured failover window), and for each fault that
//! takes a server out, how long traffic still went to it; for each slowness
//! fault, what the LB did meanwhile; for a tunnel cut, how long traffic
//! still went to the far servers and how soon after the repair it reached
//! them again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipcs_testbed::{binary, Signal, Topology};

use crate::lb_tier::{Failover, LbTier, RESTART_DELAY};
use crate::loadgen::{Loadgen, Measurement};

/// The admin address of the single load balancer under test (in the core).
const ADMIN: &str = "127.0.0.1:7071";
const LISTEN: &str = "127.0.0.1:8080";
/// Slack on each side of the measured failover window inside which lost
/// requests are accepted: requests in flight at the killed LB (scheduled
/// just before the kill), and loadgen's clock, which starts a few
/// milliseconds after the soak's.
pub const FAILOVER_MARGIN: Duration = Duration::from_millis(100);
/// The window of loadgen's measured phase inside which requests may be lost
/// around a failover that began `at` (the kill) and took `after` (to the new
/// master): [`FAILOVER_MARGIN`] wider on each side.
pub fn allowed_losses(at: Duration, after: Duration) -> (Duration, Duration) {
    (
        at.saturating_sub(FAILOVER_MARGIN),
        at + after + FAILOVER_MARGIN,
    )
}

/// The soak's verdict on a load (this soak's, and deploy/chaos.sh's through
/// `ipcs-chaos --judge-load`): zero wrong, zero error replies (timed-out
/// included), something sent, and every request answered, or lost inside
/// `allowed` (the failover window; `None`: no loss allowed).
pub fn load_is_clean(m: &Measurement, allowed: Option<(Duration, Duration)>) -> bool {
    if m.wrong != 0 || m.errors != 0 {
        return false;
    }
    if m.lost == 0 {
        // Nothing sent is nothing shown.
        return m.sent > 0 && m.answered == m.sent;
    }
    match (allowed, m.loss_window) {
        (Some((from, to)), Some((first, last))) => {
            // Sends the kernel refused (ICMP from the dying LB's node)
            // are lost requests too, so lost may exceed sent - answered.
            first >= from && last <= to && m.answered + m.lost >= m.sent
        }
        _ => false,
    }
}

/// The per-server request counter the fault timings are read from.
const SERVER_REQUESTS: &str = "ipcs_lb_server_requests_total";
/// LB totals reported over each slowness fault's window (absent from an LB
/// that does not export them: then not reported).
const RETRIES: &str = "ipcs_lb_retries_total";
const EJECTIONS: &str = "ipcs_lb_ejections_total";
const ATTEMPT_TIMEOUTS: &str = "ipcs_lb_attempt_timeouts_total";
/// How much a slowness fault slows a server: well above the old LB's
/// 20 ms attempt timeout, well below anything that looks dead.
pub const SLOW_DELAY: Duration = Duration::from_millis(30);
/// How long one server is slowed.
pub const SLOW_FOR: Duration = Duration::from_millis(2500);
/// How long every server is slowed in the brownout.
pub const BROWNOUT_FOR: Duration = Duration::from_secs(2);
/// The shortest run whose schedule has room for the slowness faults next
/// to the others without overlapping a fault that takes a server out.
pub const MIN_SLOW_FAULTS_RUN: Duration = Duration::from_secs(30);
/// How long the tunnel between the two hosts is cut.
pub const TUNNEL_CUT_FOR: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub duration: Duration,
    pub rps: u64,
    pub servers: usize,
    /// Servers on a second host, joined to the first by a VXLAN tunnel
    /// (`ipcs_testbed::two_host`); 0: one host.
    pub far_servers: usize,
    /// Load balancers: 1, the single LB in the core; 2 or more, an LB tier
    /// sharing the VIP (keepalived), whose active LB the schedule kills.
    pub lbs: usize,
    pub out_dir: PathBuf,
}

/// Something done to the system at a point of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    KillServer(usize),
    RestartServer(usize),
    FreezeServer(usize),
    ThawServer(usize),
    KillRegistry,
    RestartRegistry,
    AddServer,
    RemoveServer(usize),
    CutLink(usize),
    RestoreLink(usize),
    /// The server answers [`SLOW_DELAY`] late (alive, not dead).
    SlowServer(usize),
    SpeedRestored(usize),
    /// Every server answers [`SLOW_DELAY`] late.
    Brownout,
    BrownoutOver,
    /// The wire between the two hosts cut: every far server unreachable.
    CutTunnel,
    RestoreTunnel,
    /// SIGKILL the LB holding the VIP (LB tier only).
    KillActiveLb,
    /// Its supervisor starts it again; it rejoins as standby.
    RestartLb,
}

impl Fault {
    /// The server slot this fault takes out of service, if it does.
    fn takes_out(self) -> Option<usize> {
        match self {
            Fault::KillServer(s)
            | Fault::FreezeServer(s)
            | Fault::RemoveServer(s)
            | Fault::CutLink(s) => Some(s),
            _ => None,
        }
    }

    /// The fault that ends this one's window of slowness, if it starts one.
    fn slowness_undo(self) -> Option<Fault> {
        match self {
            Fault::SlowServer(s) => Some(Fault::SpeedRestored(s)),
            Fault::Brownout => Some(Fault::BrownoutOver),
            _ => None,
        }
    }
}

/// The schedule, as fractions of the run: works for 10 s and 60 s alike.
/// The link cut lasts 2 s whatever the length (as the issue asks); the
/// freeze lasts longer than the registry's TTL (1.5 s). From
/// [`MIN_SLOW_FAULTS_RUN`] on, one server is slowed for [`SLOW_FOR`] between
/// the thaw and the registry's restart, and all are (the brownout, for
/// [`BROWNOUT_FOR`]) after the link is restored; shorter runs have no room
/// for them beside the other faults. With `lb_tier`, the LB holding the VIP
/// is killed at 50 % and restarted [`RESTART_DELAY`] later, as its
/// supervisor does: nothing else happens within 300 ms before to 400 ms
/// after, and the registry's list is right by then (no server taken out in
/// the 1.8 s before, longer than its TTL; no registry restart in the 3.5 s
/// before, longer than the LB's resync), so the standby, which has sent
/// nothing yet and knows the servers only from the registry, takes over a
/// true list: the failover is measured alone.
pub fn schedule(duration: Duration, lb_tier: bool) -> Vec<(Duration, Fault)> {
    let at = |f: f64| duration.mul_f64(f);
    let mut plan = vec![
        (at(0.10), Fault::KillServer(0)),
        (at(0.22), Fault::RestartServer(0)),
        (at(0.30), Fault::FreezeServer(1)),
        (at(0.30) + Duration::from_millis(2500), Fault::ThawServer(1)),
        (at(0.55), Fault::KillRegistry),
        (at(0.63), Fault::RestartRegistry),
        (at(0.40), Fault::AddServer),
        (at(0.70), Fault::RemoveServer(2)),
        (at(0.78), Fault::CutLink(3)),
        (at(0.78) + Duration::from_secs(2), Fault::RestoreLink(3)),
    ];
    if lb_tier {
        plan.extend([
            (at(0.50), Fault::KillActiveLb),
            (at(0.50) + RESTART_DELAY, Fault::RestartLb),
        ]);
    }
    if duration >= MIN_SLOW_FAULTS_RUN {
        plan.extend([
            (at(0.45), Fault::SlowServer(3)),
            (at(0.45) + SLOW_FOR, Fault::SpeedRestored(3)),
            (at(0.90), Fault::Brownout),
            (at(0.90) + BROWNOUT_FOR, Fault::BrownoutOver),
        ]);
    }
    plan.sort_by_key(|(t, _)| *t);
    plan
}

/// The schedule of a run: [`schedule`], and on two hosts the tunnel cut for
/// [`TUNNEL_CUT_FOR`] early in the run (beside the first server kill,
/// before the freeze: never with most servers out at once; well before an
/// LB tier's failover at 50 %).
pub fn schedule_for(duration: Duration, lb_tier: bool, two_hosts: bool) -> Vec<(Duration, Fault)> {
    let mut plan = schedule(duration, lb_tier);
    if two_hosts {
        let cut = duration.mul_f64(0.08);
        plan.extend([
            (cut, Fault::CutTunnel),
            (cut + TUNNEL_CUT_FOR, Fault::RestoreTunnel),
        ]);
        plan.sort_by_key(|(t, _)| *t);
    }
    plan
}

/// The schedule as text for scripts: `SECONDS FAULT [SLOT] [DELAY]` per
/// line, the delay (as `ipcs-server --fault-delay` reads it) ending the
/// slowness steps, e.g. `13.500 SlowServer 3 30ms`, `29.000 BrownoutOver 0`.
pub fn render_schedule(plan: &[(Duration, Fault)]) -> String {
    plan.iter()
        .map(|&(t, f)| {
            let mut step = format!("{f:?}").replace(['(', ')'], " ");
            step.truncate(step.trim_end().len());
            match f {
                Fault::SlowServer(_) | Fault::Brownout => {
                    step += &format!(" {}ms", SLOW_DELAY.as_millis())
                }
                Fault::SpeedRestored(_) | Fault::BrownoutOver => step += " 0",
                _ => {}
            }
            format!("{:.3} {step}\n", t.as_secs_f64())
        })
        .collect()
}

/// One fault's account.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRecord {
    pub at: Duration,
    pub fault: Fault,
    /// Server id struck, for faults that take one out.
    pub server_id: Option<u8>,
    /// Time from the fault to the last request the LB sent that server
    /// before the fault was undone (None: no traffic seen after the fault).
    pub traffic_stopped_after: Option<Duration>,
    /// For a slowness fault, what the LB did until it was undone.
    pub slowness: Option<SlownessRecord>,
    /// For a tunnel cut, what happened to the far servers' traffic.
    pub tunnel: Option<TunnelRecord>,
}

/// What the LB sent the far servers around a tunnel cut (from the 10 ms
/// scrapes of its per-server request counters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunnelRecord {
    /// The ids of the servers beyond the tunnel.
    pub far_ids: Vec<u8>,
    /// From the cut to the last request any far server was sent before the
    /// repair (the LB took them out; `None`: none after the cut).
    pub traffic_stopped_after: Option<Duration>,
    /// From the repair to when every far server had been sent requests
    /// again (`None`: not all of them before the run ended).
    pub traffic_back_after: Option<Duration>,
}

/// What the LB did while servers were slow (counter deltas over the
/// window, from the 10 ms scrapes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlownessRecord {
    /// The ids of the servers slowed.
    pub slowed: Vec<u8>,
    pub window: Duration,
    /// Requests the LB sent the slowed server(s).
    pub to_slowed: u64,
    /// Requests the LB sent any server.
    pub to_all: u64,
    /// The slowed servers that got no request in the window's second half:
    /// taken out of rotation, which a slow server must not be.
    pub starved: Vec<u8>,
    pub retries: Option<u64>,
    pub ejections: Option<u64>,
    pub attempt_timeouts: Option<u64>,
}

/// The whole run's account.
#[derive(Debug, Clone)]
pub struct ChaosReport {
    pub load: Measurement,
    pub faults: Vec<FaultRecord>,
    /// With an LB tier: the failover the kill caused, and when it started
    /// (from the start of loadgen's measured phase).
    pub failover: Option<(Duration, Failover)>,
}

impl ChaosReport {
    /// The window of loadgen's measured phase inside which requests may be
    /// lost ([`allowed_losses`]). `None` without a failover.
    pub fn failover_window(&self) -> Option<(Duration, Duration)> {
        self.failover.map(|(at, f)| allowed_losses(at, f.after))
    }

    /// [`load_is_clean`] for this run.
    pub fn clean(&self) -> bool {
        load_is_clean(&self.load, self.failover_window())
    }

    pub fn render(&self) -> String {
        let m = &self.load;
        let mut s = format!(
            "sent {} answered {} wrong {} lost {} error replies {} | p50 {:.0} us p99 {:.0} us p99.9 {:.0} us max {:.0} us\n",
            m.sent, m.answered, m.wrong, m.lost, m.errors, m.p50_us, m.p99_us, m.p999_us, m.max_us
        );
        if let Some((at, f)) = &self.failover {
            s.push_str(&format!(
                "  failover: LB node {} killed at {:.3} s, node {} master {} ms later; losses allowed {:?}, loadgen's loss window {}\n",
                f.killed,
                at.as_secs_f64(),
                f.took_over,
                f.after.as_millis(),
                self.failover_window().map(|(a, b)| (a.as_secs_f64(), b.as_secs_f64())),
                m.loss_window.map_or("none".to_owned(), |(a, b)| format!(
                    "{:.3}-{:.3} s ({} ms)",
                    a.as_secs_f64(),
                    b.as_secs_f64(),
                    (b - a).as_millis()
                ))
            ));
        }
        for f in &self.faults {
            let id = f
                .server_id
                .map_or(String::new(), |id| format!(" (server {id})"));
            let stop = match (f.server_id, f.traffic_stopped_after) {
                (Some(_), Some(d)) => format!(": traffic stopped after {} ms", d.as_millis()),
                (Some(_), None) => ": no traffic after the fault".to_owned(),
                _ => String::new(),
            };
            let slow = f.slowness.as_ref().map_or(String::new(), |w| {
                let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
                format!(
                    ": servers {:?} +{} ms; over {:.1} s they got {} of {} requests ({:.1}%), starved {:?}; LB retries {} ejections {} attempt timeouts {}",
                    w.slowed,
                    SLOW_DELAY.as_millis(),
                    w.window.as_secs_f64(),
                    w.to_slowed,
                    w.to_all,
                    100.0 * w.to_slowed as f64 / w.to_all.max(1) as f64,
                    w.starved,
                    opt(w.retries),
                    opt(w.ejections),
                    opt(w.attempt_timeouts)
                )
            });
            let tunnel = f.tunnel.as_ref().map_or(String::new(), |t| {
                let ms = |d: Option<Duration>, none: &str| {
                    d.map_or(none.to_owned(), |d| format!("{} ms", d.as_millis()))
                };
                format!(
                    ": far servers {:?}: traffic stopped after {}, back {} after the repair",
                    t.far_ids,
                    ms(t.traffic_stopped_after, "(none after the cut)"),
                    ms(t.traffic_back_after, "never")
                )
            });
            s.push_str(&format!(
                "  t={:>6.2}s {:?}{id}{stop}{slow}{tunnel}\n",
                f.at.as_secs_f64(),
                f.fault
            ));
        }
        s
    }
}

/// One scrape of the LB's metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// Requests sent, per server id.
    pub per_server: BTreeMap<u8, u64>,
    /// [`RETRIES`], [`EJECTIONS`], [`ATTEMPT_TIMEOUTS`], when exported.
    pub totals: BTreeMap<&'static str, u64>,
}

/// Scrapes of the LB's metrics: (time since start, scrape).
type Samples = Vec<(Duration, Scrape)>;

/// Runs the soak on a fresh netns topology, with [`schedule_for`] its
/// length, LB tier and number of hosts.
pub fn run(config: &ChaosConfig) -> anyhow::Result<ChaosReport> {
    run_with(
        config,
        &schedule_for(config.duration, config.lbs >= 2, config.far_servers > 0),
    )
}

/// Runs the soak on a fresh netns topology with the faults of `plan`
/// (times after the load starts, in order).
pub fn run_with(config: &ChaosConfig, plan: &[(Duration, Fault)]) -> anyhow::Result<ChaosReport> {
    std::fs::create_dir_all(&config.out_dir)?;
    let mut builder = Topology::builder().servers(config.servers);
    if config.far_servers > 0 {
        builder = builder.far_servers(config.far_servers);
    }
    let mut topology = builder.build()?;
    let mut registry = topology.start_registry(&[])?;
    let mut server_procs: BTreeMap<usize, usize> = BTreeMap::new();
    for slot in topology.server_slots() {
        server_procs.insert(slot, start_server(&mut topology, slot)?);
    }
    let (mut tier, target, admins) = if config.lbs >= 2 {
        let tier = LbTier::start(&mut topology, config.lbs)?;
        let admins = tier.admins();
        (Some(tier), LbTier::target(), admins)
    } else {
        // Nice -10 (no longer the LB's default): the soak shares two cores
        // with the servers and loadgen at 20,000 rps, as it always has.
        topology.start_lb(&["--listen", LISTEN, "--admin", ADMIN, "--nice", "-10"])?;
        (None, LISTEN.parse()?, vec![ADMIN.parse()?])
    };
    let loadgen = Loadgen {
        program: binary("loadgen"),
        netns: topology.core_netns().map(str::to_owned),
        sockets: 4,
        threads: 1,
    };
    wait_until_serving(
        &loadgen,
        target,
        &config.out_dir,
        config.servers + config.far_servers,
    )?;

    // The metrics poller: per-server request counters every 10 ms.
    let samples: Arc<Mutex<Samples>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let poller = {
        let (samples, stop, core, admins) = (
            samples.clone(),
            stop.clone(),
            topology.core_netns().map(str::to_owned),
            admins.clone(),
        );
        std::thread::spawn(move || {
            if let Some(ns) = core {
                enter_netns(&ns);
            }
            while !stop.load(Ordering::Relaxed) {
                if let Some(counts) = scrape(&admins) {
                    samples
                        .lock()
                        .expect("poller lock")
                        .push((start.elapsed(), counts));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    // The load, in the background, for the whole run.
    let load = {
        let (loadgen, rps, duration, hgrm) = (
            loadgen.clone(),
            config.rps,
            config.duration,
            config.out_dir.join("chaos.hgrm"),
        );
        std::thread::spawn(move || loadgen.fixed(target, rps, duration, &hgrm))
    };
    // loadgen warms up for 1 s before its measured run starts.
    let load_start = start + Duration::from_secs(1);

    let mut records = Vec::new();
    // Per record: the server ids a slowness fault slowed.
    let mut slowed_ids: Vec<Vec<u8>> = Vec::new();
    let mut killed_at = None;
    for &(at, fault) in plan {
        let when = load_start + at;
        if let Some(wait) = when.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let server_id = fault.takes_out().map(Topology::server_id);
        match fault {
            Fault::KillServer(s) => topology.process(server_procs[&s]).signal(Signal::Kill)?,
            Fault::RestartServer(s) => {
                server_procs.insert(s, start_server(&mut topology, s)?);
            }
            Fault::FreezeServer(s) => topology.process(server_procs[&s]).signal(Signal::Stop)?,
            Fault::ThawServer(s) => topology.process(server_procs[&s]).signal(Signal::Cont)?,
            Fault::KillRegistry => topology.process(registry).signal(Signal::Kill)?,
            Fault::RestartRegistry => {
                topology
                    .process_mut(registry)
                    .wait_timeout(Duration::from_secs(1));
                registry = topology.start_registry(&[])?;
            }
            Fault::AddServer => {
                let slot = topology.add_server()?;
                server_procs.insert(slot, start_server(&mut topology, slot)?);
            }
            Fault::RemoveServer(s) => {
                topology.remove_server(s)?;
                server_procs.remove(&s);
            }
            Fault::CutLink(s) => {
                let host = topology
                    .server(s)
                    .ok_or_else(|| anyhow::anyhow!("no server {s}"))?
                    .clone();
                topology.set_link(&host, false)?;
            }
            Fault::RestoreLink(s) => {
                let host = topology
                    .server(s)
                    .ok_or_else(|| anyhow::anyhow!("no server {s}"))?
                    .clone();
                topology.set_link(&host, true)?;
            }
            Fault::CutTunnel => topology.set_tunnel(false)?,
            Fault::RestoreTunnel => topology.set_tunnel(true)?,
            Fault::KillActiveLb | Fault::RestartLb => {
                let tier = tier
                    .as_mut()
                    .ok_or_else(|| anyhow::anyhow!("{fault:?} without an LB tier"))?;
                if fault == Fault::KillActiveLb {
                    tier.kill_active(&mut topology)?;
                    killed_at = Some(when.saturating_duration_since(load_start));
                } else {
                    tier.restart_killed(&mut topology)?;
                }
            }
            Fault::SlowServer(s) => topology.set_server_delay(s, SLOW_DELAY)?,
            Fault::SpeedRestored(s) => topology.set_server_delay(s, Duration::ZERO)?,
            Fault::Brownout | Fault::BrownoutOver => {
                let delay = if fault == Fault::Brownout {
                    SLOW_DELAY
                } else {
                    Duration::ZERO
                };
                for slot in topology.server_slots() {
                    topology.set_server_delay(slot, delay)?;
                }
            }
        }
        let slowed = match fault {
            Fault::SlowServer(s) => vec![Topology::server_id(s)],
            Fault::Brownout => topology
                .server_slots()
                .into_iter()
                .map(Topology::server_id)
                .collect(),
            _ => Vec::new(),
        };
        let tunnel = (fault == Fault::CutTunnel).then(|| TunnelRecord {
            far_ids: topology
                .server_slots()
                .into_iter()
                .filter(|s| topology.is_far(*s))
                .map(Topology::server_id)
                .collect(),
            ..TunnelRecord::default()
        });
        records.push(FaultRecord {
            at: when.saturating_duration_since(start),
            fault,
            server_id,
            traffic_stopped_after: None,
            slowness: None,
            tunnel,
        });
        slowed_ids.push(slowed);
    }
    let load = load
        .join()
        .map_err(|_| anyhow::anyhow!("load thread panicked"))??;
    stop.store(true, Ordering::Relaxed);
    let _ = poller.join();
    let samples = samples.lock().expect("poller lock").clone();
    fill_traffic_stops(&mut records, &samples);
    fill_slowness(&mut records, &slowed_ids, &samples);
    fill_tunnel(&mut records, &samples);
    let failover = match (&tier, killed_at) {
        (Some(tier), Some(at)) => tier.failover(&topology).map(|f| (at, f)),
        _ => None,
    };
    let report = ChaosReport {
        load,
        faults: records,
        failover,
    };
    if !report.clean() {
        // The topology (and its log directory) goes with this function.
        let path = config.out_dir.join("chaos-logs.txt");
        std::fs::write(&path, topology.logs())?;
        eprintln!("chaos: not clean; process logs kept in {}", path.display());
    }
    Ok(report)
}

/// For each fault that takes a server out: the last time its counter grew
/// before the fault was undone (or the run ended), measured from the fault.
fn fill_traffic_stops(records: &mut [FaultRecord], samples: &Samples) {
    let undo_of = |fault: Fault| match fault {
        Fault::KillServer(s) => Some(Fault::RestartServer(s)),
        Fault::FreezeServer(s) => Some(Fault::ThawServer(s)),
        Fault::CutLink(s) => Some(Fault::RestoreLink(s)),
        _ => None,
    };
    let times: Vec<(Fault, Duration)> = records.iter().map(|r| (r.fault, r.at)).collect();
    for r in records.iter_mut() {
        let Some(id) = r.server_id else { continue };
        let until = undo_of(r.fault)
            .and_then(|u| {
                times
                    .iter()
                    .find(|(f, t)| *f == u && *t > r.at)
                    .map(|(_, t)| *t)
            })
            .unwrap_or(Duration::MAX);
        let mut last_growth = None;
        let mut prev = None;
        for (t, scrape) in samples.iter().filter(|(t, _)| *t <= until) {
            let c = scrape.per_server.get(&id).copied();
            if *t > r.at && c.is_some() && prev.is_some() && c > prev {
                last_growth = Some(*t - r.at);
            }
            prev = c.or(prev);
        }
        r.traffic_stopped_after = last_growth.or(Some(Duration::ZERO));
    }
}

/// For each slowness fault: the LB's counters over its window (from the
/// first scrape at or after the fault to the last before it was undone).
fn fill_slowness(records: &mut [FaultRecord], slowed_ids: &[Vec<u8>], samples: &Samples) {
    let times: Vec<(Fault, Duration)> = records.iter().map(|r| (r.fault, r.at)).collect();
    for (r, ids) in records.iter_mut().zip(slowed_ids) {
        let Some(undo) = r.fault.slowness_undo() else {
            continue;
        };
        let until = times
            .iter()
            .find(|(f, t)| *f == undo && *t > r.at)
            .map_or(Duration::MAX, |(_, t)| *t);
        let window: Vec<&(Duration, Scrape)> = samples
            .iter()
            .filter(|(t, _)| *t >= r.at && *t <= until)
            .collect();
        let (Some((t0, first)), Some((t1, last))) = (window.first(), window.last()) else {
            continue;
        };
        let delta = |id: &u8, a: &Scrape, b: &Scrape| {
            b.per_server
                .get(id)
                .unwrap_or(&0)
                .saturating_sub(*a.per_server.get(id).unwrap_or(&0))
        };
        let total = |name: &str| {
            Some(
                last.totals
                    .get(name)?
                    .saturating_sub(*first.totals.get(name).unwrap_or(&0)),
            )
        };
        let (_, middle) = window[window.len() / 2];
        r.slowness = Some(SlownessRecord {
            slowed: ids.clone(),
            window: *t1 - *t0,
            to_slowed: ids.iter().map(|id| delta(id, first, last)).sum(),
            to_all: last
                .per_server
                .keys()
                .map(|id| delta(id, first, last))
                .sum(),
            starved: ids
                .iter()
                .filter(|id| delta(id, middle, last) == 0)
                .copied()
                .collect(),
            retries: total(RETRIES),
            ejections: total(EJECTIONS),
            attempt_timeouts: total(ATTEMPT_TIMEOUTS),
        });
    }
}

/// For each tunnel cut: when the far servers' counters last grew before the
/// repair, and when all of them had grown again after it.
fn fill_tunnel(records: &mut [FaultRecord], samples: &Samples) {
    let times: Vec<(Fault, Duration)> = records.iter().map(|r| (r.fault, r.at)).collect();
    for r in records.iter_mut() {
        let at = r.at;
        let Some(t) = r.tunnel.as_mut() else { continue };
        let repair = times
            .iter()
            .find(|(f, u)| *f == Fault::RestoreTunnel && *u > at)
            .map_or(Duration::MAX, |(_, u)| *u);
        let count = |s: &Scrape| -> Vec<u64> {
            t.far_ids
                .iter()
                .map(|id| s.per_server.get(id).copied().unwrap_or(0))
                .collect()
        };
        let mut last_growth = None;
        let mut back: Vec<Option<Duration>> = vec![None; t.far_ids.len()];
        for pair in samples.windows(2) {
            let ((_, a), (when, b)) = (&pair[0], &pair[1]);
            let grew: Vec<bool> = count(a).iter().zip(count(b)).map(|(x, y)| y > *x).collect();
            if *when > at && *when <= repair && grew.contains(&true) {
                last_growth = Some(*when - at);
            }
            if *when > repair {
                for (slot, g) in back.iter_mut().zip(&grew) {
                    if *g && slot.is_none() {
                        *slot = Some(*when - repair);
                    }
                }
            }
        }
        t.traffic_stopped_after = last_growth;
        t.traffic_back_after = back
            .iter()
            .copied()
            .collect::<Option<Vec<_>>>()
            .and_then(|v| v.into_iter().max());
    }
}

/// Starts slot `slot`'s server able to be slowed later (its fault-delay file).
fn start_server(topology: &mut Topology, slot: usize) -> anyhow::Result<usize> {
    let file = topology.fault_delay_file(slot);
    let file = file
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", file.display()))?
        .to_owned();
    Ok(topology.start_server(slot, &["--fault-delay-file", &file])?)
}

fn enter_netns(ns: &str) {
    if let Err(e) = ipcs_common::sys::netns::enter_for_thread(ns) {
        eprintln!("chaos: cannot enter {ns}: {e}");
    }
}

/// `GET /metrics` from every LB's admin address, summed: per-server
/// request counts and the totals slowness faults report. `None` when no LB
/// answered (a dead LB's counters are simply missing from the sum).
fn scrape(admins: &[SocketAddr]) -> Option<Scrape> {
    let mut sum: Option<Scrape> = None;
    for admin in admins {
        let Some(one) = scrape_one(*admin) else {
            continue;
        };
        let total = sum.get_or_insert_with(Scrape::default);
        for (id, n) in one.per_server {
            *total.per_server.entry(id).or_default() += n;
        }
        for (name, n) in one.totals {
            *total.totals.entry(name).or_default() += n;
        }
    }
    sum
}

fn scrape_one(admin: SocketAddr) -> Option<Scrape> {
    let (status, body) =
        ipcs_common::admin_http::get(admin, "/metrics", Duration::from_millis(500)).ok()?;
    (status == 200).then(|| parse_scrape(&body))
}

/// Reads a metrics text into a [`Scrape`].
pub fn parse_scrape(text: &str) -> Scrape {
    let mut totals = BTreeMap::new();
    for name in [RETRIES, EJECTIONS, ATTEMPT_TIMEOUTS] {
        let mut seen = false;
        let mut sum = 0u64;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                continue;
            }
            if let Some(Ok(v)) = rest.rsplit_once(' ').map(|(_, v)| v.trim().parse::<f64>()) {
                seen = true;
                sum += v as u64;
            }
        }
        if seen {
            totals.insert(name, sum);
        }
    }
    Scrape {
        per_server: parse_server_requests(text),
        totals,
    }
}

/// Reads `ipcs_lb_server_requests_total{...id="N"...} V` lines.
pub fn parse_server_requests(text: &str) -> BTreeMap<u8, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(SERVER_REQUESTS)) {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let id = labels
            .split(['{', ',', '}'])
            .find_map(|kv| {
                kv.strip_prefix("id=\"")
                    .or_else(|| kv.strip_prefix("server=\""))
            })
            .and_then(|v| v.trim_end_matches('"').parse::<u8>().ok());
        if let (Some(id), Ok(v)) = (id, value.trim().parse::<f64>()) {
            *out.entry(id).or_insert(0) += v as u64;
        }
    }
    out
}

fn wait_until_serving(
    loadgen: &Loadgen,
    target: SocketAddr,
    dir: &std::path::Path,
    servers: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let probe = dir.join("probe.hgrm");
    loop {
        if let Ok(m) = loadgen.fixed(target, 500, Duration::from_secs(1), &probe) {
            if m.sent > 0 && m.answered == m.sent && m.per_server.len() >= servers {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("the LB did not answer through all {servers} servers within 15 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
#[path = "chaos_tests.rs"]
mod tests;
