//! The LB tier: two or more load balancers, each in a namespace of its own
//! on the backend bridge (a netns, or a container on the Docker network),
//! sharing one virtual address through VRRP, run by keepalived (Debian's
//! 2.2.7). This module is the address plan of the tier and the one
//! keepalived configuration every deployment of it uses (`ipcs-lb-node`,
//! which runs each node in `bootstrap.sh` netns and Docker modes, and
//! `Topology::start_keepalived` in tests and the chaos soak).
//!
//! ```text
//!   host / core  172.16.238.1  ──UDP──▶ VIP 172.16.238.200:8080
//!   bridge ipcs0 ═══╤═══════════════╤═══════════════╤══════════ servers, registry
//!             [lb1 ns] eth0     [lb2 ns] eth0      ...
//!             172.16.238.201    172.16.238.202
//!             ipcs-lb + keepalived (one MASTER holds the VIP, the others BACKUP)
//! ```
//!
//! The VIP lives on the backend bridge itself: the host is already on that
//! segment (it is the bridge's gateway), so no second network is needed,
//! and each LB's raw socket and its client socket share one `eth0`.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The virtual address `calc.batata` names when an LB tier runs. Outside the
/// Docker dynamic range (.2-.62), the netns servers (.11-.99) and the
/// registry (.100).
pub const VIP: Ipv4Addr = Ipv4Addr::new(172, 16, 238, 200);
/// The host's address on the backend bridge (its gateway): the tier's one
/// client, whose replies must leave from the VIP.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(172, 16, 238, 1);
/// The keepalived binary (Debian's package `keepalived`; the same path in
/// the `lb-node` image).
pub const KEEPALIVED: &str = "/usr/sbin/keepalived";
/// LB node `n` (from 1) gets `172.16.238.(200 + n)`.
pub const LB_NODE_BASE_OCTET: u8 = 200;
/// Nodes stop at .254.
pub const MAX_LB_NODES: usize = 54;
/// The port every LB listens on (as the single LB always has).
pub const LB_PORT: u16 = 8080;
/// Each node's admin endpoint, on its own address.
pub const LB_ADMIN_PORT: u16 = 7071;
/// VRRP virtual router id of the tier (any 1..255 unused on the segment).
pub const VRID: u8 = 38;
/// VRRPv3 advertisement interval: keepalived takes centiseconds with
/// `version 3`; a backup declares the master dead after about 3 of them.
pub const ADVERT_INT: Duration = Duration::from_millis(100);
/// Every node runs at the same priority with `nopreempt`: whoever holds the
/// address keeps it, and a node that comes back stays a backup.
pub const PRIORITY: u8 = 100;

/// The address of LB node `n` (from 1).
///
/// # Panics
/// When `n` is 0 or above [`MAX_LB_NODES`].
pub fn lb_node_ip(n: usize) -> Ipv4Addr {
    assert!(
        (1..=MAX_LB_NODES).contains(&n),
        "LB node {n} outside 1..={MAX_LB_NODES}"
    );
    Ipv4Addr::new(172, 16, 238, LB_NODE_BASE_OCTET + n as u8)
}

/// The addresses of the nodes of an `nodes`-node tier other than `n`.
pub fn peers_of(n: usize, nodes: usize) -> Vec<Ipv4Addr> {
    (1..=nodes).filter(|&m| m != n).map(lb_node_ip).collect()
}

/// The short name of LB node `n`'s host (`<prefix>-lb<n>`).
pub fn lb_node_short(n: usize) -> String {
    format!("lb{n}")
}

/// The arguments an LB node's `ipcs-lb` runs with: its client socket on
/// every address of its namespace (so it is ready before it holds the VIP
/// and answers its own health check on its node address), its admin
/// endpoint on its node address (reachable from the host), frames on its
/// `eth0`.
pub fn lb_node_args(n: usize, registry: &str) -> Vec<String> {
    vec![
        "--listen".into(),
        format!("0.0.0.0:{LB_PORT}"),
        "--admin".into(),
        format!("{}:{LB_ADMIN_PORT}", lb_node_ip(n)),
        "--iface".into(),
        "eth0".into(),
        "--registry".into(),
        registry.into(),
    ]
}

/// The notify hook that records each takeover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterLog {
    /// `ipcs-lb-node`, whose `record-master FILE` appends the time.
    pub recorder: PathBuf,
    /// The file it appends to.
    pub file: PathBuf,
}

/// What one node's keepalived is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepalivedConfig {
    /// The node (from 1).
    pub node: usize,
    /// `calc`, run as the health check.
    pub calc: PathBuf,
    /// The file the node's supervisor keeps at `0` while its LB runs and
    /// answers, and sets non-zero the moment the LB dies (keepalived
    /// watches it with inotify, so the death demotes the node at once).
    pub down_file: PathBuf,
    /// Where the time (seconds since the epoch) is appended each time this
    /// node becomes master (the failover time is read from it), by
    /// `<recorder> record-master <file>`: the `ipcs-lb-node` binary, since
    /// the node's image has no shell. `None`: no record.
    pub master_log: Option<MasterLog>,
    /// Clients whose replies must leave from the VIP (see [`render`](Self::render)).
    pub clients: Vec<Ipv4Addr>,
    /// The other nodes' addresses: adverts go to each by unicast. Empty:
    /// multicast to 224.0.0.18 (see [`render`](Self::render)).
    pub peers: Vec<Ipv4Addr>,
}

impl KeepalivedConfig {
    /// The configuration for node `node` with the host ([`HOST_IP`]) as
    /// the one client.
    pub fn new(node: usize, calc: &Path, down_file: &Path) -> KeepalivedConfig {
        KeepalivedConfig {
            node,
            calc: calc.to_owned(),
            down_file: down_file.to_owned(),
            master_log: None,
            clients: vec![HOST_IP],
            peers: Vec::new(),
        }
    }

    /// keepalived.conf for this node. Why each setting:
    ///
    /// * `version 3`, `advert_int 0.1`: VRRPv3 allows centisecond adverts;
    ///   a backup takes over ~3 adverts after the last one, and at once
    ///   (after its skew, ~60 ms at priority 100) when the master says
    ///   "priority 0" on leaving. VRRPv3 has no authentication (RFC 5798
    ///   removed it; keepalived refuses `authentication` with version 3),
    ///   so anyone on the segment can take the address: the segment must
    ///   be trusted, as the backend bridge is (internal, no route out).
    /// * `state BACKUP` everywhere, equal priorities, `nopreempt`: no node
    ///   grabs the address back, so a restarted LB rejoins as standby.
    /// * `track_file` (weight 0: non-zero means FAULT): the node's
    ///   supervisor writes 1 the moment its LB exits. keepalived's
    ///   `track_process` would see that itself, but it needs the kernel's
    ///   process connector, which only works in the initial network
    ///   namespace ("Failed to set/clear process event listen - errno
    ///   111" here), so the supervisor, which waits on the LB, says it.
    /// * `vrrp_script`: a real HSMAP request through this node's LB, on its
    ///   own address, every second (keepalived's shortest interval); two
    ///   failures in a row demote the node. This catches an LB that runs
    ///   but does not answer (frozen, wedged), which no process check does.
    /// * `virtual_routes`: the LB's socket is bound to 0.0.0.0 and answers
    ///   with `sendmmsg`, no `IP_PKTINFO`, so the kernel picks the reply's
    ///   source from the route: the node's own address, which `calc` (it
    ///   accepts answers only from the address it asked) rejects. While
    ///   master, a host route to each client with `src VIP` makes replies
    ///   leave from the VIP; keepalived removes it with the address.
    /// * gratuitous ARP at once and 3 times on takeover, so the host's
    ///   neighbour entry for the VIP moves to the new master's MAC.
    /// * `vrrp_priority -20`: the VRRP process runs at nice -20, so adverts
    ///   and the takeover keep their 100 ms timing while the LBs, servers
    ///   and load generator keep a small machine's CPUs busy. Not
    ///   `vrrp_rt_priority` (SCHED_RR): under a 20k rps soak the kernel
    ///   killed the real-time VRRP child for exceeding its RLIMIT_RTTIME
    ///   ("exited due to signal 9 - has rlimit_rttime been exceeded?")
    ///   on both nodes at once, and the address flapped.
    /// * `unicast_peer` (when [`peers`](Self::peers) is set): adverts to each
    ///   other node rather than to the VRRP multicast group. A Docker
    ///   network made `internal` drops bridged packets whose destination is
    ///   outside its subnet (Docker's isolation rules in iptables, which
    ///   bridged traffic meets), multicast included: with multicast the
    ///   nodes never heard each other and both held the address. The cost:
    ///   every node's configuration names the others.
    pub fn render(&self) -> String {
        let n = self.node;
        let me = lb_node_ip(n);
        let mut c = String::new();
        let _ = writeln!(
            c,
            "# IPCS LB node {n} ({me}); rendered by ipcs-lb-node (lbnode/src/vrrp.rs).\n\
             global_defs {{\n    router_id ipcs-lb{n}\n    script_user root\n    enable_script_security\n    \
             vrrp_garp_master_delay 0\n    vrrp_garp_master_repeat 3\n    vrrp_garp_master_refresh 0\n    \
             vrrp_priority -20\n}}\n"
        );
        let _ = writeln!(
            c,
            "track_file lb_down {{\n    file \"{}\"\n    weight 0\n    init_file 1\n}}\n",
            self.down_file.display()
        );
        let _ = writeln!(
            c,
            "vrrp_script lb_answers {{\n    script \"{} --timeout 300ms --attempts 2 {me}:{LB_PORT} 1+1\"\n    \
             interval 1\n    timeout 1\n    fall 2\n    rise 1\n}}\n",
            self.calc.display()
        );
        let _ = writeln!(
            c,
            "vrrp_instance ipcs {{\n    state BACKUP\n    interface eth0\n    virtual_router_id {VRID}\n    \
             version 3\n    priority {PRIORITY}\n    advert_int {:.2}\n    nopreempt\n    \
             virtual_ipaddress {{\n        {VIP}/32 dev eth0\n    }}",
            ADVERT_INT.as_secs_f64()
        );
        if !self.peers.is_empty() {
            let _ = writeln!(c, "    unicast_src_ip {me}\n    unicast_peer {{");
            for peer in &self.peers {
                let _ = writeln!(c, "        {peer}");
            }
            c.push_str("    }\n");
        }
        if !self.clients.is_empty() {
            c.push_str("    virtual_routes {\n");
            for client in &self.clients {
                let _ = writeln!(c, "        {client}/32 dev eth0 src {VIP}");
            }
            c.push_str("    }\n");
        }
        c.push_str("    track_file {\n        lb_down\n    }\n    track_script {\n        lb_answers\n    }\n");
        if let Some(log) = &self.master_log {
            let _ = writeln!(
                c,
                "    notify_master \"{} record-master {}\"",
                log.recorder.display(),
                log.file.display()
            );
        }
        c.push_str("}\n");
        c
    }
}

/// The `keepalived` arguments for one node: foreground (`-n`), log to
/// stderr (`-l`), detailed (`-D`), VRRP only (`-P`), and pid files of its
/// own in `dir` so several run on one host.
pub fn keepalived_args(config: &Path, dir: &Path, node: usize) -> Vec<String> {
    let pid = |what: &str| dir.join(format!("keepalived-lb{node}{what}.pid"));
    vec![
        "-n".into(),
        "-l".into(),
        "-D".into(),
        "-P".into(),
        "-f".into(),
        config.display().to_string(),
        "-p".into(),
        pid("").display().to_string(),
        "-r".into(),
        pid("-vrrp").display().to_string(),
        "-c".into(),
        pid("-checkers").display().to_string(),
    ]
}

/// The times (seconds since the epoch) a node's `master_log` records.
pub fn read_master_log(path: &Path) -> Vec<f64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_stay_clear_of_the_rest_of_the_plan() {
        assert_eq!(lb_node_ip(1), Ipv4Addr::new(172, 16, 238, 201));
        assert_eq!(lb_node_ip(MAX_LB_NODES), Ipv4Addr::new(172, 16, 238, 254));
        // Above the registry (.100) and the Docker range (.2-.62).
        assert!(VIP.octets()[3] > 100);
        assert_eq!(HOST_IP.octets()[..3], VIP.octets()[..3]);
        assert!(std::panic::catch_unwind(|| lb_node_ip(0)).is_err());
        assert!(std::panic::catch_unwind(|| lb_node_ip(MAX_LB_NODES + 1)).is_err());
    }

    #[test]
    fn config_has_the_settings_failover_depends_on() {
        let mut cfg = KeepalivedConfig::new(2, Path::new("/b/calc"), Path::new("/r/lb2.down"));
        cfg.master_log = Some(MasterLog {
            recorder: PathBuf::from("/b/ipcs-lb-node"),
            file: PathBuf::from("/r/lb2.master"),
        });
        let text = cfg.render();
        for want in [
            "router_id ipcs-lb2",
            "file \"/r/lb2.down\"",
            "weight 0",
            "script \"/b/calc --timeout 300ms --attempts 2 172.16.238.202:8080 1+1\"",
            "version 3",
            "advert_int 0.10",
            "nopreempt",
            "state BACKUP",
            "172.16.238.200/32 dev eth0",
            "172.16.238.1/32 dev eth0 src 172.16.238.200",
            "vrrp_garp_master_delay 0",
            "vrrp_priority -20",
            "notify_master \"/b/ipcs-lb-node record-master /r/lb2.master\"",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("authentication"), "VRRPv3 has none");
        assert!(!text.contains("unicast"), "multicast without peers");
        cfg.peers = vec![lb_node_ip(1), lb_node_ip(3)];
        let text = cfg.render();
        assert!(
            text.contains("unicast_src_ip 172.16.238.202\n    unicast_peer {\n        172.16.238.201\n        172.16.238.203\n    }"),
            "{text}"
        );
        // Balanced braces: keepalived reads a truncated block silently.
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }

    #[test]
    fn node_args_put_admin_on_the_node_address() {
        let a = lb_node_args(1, "172.16.238.100:7070");
        let s = a.join(" ");
        assert!(s.contains("--listen 0.0.0.0:8080"), "{s}");
        assert!(s.contains("--admin 172.16.238.201:7071"), "{s}");
        assert!(s.contains("--iface eth0"), "{s}");
    }

    #[test]
    fn master_log_reads_times_and_skips_junk() {
        let dir = std::env::temp_dir().join(format!("ipcs-vrrp-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("m");
        std::fs::write(&f, "1796190682.291217655\nnot a time\n1796190690.5\n").unwrap();
        let times = read_master_log(&f);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(times.len(), 2);
        assert!((times[1] - 1796190690.5).abs() < 1e-6);
        assert!(read_master_log(Path::new("/nonexistent/x")).is_empty());
    }
}
