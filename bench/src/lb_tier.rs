//! The chaos soak's LB tier: two or more LB nodes of the testbed sharing the
//! VIP through keepalived (lbnode/src/vrrp.rs), the fault "kill the LB
//! holding the VIP", and the measured failover. The soak plays each node's
//! supervisor the way ipcs-lb-node does (lbnode/src/core.rs): it marks the
//! node down the moment it kills the LB, starts the LB again
//! [`RESTART_DELAY`] later, and marks the node up once the new LB answers on
//! the node's own address. (It kills the LB itself, so it knows the kill's
//! time to the microsecond, which the failover window is measured from.)

use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipcs_testbed::vrrp::{lb_node_ip, read_master_log, LB_ADMIN_PORT, LB_PORT, VIP};
use ipcs_testbed::{binary, Signal, Topology};

/// How long ipcs-lb-node waits before starting a dead LB again (its first
/// back-off step).
pub const RESTART_DELAY: Duration = ipcs_lb_node::core::Backoff::DEFAULT.first;

/// A running tier.
#[derive(Debug)]
pub struct LbTier {
    /// Node -> index of its current LB process in the topology.
    lbs: BTreeMap<usize, usize>,
    /// The last kill: node, wall-clock time (keepalived's notify times are
    /// wall-clock), and the instant.
    killed: Option<(usize, f64, Instant)>,
}

/// The failover a kill caused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Failover {
    pub killed: usize,
    pub took_over: usize,
    /// From the SIGKILL to the new master's notify (an upper bound: the
    /// notify script runs after the address is set and the ARPs sent).
    pub after: Duration,
    /// When the kill happened.
    pub at: Instant,
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Whether `calc` in the core gets `1+1 = 2` from `target`.
fn answers(calc: &mut std::process::Command) -> bool {
    calc.stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "2")
}

fn calc_to(topology: &Topology, target: SocketAddr) -> std::process::Command {
    let mut c = topology.command_in_core(&binary("calc"));
    c.args(["--timeout", "300ms", "--attempts", "1"])
        .arg(target.to_string())
        .arg("1+1");
    c
}

/// Each node's LB at nice -10, as the soak's single LB runs (no longer the
/// LB's default): the tier shares two cores with the servers and loadgen.
const LB_NODE_ARGS: &[&str] = &["--nice", "-10"];

fn own_addr(n: usize) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(lb_node_ip(n), LB_PORT))
}

impl LbTier {
    /// Makes `nodes` LB nodes, starts an LB and keepalived on each, marks
    /// each up once its LB answers, and waits until one holds the VIP.
    pub fn start(topology: &mut Topology, nodes: usize) -> anyhow::Result<LbTier> {
        anyhow::ensure!(nodes >= 2, "an LB tier needs 2 or more nodes, not {nodes}");
        let mut lbs = BTreeMap::new();
        for _ in 0..nodes {
            let n = topology.add_lb_node()?;
            lbs.insert(n, topology.start_lb_node(n, LB_NODE_ARGS)?);
            topology.start_keepalived(n)?;
        }
        for n in 1..=nodes {
            let deadline = Instant::now() + Duration::from_secs(15);
            while !answers(&mut calc_to(topology, own_addr(n))) {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "LB node {n} never answered on {}",
                    own_addr(n)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            topology.set_lb_down(n, false)?;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while topology.vip_holder().is_none() {
            anyhow::ensure!(Instant::now() < deadline, "no LB node took the VIP");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(LbTier { lbs, killed: None })
    }

    /// Where clients send: the VIP.
    pub fn target() -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(VIP, LB_PORT))
    }

    /// Every node's admin endpoint (the soak sums their counters).
    pub fn admins(&self) -> Vec<SocketAddr> {
        self.lbs
            .keys()
            .map(|n| SocketAddr::V4(SocketAddrV4::new(lb_node_ip(*n), LB_ADMIN_PORT)))
            .collect()
    }

    /// SIGKILLs the LB of the node holding the VIP and marks the node down
    /// (what its supervisor does when its wait returns). Returns the node.
    pub fn kill_active(&mut self, topology: &mut Topology) -> anyhow::Result<usize> {
        let n = topology
            .vip_holder()
            .ok_or_else(|| anyhow::anyhow!("no LB node holds the VIP"))?;
        let index = self.lbs[&n];
        let (wall, at) = (now_s(), Instant::now());
        topology.process(index).signal(Signal::Kill)?;
        topology
            .process_mut(index)
            .wait_timeout(Duration::from_millis(500));
        topology.set_lb_down(n, true)?;
        self.killed = Some((n, wall, at));
        Ok(n)
    }

    /// Starts the killed node's LB again; a thread marks the node up once
    /// the new LB answers on the node's address (within 10 s).
    pub fn restart_killed(&mut self, topology: &mut Topology) -> anyhow::Result<()> {
        let Some((n, _, _)) = self.killed else {
            anyhow::bail!("no LB was killed");
        };
        self.lbs.insert(n, topology.start_lb_node(n, LB_NODE_ARGS)?);
        let mut calc = calc_to(topology, own_addr(n));
        let down = topology.lb_down_file(n);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if answers(&mut calc) {
                    let _ = std::fs::write(&down, "0\n");
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Ok(())
    }

    /// The failover of the last kill: the first time another node recorded
    /// becoming master after it.
    pub fn failover(&self, topology: &Topology) -> Option<Failover> {
        let (killed, wall, at) = self.killed?;
        self.lbs
            .keys()
            .filter(|n| **n != killed)
            .filter_map(|n| {
                let t = read_master_log(&topology.lb_master_log(*n))
                    .into_iter()
                    .find(|t| *t > wall)?;
                Some((*n, t - wall))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(took_over, after)| Failover {
                killed,
                took_over,
                after: Duration::from_secs_f64(after),
                at,
            })
    }
}
