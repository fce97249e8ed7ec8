//! Building, changing and removing the namespace topology.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use ipcs_common::registry_auth::{Key, KeyError};

use crate::binaries::binary;
use crate::process::ChildProcess;
use crate::two_host::{FarHost, MIN_LINK_MTU, TUNNEL_MTU, VXLAN_OVERHEAD};

/// The bridge every topology builds, as the Docker deployment names it.
pub const BRIDGE: &str = "ipcs0";
/// The host's (load balancer's) address on the bridge.
pub const LB_IP: Ipv4Addr = Ipv4Addr::new(172, 16, 238, 1);
/// The registry's fixed address.
pub const REGISTRY_IP: Ipv4Addr = Ipv4Addr::new(172, 16, 238, 100);
/// The registry's port.
pub const REGISTRY_PORT: u16 = 7070;
/// Prefix length of the backend subnet.
pub const PREFIX_LEN: u8 = 24;
/// Server `n` (from 1) gets `172.16.238.(10 + n)`, and so id `10 + n`.
pub const FIRST_SERVER_OCTET: u8 = 11;
/// Servers stop below the registry's address.
pub const MAX_SERVERS: usize = (100 - FIRST_SERVER_OCTET) as usize;

/// Why a topology could not be built or changed.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("could not run `ip`: {0} (install iproute2)")]
    Spawn(#[from] std::io::Error),
    #[error("at most {MAX_SERVERS} servers fit below the registry's address")]
    TooManyServers,
    #[error("no server slot {0}")]
    NoSuchServer(usize),
    #[error("network namespaces need root")]
    NotRoot,
    #[error("deployment key: {0}")]
    Key(#[from] KeyError),
    #[error("a second host needs the core in a namespace of its own (Core::Namespace)")]
    FarHostNeedsOwnCore,
    #[error("a backend MTU must be {MIN_LINK_MTU}..={max}, got {0}", max = 65535 - VXLAN_OVERHEAD)]
    LinkMtu(usize),
    #[error("this topology has no second host")]
    NoFarHost,
}

/// Where the bridge (and the load balancer) lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Core {
    /// A namespace of the topology's own: isolated, for tests.
    Namespace,
    /// The caller's namespace: the host, for `bootstrap.sh --netns`.
    Root,
}

/// One host of the topology: a namespace with `eth0` on the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The namespace's name (`ip netns`).
    pub netns: String,
    /// The address of its `eth0`.
    pub ip: Ipv4Addr,
    /// The bridge-side end of its veth pair, for cutting it off.
    pub bridge_port: String,
    /// The namespace of the bridge it hangs on (`None`: the caller's).
    pub bridge_netns: Option<String>,
}

/// Options for [`Topology`]. `servers` namespaces are made at build time;
/// nothing is started until the caller asks.
#[derive(Debug, Clone)]
pub struct TopologyBuilder {
    servers: usize,
    core: Core,
    prefix: Option<String>,
    log_dir: Option<PathBuf>,
    detached: bool,
    key_file: Option<PathBuf>,
    far_servers: Option<usize>,
    link_mtu: Option<usize>,
}

impl TopologyBuilder {
    /// The deployment key's file, which the registry, servers and load
    /// balancer are given (default: a fresh key of the topology's own, in
    /// a 0600 file removed with it).
    pub fn key_file(mut self, path: &Path) -> Self {
        self.key_file = Some(path.to_owned());
        self
    }

    /// Adds a second host (see [`two_host`](crate::two_host)) with `n`
    /// servers of its own, joined to the core's bridge by a VXLAN tunnel.
    /// Its servers take the slots after the core's.
    pub fn far_servers(mut self, n: usize) -> Self {
        self.far_servers = Some(n);
        self
    }

    /// The MTU of every backend link (bridges, veths and, with a second
    /// host, the tunnel; its wire gets 50 more). Default: the kernel's
    /// 1500 on one host, the tunnel's 1450 on two.
    pub fn link_mtu(mut self, mtu: usize) -> Self {
        self.link_mtu = Some(mtu);
        self
    }

    /// Where process logs go (default: a fresh directory under the temp
    /// directory, removed with the topology).
    pub fn log_dir(mut self, dir: &Path) -> Self {
        self.log_dir = Some(dir.to_owned());
        self
    }

    /// Starts processes in process groups of their own, so they outlive the
    /// caller's terminal session (for [`Topology::persist`]).
    pub fn detached(mut self, detached: bool) -> Self {
        self.detached = detached;
        self
    }

    pub fn servers(mut self, n: usize) -> Self {
        self.servers = n;
        self
    }

    pub fn core(mut self, core: Core) -> Self {
        self.core = core;
        self
    }

    /// Names every namespace `<prefix>-...` (default: unique per test).
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = Some(prefix.to_owned());
        self
    }

    pub fn build(self) -> Result<Topology, TopologyError> {
        if !ipcs_common::sys::is_root() {
            return Err(TopologyError::NotRoot);
        }
        let far_servers = self.far_servers.unwrap_or(0);
        if self.servers + far_servers > MAX_SERVERS {
            return Err(TopologyError::TooManyServers);
        }
        if self.far_servers.is_some() && self.core != Core::Namespace {
            return Err(TopologyError::FarHostNeedsOwnCore);
        }
        let link_mtu = self.link_mtu.or(self.far_servers.map(|_| TUNNEL_MTU));
        if let Some(mtu) = link_mtu.filter(|m| !(MIN_LINK_MTU..=65535 - VXLAN_OVERHEAD).contains(m))
        {
            return Err(TopologyError::LinkMtu(mtu));
        }
        let prefix = self.prefix.unwrap_or_else(unique_prefix);
        let keep_logs = self.log_dir.is_some();
        let log_dir = self
            .log_dir
            .unwrap_or_else(|| std::env::temp_dir().join(format!("{prefix}-logs")));
        std::fs::create_dir_all(&log_dir)?;
        // Every topology has its own key unless told which to use.
        let (key_file, made_key) = match self.key_file {
            Some(path) => (path, false),
            None => {
                let path = std::env::temp_dir().join(format!("{prefix}.key"));
                let _ = std::fs::remove_file(&path);
                Key::generate().write_new(&path)?;
                (path, true)
            }
        };
        let key = match Key::load(&key_file) {
            Ok(key) => key,
            Err(e) => {
                if made_key {
                    let _ = std::fs::remove_file(&key_file);
                }
                return Err(e.into());
            }
        };
        let mut topology = Topology {
            key,
            key_file,
            made_key,
            core_netns: match self.core {
                Core::Namespace => Some(format!("{prefix}-core")),
                Core::Root => None,
            },
            prefix,
            log_dir,
            registry: None,
            servers: Vec::new(),
            lb_nodes: Vec::new(),
            processes: Vec::new(),
            made_bridge: false,
            keep_logs,
            detached: self.detached,
            far: None,
            link_mtu,
        };
        // On error, `topology` is dropped here and removes what was made.
        topology.make_core()?;
        topology.registry = Some(topology.make_host("reg", REGISTRY_IP)?);
        if let (Some(core), Some(mtu)) =
            (self.far_servers.and(topology.core_netns.clone()), link_mtu)
        {
            topology.far = Some(FarHost::make(&topology.prefix, &core, mtu)?);
        }
        for _ in 0..self.servers {
            topology.add_server()?;
        }
        for _ in 0..far_servers {
            topology.add_far_server()?;
        }
        Ok(topology)
    }
}

/// A locally administered unicast MAC, different for each topology.
fn bridge_mac() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let bits = (std::process::id() << 12) ^ nanos;
    let b = bits.to_be_bytes();
    format!("02:1c:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Short: veth names are at most 15 bytes.
    format!(
        "it{}{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A bridge with a registry host and server hosts, and the processes started
/// in them. Dropping it stops the processes and removes every namespace,
/// link and bridge it made.
#[derive(Debug)]
pub struct Topology {
    prefix: String,
    core_netns: Option<String>,
    log_dir: PathBuf,
    registry: Option<Host>,
    /// Server slots; `None` where a server was removed.
    servers: Vec<Option<Host>>,
    /// LB nodes of the LB tier (`add_lb_node`), node `n` at index `n - 1`.
    lb_nodes: Vec<Host>,
    processes: Vec<ChildProcess>,
    made_bridge: bool,
    keep_logs: bool,
    detached: bool,
    key: Key,
    /// The key's file, handed to every process with `--key-file`.
    key_file: PathBuf,
    /// The file is the topology's own (removed with it).
    made_key: bool,
    /// The second host, if the topology has one.
    far: Option<FarHost>,
    /// The MTU given to every backend link (`None`: the kernel's default).
    link_mtu: Option<usize>,
}

impl Topology {
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder {
            servers: 0,
            core: Core::Namespace,
            prefix: None,
            log_dir: None,
            detached: false,
            key_file: None,
            far_servers: None,
            link_mtu: None,
        }
    }

    /// The second host, if there is one.
    pub fn far_host(&self) -> Option<&FarHost> {
        self.far.as_ref()
    }

    /// Whether server slot `i` is on the second host.
    pub fn is_far(&self, i: usize) -> bool {
        let far = self.far.as_ref().map(|f| f.netns.as_str());
        self.server(i)
            .is_some_and(|h| far.is_some() && h.bridge_netns.as_deref() == far)
    }

    /// Adds a server namespace on the second host, in the next free slot;
    /// returns the slot.
    pub fn add_far_server(&mut self) -> Result<usize, TopologyError> {
        let far = self.far.clone().ok_or(TopologyError::NoFarHost)?;
        self.push_server(Some(&far.netns))
    }

    /// Cuts (`up == false`) or reconnects the wire between the two hosts:
    /// meanwhile nothing crosses the tunnel, and the far servers, still
    /// running, reach neither the registry nor the load balancer.
    pub fn set_tunnel(&self, up: bool) -> Result<(), TopologyError> {
        let far = self.far.as_ref().ok_or(TopologyError::NoFarHost)?;
        let core = self
            .core_netns
            .as_deref()
            .ok_or(TopologyError::FarHostNeedsOwnCore)?;
        far.set_wire(core, up)
    }

    /// The deployment key the topology's processes are given.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The file holding it.
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The core's namespace; `None` when the core is the caller's namespace.
    pub fn core_netns(&self) -> Option<&str> {
        self.core_netns.as_deref()
    }

    pub fn bridge(&self) -> &str {
        BRIDGE
    }

    pub fn lb_ip(&self) -> Ipv4Addr {
        LB_IP
    }

    pub fn registry(&self) -> &Host {
        self.registry
            .as_ref()
            .expect("registry host is made at build time")
    }

    pub fn registry_addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(REGISTRY_IP, REGISTRY_PORT))
    }

    /// Server slot `i` (from 0), if it exists.
    pub fn server(&self, i: usize) -> Option<&Host> {
        self.servers.get(i).and_then(Option::as_ref)
    }

    /// The slots of the servers that exist.
    pub fn server_slots(&self) -> Vec<usize> {
        (0..self.servers.len())
            .filter(|i| self.servers[*i].is_some())
            .collect()
    }

    /// The id a server in slot `i` takes by default (last octet of its IP).
    pub fn server_id(i: usize) -> u8 {
        FIRST_SERVER_OCTET + i as u8
    }

    /// Directory holding every process's log.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Adds a server namespace in the next free slot; returns the slot.
    pub fn add_server(&mut self) -> Result<usize, TopologyError> {
        let core = self.core_netns.clone();
        self.push_server(core.as_deref())
    }

    /// Adds a server in the next slot on the bridge in `bridge_netns`.
    fn push_server(&mut self, bridge_netns: Option<&str>) -> Result<usize, TopologyError> {
        let slot = self.servers.len();
        if slot >= MAX_SERVERS {
            return Err(TopologyError::TooManyServers);
        }
        let ip = Ipv4Addr::new(172, 16, 238, Self::server_id(slot));
        let short = format!("s{}", Self::server_id(slot));
        let host = make_host(&self.prefix, bridge_netns, &short, ip, self.link_mtu)?;
        self.servers.push(Some(host));
        Ok(slot)
    }

    /// Removes server slot `i`: its processes are stopped, its namespace
    /// deleted (taking its veth pair with it).
    pub fn remove_server(&mut self, i: usize) -> Result<(), TopologyError> {
        let host = self
            .servers
            .get_mut(i)
            .and_then(Option::take)
            .ok_or(TopologyError::NoSuchServer(i))?;
        self.stop_processes_in(&host.netns);
        remove_host(host.bridge_netns.as_deref(), &host.netns, &host.bridge_port)
    }

    /// Starts `program` in `netns` (`None`: the core). Its output goes to
    /// `<log_dir>/<label>.log`; it is stopped when the topology is dropped.
    /// Returns an index for [`process`](Self::process).
    pub fn spawn(
        &mut self,
        label: &str,
        netns: Option<&str>,
        program: &Path,
        args: &[String],
    ) -> Result<usize, TopologyError> {
        let netns = netns.map(str::to_owned).or_else(|| self.core_netns.clone());
        let log = self.log_dir.join(format!("{label}.log"));
        let child =
            ChildProcess::spawn(label, netns.as_deref(), program, args, log, self.detached)?;
        self.processes.push(child);
        Ok(self.processes.len() - 1)
    }

    /// Starts `ipcs-registry` on its host with extra `args`.
    pub fn start_registry(&mut self, args: &[&str]) -> Result<usize, TopologyError> {
        let netns = self.registry().netns.clone();
        let mut all = vec![
            "--listen".to_owned(),
            format!("0.0.0.0:{REGISTRY_PORT}"),
            "--key-file".to_owned(),
            self.key_file.display().to_string(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        self.spawn("registry", Some(&netns), &binary("ipcs-registry"), &all)
    }

    /// Starts `ipcs-server` in slot `i`, pointed at the registry, with extra
    /// `args`.
    pub fn start_server(&mut self, i: usize, args: &[&str]) -> Result<usize, TopologyError> {
        let netns = self
            .server(i)
            .ok_or(TopologyError::NoSuchServer(i))?
            .netns
            .clone();
        let all = server_args(&self.key_file, args);
        self.spawn(
            &format!("server{}", Self::server_id(i)),
            Some(&netns),
            &binary("ipcs-server"),
            &all,
        )
    }

    /// The file `ipcs-server --fault-delay-file` reads in slot `i`: unique to
    /// this topology (in its log directory) and removed with it. Pass it to
    /// [`start_server`](Self::start_server) to be able to slow that server
    /// later with [`set_server_delay`](Self::set_server_delay).
    pub fn fault_delay_file(&self, i: usize) -> PathBuf {
        self.log_dir
            .join(format!("server{}.fault-delay", Self::server_id(i)))
    }

    /// Makes the running server of slot `i` (started with
    /// `--fault-delay-file` [`fault_delay_file(i)`](Self::fault_delay_file))
    /// answer `delay` late from now on (zero: normal again): writes the file,
    /// then sends SIGUSR1 to the slot's latest server process. (Found by its
    /// label, not an index: removing a server shifts process indices.) The
    /// server logs `fault delay set to`.
    pub fn set_server_delay(
        &self,
        i: usize,
        delay: std::time::Duration,
    ) -> Result<(), TopologyError> {
        self.server(i).ok_or(TopologyError::NoSuchServer(i))?;
        let label = format!("server{}", Self::server_id(i));
        let process = self
            .processes
            .iter()
            .rev()
            .find(|p| p.label() == label)
            .ok_or(TopologyError::NoSuchServer(i))?;
        std::fs::write(
            self.fault_delay_file(i),
            format!("{}us\n", delay.as_micros()),
        )?;
        process.signal(crate::Signal::Usr1)?;
        Ok(())
    }

    /// Starts `ipcs-lb` in the core, on the bridge, pointed at the registry,
    /// with extra `args` (e.g. `--listen`).
    pub fn start_lb(&mut self, args: &[&str]) -> Result<usize, TopologyError> {
        let mut all = vec![
            "--iface".to_owned(),
            BRIDGE.to_owned(),
            "--registry".to_owned(),
            self.registry_addr().to_string(),
            "--key-file".to_owned(),
            self.key_file.display().to_string(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        self.spawn("lb", None, &binary("ipcs-lb"), &all)
    }

    /// Adds an LB node of the LB tier: a namespace `<prefix>-lb<n>` whose
    /// `eth0` is on the bridge at [`lb_node_ip(n)`](crate::vrrp::lb_node_ip).
    /// Returns `n` (from 1). Nothing runs in it until asked.
    pub fn add_lb_node(&mut self) -> Result<usize, TopologyError> {
        let n = self.lb_nodes.len() + 1;
        if n > crate::vrrp::MAX_LB_NODES {
            return Err(TopologyError::TooManyServers);
        }
        let host = self.make_host(&crate::vrrp::lb_node_short(n), crate::vrrp::lb_node_ip(n))?;
        self.lb_nodes.push(host);
        Ok(n)
    }

    /// LB node `n` (from 1), if made.
    pub fn lb_node(&self, n: usize) -> Option<&Host> {
        n.checked_sub(1).and_then(|i| self.lb_nodes.get(i))
    }

    /// Starts `ipcs-lb` on LB node `n` with the tier's arguments
    /// ([`lb_node_args`](crate::vrrp::lb_node_args)) and extra `args`.
    /// Labelled `lb<n>`.
    pub fn start_lb_node(&mut self, n: usize, args: &[&str]) -> Result<usize, TopologyError> {
        let netns = self
            .lb_node(n)
            .ok_or(TopologyError::NoSuchServer(n))?
            .netns
            .clone();
        let mut all = crate::vrrp::lb_node_args(n, &self.registry_addr().to_string());
        all.extend(["--key-file".to_owned(), self.key_file.display().to_string()]);
        all.extend(args.iter().map(|s| s.to_string()));
        self.spawn(&format!("lb{n}"), Some(&netns), &binary("ipcs-lb"), &all)
    }

    /// The file LB node `n`'s keepalived watches: `0` while its LB answers,
    /// `1` when it is down (see [`KeepalivedConfig`](crate::vrrp::KeepalivedConfig)).
    pub fn lb_down_file(&self, n: usize) -> PathBuf {
        self.log_dir.join(format!("lb{n}.down"))
    }

    /// Where LB node `n`'s keepalived records each time it became master.
    pub fn lb_master_log(&self, n: usize) -> PathBuf {
        self.log_dir.join(format!("lb{n}.master"))
    }

    /// Tells LB node `n`'s keepalived its LB is down (`true`) or answering.
    /// Here the caller is the supervisor; in `bootstrap.sh --netns` it is
    /// the respawn loop around each LB.
    pub fn set_lb_down(&self, n: usize, down: bool) -> Result<(), TopologyError> {
        std::fs::write(self.lb_down_file(n), if down { "1\n" } else { "0\n" })?;
        Ok(())
    }

    /// Starts keepalived on LB node `n` with the tier's configuration
    /// (written to the log directory, with pid files beside it); the node
    /// starts as down ([`set_lb_down`](Self::set_lb_down) `false` lets it
    /// take part). Labelled `keepalived<n>`; stopping it (SIGTERM, as when
    /// the topology is dropped) removes the VIP it held.
    pub fn start_keepalived(&mut self, n: usize) -> Result<usize, TopologyError> {
        let netns = self
            .lb_node(n)
            .ok_or(TopologyError::NoSuchServer(n))?
            .netns
            .clone();
        let mut config =
            crate::vrrp::KeepalivedConfig::new(n, &binary("calc"), &self.lb_down_file(n));
        config.master_log = Some(crate::vrrp::MasterLog {
            recorder: binary("ipcs-lb-node"),
            file: self.lb_master_log(n),
        });
        self.set_lb_down(n, true)?;
        let path = self.log_dir.join(format!("keepalived-lb{n}.conf"));
        std::fs::write(&path, config.render())?;
        let args = crate::vrrp::keepalived_args(&path, &self.log_dir, n);
        self.spawn(
            &format!("keepalived{n}"),
            Some(&netns),
            Path::new(crate::vrrp::KEEPALIVED),
            &args,
        )
    }

    /// The LB node that holds the VIP now, if one does (from `ip addr`).
    pub fn vip_holder(&self) -> Option<usize> {
        (1..=self.lb_nodes.len()).find(|n| {
            let ns = &self.lb_nodes[n - 1].netns;
            Command::new("ip")
                .args(["-n", ns, "-4", "-o", "addr", "show", "dev", "eth0"])
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .contains(&format!(" {}/32 ", crate::vrrp::VIP))
                })
                .unwrap_or(false)
        })
    }

    pub fn process(&self, index: usize) -> &ChildProcess {
        &self.processes[index]
    }

    pub fn process_mut(&mut self, index: usize) -> &mut ChildProcess {
        &mut self.processes[index]
    }

    /// A command that runs `program` in the core namespace (where the load
    /// balancer listens), e.g. `calc` or `loadgen`.
    pub fn command_in_core(&self, program: &Path) -> Command {
        self.command_in(self.core_netns.as_deref(), program)
    }

    /// A command that runs `program` in `netns` (`None`: the caller's).
    pub fn command_in(&self, netns: Option<&str>, program: &Path) -> Command {
        match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Moves the calling thread into the core namespace (no-op for a root
    /// core), so it can reach the load balancer with its own sockets.
    pub fn enter_core(&self) -> std::io::Result<()> {
        match &self.core_netns {
            Some(ns) => ipcs_common::sys::netns::enter_for_thread(ns),
            None => Ok(()),
        }
    }

    /// Takes a host's link to the bridge down (`up == false`) or back up: all
    /// frames to and from it are lost meanwhile, its processes keep running.
    pub fn set_link(&self, host: &Host, up: bool) -> Result<(), TopologyError> {
        let state = if up { "up" } else { "down" };
        ip_in(
            host.bridge_netns.as_deref(),
            &["link", "set", &host.bridge_port, state],
        )
    }

    /// The whole log of every process, for a failing test's message.
    pub fn logs(&self) -> String {
        self.processes
            .iter()
            .map(|p| format!("----- {} (pid {}) -----\n{}", p.label(), p.pid(), p.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Hands the topology over to the system: processes keep running and
    /// namespaces stay after this value is gone (for `ipcs-netns up`).
    /// Returns the processes' pids by label.
    pub fn persist(mut self) -> Vec<(String, u32)> {
        let pids = self
            .processes
            .iter()
            .map(|p| (p.label().to_owned(), p.pid()))
            .collect();
        for p in self.processes.drain(..) {
            std::mem::forget(p);
        }
        self.registry = None;
        self.servers.clear();
        self.lb_nodes.clear();
        self.core_netns = None;
        self.made_bridge = false;
        self.keep_logs = true;
        // The processes keep using the key file.
        self.made_key = false;
        pids
    }

    fn stop_processes_in(&mut self, netns: &str) {
        // Processes are started through `ip netns exec <ns>`; their log name
        // does not say where they run, so look at the namespace of the pid.
        let inode = std::fs::metadata(format!("/run/netns/{netns}"))
            .ok()
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                m.ino()
            });
        let Some(inode) = inode else { return };
        self.processes.retain(|p| {
            let link = std::fs::read_link(format!("/proc/{}/ns/net", p.pid())).ok();
            let here = link
                .map(|l| l.to_string_lossy().contains(&format!("[{inode}]")))
                .unwrap_or(false);
            !here
        });
    }

    fn make_core(&mut self) -> Result<(), TopologyError> {
        if let Some(core) = &self.core_netns {
            run("ip", &["netns", "add", core])?;
            self.ip_in_core(&["link", "set", "lo", "up"])?;
        }
        // A fixed MAC: a bridge otherwise takes the lowest MAC of its ports
        // and changes it when ports come and go, and the load balancer,
        // which sends from the bridge's MAC, would stop getting replies.
        let mac = bridge_mac();
        let mut add = vec!["link", "add", BRIDGE, "address", &mac];
        let mtu = self.link_mtu.map(|m| m.to_string());
        if let Some(mtu) = &mtu {
            add.extend(["mtu", mtu]);
        }
        add.extend(["type", "bridge"]);
        self.ip_in_core(&add)?;
        self.made_bridge = true;
        self.ip_in_core(&[
            "addr",
            "add",
            &format!("{LB_IP}/{PREFIX_LEN}"),
            "dev",
            BRIDGE,
        ])?;
        self.ip_in_core(&["link", "set", BRIDGE, "up"])
    }

    fn make_host(&mut self, short: &str, ip: Ipv4Addr) -> Result<Host, TopologyError> {
        make_host(
            &self.prefix,
            self.core_netns.as_deref(),
            short,
            ip,
            self.link_mtu,
        )
    }

    fn ip_in_core(&self, args: &[&str]) -> Result<(), TopologyError> {
        ip_in(self.core_netns.as_deref(), args)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("topology {} logs:\n{}", self.prefix, self.logs());
        }
        for mut p in self.processes.drain(..) {
            p.stop(std::time::Duration::from_secs(2));
        }
        let hosts: Vec<Host> = self
            .registry
            .take()
            .into_iter()
            .chain(self.servers.drain(..).flatten())
            .chain(self.lb_nodes.drain(..))
            .collect();
        for host in hosts {
            let _ = remove_host(host.bridge_netns.as_deref(), &host.netns, &host.bridge_port);
        }
        if let (Some(far), Some(core)) = (self.far.take(), self.core_netns.as_deref()) {
            far.remove(core);
        }
        if self.made_bridge && self.core_netns.is_none() {
            let _ = run("ip", &["link", "del", BRIDGE]);
        }
        if let Some(core) = self.core_netns.take() {
            let _ = run("ip", &["netns", "del", &core]);
        }
        if !self.keep_logs {
            let _ = std::fs::remove_dir_all(&self.log_dir);
        }
        if self.made_key {
            let _ = std::fs::remove_file(&self.key_file);
        }
    }
}

/// Makes host `<prefix>-<short>`: a namespace whose `eth0` (address `ip`)
/// is one end of a veth pair, the other end a port of the bridge in
/// namespace `core` (`None`: the caller's), both ends with MTU `mtu` if
/// given.
pub(crate) fn make_host(
    prefix: &str,
    core: Option<&str>,
    short: &str,
    ip: Ipv4Addr,
    mtu: Option<usize>,
) -> Result<Host, TopologyError> {
    let netns = format!("{prefix}-{short}");
    run("ip", &["netns", "add", &netns])?;
    let bridge_port = bridge_port_name(prefix, core, short);
    let mtu = mtu.map(|m| m.to_string());
    let mut add = vec!["link", "add", "name", &bridge_port];
    if let Some(core) = core {
        add.extend(["netns", core]);
    }
    if let Some(mtu) = &mtu {
        add.extend(["mtu", mtu]);
    }
    add.extend(["type", "veth", "peer", "name", "eth0", "netns", &netns]);
    if let Some(mtu) = &mtu {
        add.extend(["mtu", mtu]);
    }
    run("ip", &add)?;
    ip_in(core, &["link", "set", &bridge_port, "master", BRIDGE])?;
    ip_in(core, &["link", "set", &bridge_port, "up"])?;
    let cidr = format!("{ip}/{PREFIX_LEN}");
    run("ip", &["-n", &netns, "addr", "add", &cidr, "dev", "eth0"])?;
    run("ip", &["-n", &netns, "link", "set", "eth0", "up"])?;
    run("ip", &["-n", &netns, "link", "set", "lo", "up"])?;
    Ok(Host {
        netns,
        ip,
        bridge_port,
        bridge_netns: core.map(str::to_owned),
    })
}

/// Removes a host: its namespace and, explicitly, its bridge port (the
/// kernel deletes the pair with the namespace only once nothing holds the
/// namespace any more, which sockets closing slowly can delay).
pub(crate) fn remove_host(
    core: Option<&str>,
    netns: &str,
    bridge_port: &str,
) -> Result<(), TopologyError> {
    let _ = ip_in(core, &["link", "del", bridge_port]);
    run("ip", &["netns", "del", netns])
}

/// Bridge-port names: unique within a core namespace; in the root namespace
/// they carry the prefix so they cannot clash with anything else there (and
/// equal the host's namespace name).
pub(crate) fn bridge_port_name(prefix: &str, core: Option<&str>, short: &str) -> String {
    match core {
        Some(_) => format!("v{short}"),
        None => format!("{prefix}-{short}"),
    }
}

/// The arguments every server of a topology starts with.
pub(crate) fn server_args(key_file: &Path, extra: &[&str]) -> Vec<String> {
    let registry = SocketAddrV4::new(REGISTRY_IP, REGISTRY_PORT);
    let mut all = vec![
        "--iface".to_owned(),
        "eth0".to_owned(),
        "--registry".to_owned(),
        registry.to_string(),
        "--key-file".to_owned(),
        key_file.display().to_string(),
    ];
    all.extend(extra.iter().map(|s| s.to_string()));
    all
}

/// Runs `ip args` in namespace `core` (`None`: the caller's).
pub(crate) fn ip_in(core: Option<&str>, args: &[&str]) -> Result<(), TopologyError> {
    match core {
        Some(core) => {
            let mut all = vec!["-n", core];
            all.extend(args);
            run("ip", &all)
        }
        None => run("ip", args),
    }
}

/// Runs a command to completion, failing with its stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<(), TopologyError> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(TopologyError::Command {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}
