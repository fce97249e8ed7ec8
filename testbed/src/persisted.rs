//! A topology that outlives the command that made it (`ipcs-netns up`), and
//! the state file that lets `ipcs-netns down` remove it again.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use std::net::Ipv4Addr;

use crate::binaries::binary;
use crate::process::ChildProcess;
use crate::topology::{
    bridge_port_name, make_host, remove_host, run, server_args, Core, Topology, TopologyError,
    BRIDGE, FIRST_SERVER_OCTET, MAX_SERVERS,
};
use crate::vrrp;

/// What `up` made: namespaces, processes, and whether it made the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persisted {
    pub netns: Vec<String>,
    pub processes: Vec<(String, u32)>,
    pub bridge: bool,
    pub log_dir: PathBuf,
    /// The deployment key's file the processes were given.
    pub key_file: PathBuf,
}

/// Builds the topology with its core in this namespace and starts the
/// registry and `servers` servers and `lbs` LB nodes' namespaces, detached,
/// all given the key in `key_file` (made, mode 0600, if it does not exist).
pub fn up(
    prefix: &str,
    servers: usize,
    lbs: usize,
    run_dir: &Path,
    key_file: &Path,
) -> Result<Persisted, TopologyError> {
    let log_dir = run_dir.join("logs");
    if !key_file.exists() {
        if let Some(dir) = key_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        ipcs_common::registry_auth::Key::generate().write_new(key_file)?;
    }
    let mut topology = Topology::builder()
        .key_file(key_file)
        .core(Core::Root)
        .prefix(prefix)
        .servers(servers)
        .log_dir(&log_dir)
        .detached(true)
        .build()?;
    for _ in 0..lbs {
        topology.add_lb_node()?;
    }
    topology.start_registry(&[])?;
    for slot in topology.server_slots() {
        topology.start_server(slot, &[])?;
    }
    let netns = std::iter::once(topology.registry().netns.clone())
        .chain(
            topology
                .server_slots()
                .iter()
                .filter_map(|i| topology.server(*i).map(|h| h.netns.clone())),
        )
        .chain((1..=lbs).filter_map(|n| topology.lb_node(n).map(|h| h.netns.clone())))
        .collect();
    let processes = topology.persist();
    Ok(Persisted {
        netns,
        processes,
        bridge: true,
        log_dir,
        key_file: key_file.to_owned(),
    })
}

impl Persisted {
    pub fn path(run_dir: &Path) -> PathBuf {
        run_dir.join("state")
    }

    /// Writes the state file: one `kind value...` line per thing made.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut text = String::new();
        for ns in &self.netns {
            let _ = writeln!(text, "netns {ns}");
        }
        for (label, pid) in &self.processes {
            let _ = writeln!(text, "pid {label} {pid}");
        }
        if self.bridge {
            let _ = writeln!(text, "bridge {BRIDGE}");
        }
        let _ = writeln!(text, "logs {}", self.log_dir.display());
        let _ = writeln!(text, "key {}", self.key_file.display());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, text)
    }

    /// Reads the state file; `None` when there is none. Lines it does not
    /// understand are an error rather than silently ignored.
    pub fn load(path: &Path) -> anyhow::Result<Option<Persisted>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut state = Persisted {
            netns: Vec::new(),
            processes: Vec::new(),
            bridge: false,
            log_dir: PathBuf::new(),
            key_file: PathBuf::new(),
        };
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["netns", ns] => state.netns.push((*ns).to_owned()),
                ["pid", label, pid] => state.processes.push(((*label).to_owned(), pid.parse()?)),
                ["bridge", _] => state.bridge = true,
                ["logs", dir] => state.log_dir = PathBuf::from(dir),
                ["key", path] => state.key_file = PathBuf::from(path),
                _ => anyhow::bail!("unreadable line in {}: {line:?}", path.display()),
            }
        }
        Ok(Some(state))
    }

    /// Stops the processes (TERM, then KILL), deletes the namespaces and the
    /// bridge. Only pids that still run an IPCS binary are signalled, so a
    /// recycled pid is never hit.
    pub fn tear_down(&self) {
        let pids: Vec<u32> = self.processes.iter().map(|(_, pid)| *pid).collect();
        stop_all(&pids);
        for ns in &self.netns {
            // In the root namespace a host's bridge port bears its name.
            let _ = remove_host(None, ns, ns);
        }
        if self.bridge {
            let _ = run("ip", &["link", "del", BRIDGE]);
        }
    }

    /// Server ids in the topology, from the namespace names `<prefix>-s<id>`.
    pub fn server_ids(&self, prefix: &str) -> Vec<u8> {
        let head = format!("{prefix}-s");
        let mut ids: Vec<u8> = self
            .netns
            .iter()
            .filter_map(|ns| ns.strip_prefix(&head)?.parse().ok())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// LB nodes in the topology, from the namespace names `<prefix>-lb<n>`.
    pub fn lb_nodes(&self, prefix: &str) -> Vec<usize> {
        let head = format!("{prefix}-lb");
        let mut nodes: Vec<usize> = self
            .netns
            .iter()
            .filter_map(|ns| ns.strip_prefix(&head)?.parse().ok())
            .collect();
        nodes.sort_unstable();
        nodes
    }

    /// The LB node whose `eth0` holds the VIP now, if any.
    pub fn vip_holder(&self, prefix: &str) -> Option<usize> {
        self.lb_nodes(prefix).into_iter().find(|n| {
            Command::new("ip")
                .args([
                    "-n",
                    &format!("{prefix}-lb{n}"),
                    "-4",
                    "-o",
                    "addr",
                    "show",
                    "dev",
                    "eth0",
                ])
                .output()
                .is_ok_and(|o| {
                    String::from_utf8_lossy(&o.stdout).contains(&format!(" {}/32 ", vrrp::VIP))
                })
        })
    }

    /// Adds or removes servers until `n` run: new ones take the lowest free
    /// ids from 11 and start detached, pointed at the registry; removed ones
    /// (highest ids first) are stopped and their hosts deleted. The other
    /// servers, the registry and the bridge are not touched, so a load
    /// balancer on the bridge keeps serving throughout.
    pub fn scale(&mut self, prefix: &str, n: usize) -> Result<(), TopologyError> {
        if n > MAX_SERVERS {
            return Err(TopologyError::TooManyServers);
        }
        let mut ids = self.server_ids(prefix);
        while ids.len() > n {
            let id = ids.pop().expect("more ids than wanted");
            let label = format!("server{id}");
            let pids: Vec<u32> = self
                .processes
                .iter()
                .filter(|(l, _)| *l == label)
                .map(|(_, p)| *p)
                .collect();
            stop_all(&pids);
            self.processes.retain(|(l, _)| *l != label);
            let ns = format!("{prefix}-s{id}");
            remove_host(
                None,
                &ns,
                &bridge_port_name(prefix, None, &format!("s{id}")),
            )?;
            self.netns.retain(|x| *x != ns);
        }
        // "N servers" means N running: a server whose process died (killed,
        // crashed) is started again in its existing namespace.
        for id in ids.clone() {
            let label = format!("server{id}");
            let alive = self
                .processes
                .iter()
                .any(|(l, pid)| *l == label && is_ipcs(*pid));
            if !alive {
                self.processes.retain(|(l, _)| *l != label);
                let pid = self.start_server(&format!("{prefix}-s{id}"), id)?;
                self.processes.push((label, pid));
            }
        }
        let mut candidate = FIRST_SERVER_OCTET;
        while ids.len() < n {
            while ids.contains(&candidate) {
                candidate += 1;
            }
            let id = candidate;
            let host = make_host(
                prefix,
                None,
                &format!("s{id}"),
                Ipv4Addr::new(172, 16, 238, id),
            )?;
            self.netns.push(host.netns.clone());
            let pid = self.start_server(&host.netns, id)?;
            self.processes.push((format!("server{id}"), pid));
            ids.push(id);
        }
        Ok(())
    }

    /// Waits up to `limit` until every process has become an IPCS binary
    /// (they start as `ip netns exec`), so a status right after reads true.
    pub fn wait_started(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline && !self.processes.iter().all(|(_, pid)| is_ipcs(*pid)) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts server `id` in namespace `netns`, detached (it outlives this
    /// command, like the ones `up` started); its pid.
    fn start_server(&self, netns: &str, id: u8) -> Result<u32, TopologyError> {
        let label = format!("server{id}");
        let log = self.log_dir.join(format!("{label}.log"));
        let child = ChildProcess::spawn(
            &label,
            Some(netns),
            &binary("ipcs-server"),
            &server_args(&self.key_file, &[]),
            log,
            true,
        )?;
        let pid = child.pid();
        std::mem::forget(child);
        Ok(pid)
    }

    /// The topology for scripts (`ipcs-netns status --json`): each process
    /// with its role, server id, pid and whether it still runs, and the
    /// counts scripts ask about most, so none has to read [`Self::describe`].
    pub fn to_json(&self, prefix: &str) -> serde_json::Value {
        let mut servers_running = 0;
        let mut registry_running = false;
        let processes: Vec<serde_json::Value> = self
            .processes
            .iter()
            .map(|(label, pid)| {
                let running = is_ipcs(*pid);
                // Labels are "registry" and "server<id>" (see `up`/`scale`).
                let id = label
                    .strip_prefix("server")
                    .and_then(|id| id.parse::<u8>().ok());
                let role = if id.is_some() {
                    "server"
                } else {
                    label.as_str()
                };
                match role {
                    "server" => servers_running += usize::from(running),
                    "registry" => registry_running |= running,
                    _ => {}
                }
                serde_json::json!({
                    "label": label,
                    "role": role,
                    "id": id,
                    "pid": pid,
                    "running": running,
                })
            })
            .collect();
        serde_json::json!({
            "up": true,
            "bridge": BRIDGE,
            "bridge_made": self.bridge,
            "netns": self.netns,
            "processes": processes,
            "registry_running": registry_running,
            "servers_running": servers_running,
            "log_dir": self.log_dir,
            "lb_nodes": self.lb_nodes(prefix).into_iter().map(|n| serde_json::json!({
                "node": n,
                "netns": format!("{prefix}-lb{n}"),
                "ip": vrrp::lb_node_ip(n).to_string(),
            })).collect::<Vec<_>>(),
            "vip": vrrp::VIP.to_string(),
            "vip_holder": self.vip_holder(prefix),
        })
    }

    /// A human-readable account of the topology.
    pub fn describe(&self) -> String {
        let mut text = String::from("netns topology on bridge ipcs0 (172.16.238.1/24):\n");
        for (label, pid) in &self.processes {
            let state = if is_ipcs(*pid) { "running" } else { "gone" };
            let _ = writeln!(text, "  {label:<10} pid {pid:<8} {state}");
        }
        let _ = write!(text, "  logs in {}", self.log_dir.display());
        text
    }
}

/// Whether `pid` is a live (not zombie) IPCS process.
fn is_ipcs(pid: u32) -> bool {
    // /proc/<pid>/stat: "pid (comm) state ..."; comm has no spaces for ours.
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let mut words = stat.split_whitespace().skip(1);
    let comm = words.next().unwrap_or("");
    let state = words.next().unwrap_or("Z");
    comm.starts_with("(ipcs-") && state != "Z"
}

/// Stops those of `pids` that still run an IPCS binary: CONT, TERM, and
/// KILL after 3 s.
fn stop_all(pids: &[u32]) {
    let ours: Vec<u32> = pids.iter().copied().filter(|pid| is_ipcs(*pid)).collect();
    signal_all(&ours, "CONT");
    signal_all(&ours, "TERM");
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && ours.iter().any(|pid| is_ipcs(*pid)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    signal_all(
        &ours
            .iter()
            .copied()
            .filter(|pid| is_ipcs(*pid))
            .collect::<Vec<_>>(),
        "KILL",
    );
}

fn signal_all(pids: &[u32], signal: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(u32::to_string))
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_names_roles_ids_and_counts() {
        // No process has pid 4294967295, so both read as gone.
        let up = Persisted {
            netns: vec!["ipcs-reg".into(), "ipcs-s11".into(), "ipcs-lb2".into()],
            processes: vec![("registry".into(), u32::MAX), ("server11".into(), u32::MAX)],
            bridge: true,
            log_dir: PathBuf::from("/run/ipcs/netns/logs"),
            key_file: PathBuf::from("/run/ipcs/key"),
        };
        let json = up.to_json("ipcs");
        assert_eq!(json["up"], true);
        assert_eq!(json["bridge"], "ipcs0");
        assert_eq!(json["servers_running"], 0);
        assert_eq!(json["registry_running"], false);
        let p = &json["processes"];
        assert_eq!(p[0]["role"], "registry");
        assert!(p[0]["id"].is_null());
        assert_eq!(p[1]["role"], "server");
        assert_eq!(p[1]["id"], 11);
        assert_eq!(p[1]["pid"], u32::MAX);
        assert_eq!(p[1]["running"], false);
        assert_eq!(json["lb_nodes"][0]["node"], 2);
        assert_eq!(json["lb_nodes"][0]["ip"], "172.16.238.202");
        assert_eq!(json["vip"], "172.16.238.200");
        assert!(json["vip_holder"].is_null());
    }
}
