//! Orchestrating the scenarios on one topology.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipcs_testbed::{binary, ChildProcess, Topology};

use crate::cpu::cpu_time_of_tree;
use crate::loadgen::Loadgen;
use crate::nginx;
use crate::report::{LbEvents, Row};

/// The port every server's plain-UDP mode listens on.
pub const SERVER_UDP_PORT: u16 = 9000;
/// Where the balancer under test listens, inside the core namespace.
pub const BALANCER_ADDR: &str = "127.0.0.1:8080";

/// What to measure and where to put the results.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub servers: usize,
    pub fixed_rps: u64,
    pub duration: Duration,
    pub p99_max: Duration,
    pub find_max_start: u64,
    /// The highest rate `--find-max` may offer (loadgen's `--max-rps`).
    pub find_max_ceiling: Option<u64>,
    pub out_dir: PathBuf,
    pub loadgen_sockets: u32,
    pub loadgen_threads: u32,
    /// The Docker deployment scenarios G and H measure, or why there is
    /// none (they are then reported as not run).
    pub docker: Result<DockerTarget, String>,
    /// The program that brings the swarm deployment up and down for
    /// scenario J (see [`SwarmTarget::from_hook_output`]), or why there is
    /// none.
    pub swarm_hook: Result<PathBuf, String>,
}

/// The swarm deployment as its hook reports it: `target=IP:PORT` (where the
/// LB service's published port is reached from the host) and, optionally,
/// `lb_pid=N` (the LB container's process as the host sees it), one per
/// line; other lines are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmTarget {
    pub lb: SocketAddr,
    pub lb_pid: Option<u32>,
}

impl SwarmTarget {
    pub fn from_hook_output(text: &str) -> anyhow::Result<SwarmTarget> {
        let mut lb = None;
        let mut lb_pid = None;
        for line in text.lines() {
            match line.trim().split_once('=') {
                Some(("target", v)) => {
                    lb = Some(v.parse().map_err(|e| {
                        anyhow::anyhow!("the swarm hook's target {v:?} is not IP:PORT: {e}")
                    })?)
                }
                Some(("lb_pid", v)) => {
                    lb_pid = Some(v.parse().map_err(|e| {
                        anyhow::anyhow!("the swarm hook's lb_pid {v:?} is not a pid: {e}")
                    })?)
                }
                _ => {}
            }
        }
        let lb = lb.ok_or_else(|| anyhow::anyhow!("the swarm hook printed no target=IP:PORT"))?;
        Ok(SwarmTarget { lb, lb_pid })
    }
}

/// The Docker deployment as `./bootstrap.sh` made it, as seen from the
/// host's namespace, where loadgen runs for scenarios G and H.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerTarget {
    /// Where the deployment's LB listens, as the host reaches it
    /// (calc.batata's address: the LB tier's VIP, or the host's address on
    /// the bridge with one LB; and the LB's port).
    pub lb: SocketAddr,
    /// The server containers' plain-UDP endpoints, for nginx (H).
    pub upstreams: Vec<SocketAddr>,
    /// Every LB's process, as the host sees it, for their CPU time.
    pub lb_pids: Vec<u32>,
    /// Every LB's admin endpoint, for their ejection and retry counters.
    pub admins: Vec<SocketAddr>,
    /// Where nginx (H) listens: an address of the host (on the bridge).
    pub nginx: SocketAddr,
}

/// One balancer set-up to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `coalesce: false` runs the LB with `--no-reply-gso --no-request-gro
    /// --frame-records 1`
    /// (one packet per reply and per request), to show what coalescing is
    /// worth.
    Ipcs {
        workers: u32,
        coalesce: bool,
    },
    Nginx {
        workers: u32,
    },
    Direct,
    /// The Docker deployment's LB, as a user reaches it from the host.
    DockerIpcs,
    /// nginx on the host in front of the Docker deployment's servers.
    DockerNginx {
        workers: u32,
    },
    /// IPCS (1 worker) on the two-host netns topology, every server on the
    /// far host: each request and reply crosses the VXLAN tunnel.
    TwoHosts,
    /// IPCS as `./bootstrap.sh --swarm` deploys it (the LB a service on the
    /// overlay, its port published in host mode), from the host.
    Swarm,
}

impl Scenario {
    pub fn name(self) -> String {
        match self {
            Scenario::Ipcs { workers, coalesce } => format!(
                "IPCS ipcs-lb, {workers} worker(s), raw frames{}",
                if coalesce {
                    ""
                } else {
                    ", one packet per request and reply"
                }
            ),
            Scenario::Nginx { workers } => format!("nginx UDP proxy, {workers} worker(s)"),
            Scenario::Direct => "direct to one server (UDP), no balancer".to_owned(),
            Scenario::DockerIpcs => {
                "IPCS in Docker as ./bootstrap.sh deploys it (two LB containers sharing the VIP), from the host"
                    .to_owned()
            }
            Scenario::DockerNginx { workers } => format!(
                "nginx UDP proxy, {workers} worker(s), on the host, in front of the Docker servers' UDP mode"
            ),
            Scenario::TwoHosts => {
                "IPCS ipcs-lb, 1 worker, every server on a second host behind a VXLAN tunnel (netns, MTU 1450)"
                    .to_owned()
            }
            Scenario::Swarm => {
                "IPCS on Docker Swarm as ./bootstrap.sh --swarm deploys it (LB service on the overlay, host-mode port), from the host"
                    .to_owned()
            }
        }
    }

    /// Whether the scenario runs on the shared netns topology (A-F).
    pub fn on_topology(self) -> bool {
        matches!(
            self,
            Scenario::Ipcs { .. } | Scenario::Nginx { .. } | Scenario::Direct
        )
    }

    /// Whether the scenario measures the Docker deployment (from the host)
    /// rather than the netns topology.
    pub fn is_docker(self) -> bool {
        matches!(self, Scenario::DockerIpcs | Scenario::DockerNginx { .. })
    }
}

/// Measures every scenario in order; a scenario that fails is reported as
/// such and the others still run.
pub fn run_all(config: &BenchConfig, scenarios: &[(&str, Scenario)]) -> anyhow::Result<Vec<Row>> {
    if scenarios.is_empty() {
        anyhow::bail!("no scenario to measure");
    }
    std::fs::create_dir_all(&config.out_dir)?;
    // The topology only when a netns scenario is chosen: G and H alone need
    // none.
    let mut topology = if scenarios.iter().any(|(_, s)| s.on_topology()) {
        let mut topology = Topology::builder().servers(config.servers).build()?;
        topology.start_registry(&[])?;
        let udp = format!("0.0.0.0:{SERVER_UDP_PORT}");
        for slot in topology.server_slots() {
            topology.start_server(slot, &["--udp", &udp])?;
        }
        Some(topology)
    } else {
        None
    };
    let in_core = Loadgen {
        program: binary("loadgen"),
        netns: topology
            .as_ref()
            .and_then(|t| t.core_netns().map(str::to_owned)),
        sockets: config.loadgen_sockets,
        threads: config.loadgen_threads,
    };
    // The user's place: the host's namespace.
    let on_host = Loadgen {
        netns: None,
        ..in_core.clone()
    };
    let mut rows = Vec::new();
    for (key, scenario) in scenarios {
        let scenario = *scenario;
        let result = match (&mut topology, scenario, &config.swarm_hook) {
            (_, Scenario::TwoHosts, _) => {
                eprintln!("ipcs-bench: measuring {key}: {}", scenario.name());
                measure_two_hosts(&in_core, config, key)
            }
            (_, Scenario::Swarm, Err(why)) => {
                eprintln!("ipcs-bench: {key}: not run: {why}");
                rows.push(Row::not_run(key, scenario.name(), why));
                continue;
            }
            (_, Scenario::Swarm, Ok(hook)) => {
                eprintln!("ipcs-bench: measuring {key}: {}", scenario.name());
                measure_swarm(hook, &on_host, config, key)
            }
            _ => match (&mut topology, scenario.is_docker(), &config.docker) {
                (_, true, Err(why)) => {
                    eprintln!("ipcs-bench: {key}: not run: {why}");
                    rows.push(Row::not_run(key, scenario.name(), why));
                    continue;
                }
                (_, true, Ok(docker)) => {
                    eprintln!("ipcs-bench: measuring {key}: {}", scenario.name());
                    measure_docker(docker, &on_host, config, key, scenario)
                }
                (Some(topology), false, _) => {
                    eprintln!("ipcs-bench: measuring {key}: {}", scenario.name());
                    measure(topology, &in_core, config, key, scenario)
                }
                (None, false, _) => unreachable!("the topology is built for netns scenarios"),
            },
        };
        let row = result.unwrap_or_else(|e| Row {
            key: (*key).to_owned(),
            name: scenario.name(),
            max_clean_rps: None,
            fixed: None,
            balancer_cpu_s: None,
            failure: Some(format!("{e:#}")),
            not_run: None,
            lb_events: None,
        });
        eprintln!("ipcs-bench: {key}: {row:?}");
        rows.push(row);
    }
    Ok(rows)
}

fn measure(
    topology: &mut Topology,
    loadgen: &Loadgen,
    config: &BenchConfig,
    key: &str,
    scenario: Scenario,
) -> anyhow::Result<Row> {
    let balancer: SocketAddr = BALANCER_ADDR.parse()?;
    let (target, process) = match scenario {
        Scenario::Ipcs { workers, coalesce } => {
            let workers = workers.to_string();
            let mut args = LB_ARGS.to_vec();
            args.extend(["--workers", &workers]);
            if !coalesce {
                args.extend(["--no-reply-gso", "--no-request-gro", "--frame-records", "1"]);
            }
            let idx = topology.start_lb(&args)?;
            (balancer, Some(idx))
        }
        Scenario::Nginx { workers } => {
            let program = nginx::nginx_binary().ok_or_else(|| {
                anyhow::anyhow!("nginx is not installed (deploy/bench.sh installs it)")
            })?;
            let dir = config.out_dir.join(format!("nginx-{key}"));
            std::fs::create_dir_all(&dir)?;
            // nginx resolves relative paths in its config against its prefix.
            let dir = std::fs::canonicalize(&dir)?;
            let upstreams: Vec<SocketAddr> = topology
                .server_slots()
                .iter()
                .filter_map(|i| topology.server(*i))
                .map(|h| SocketAddr::new(h.ip.into(), SERVER_UDP_PORT))
                .collect();
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, nginx::config(&dir, balancer, &upstreams, workers))?;
            let args = vec![
                "-c".to_owned(),
                conf.display().to_string(),
                "-p".to_owned(),
                dir.display().to_string(),
            ];
            let idx = topology.spawn(&format!("nginx-{key}"), None, &program, &args)?;
            (balancer, Some(idx))
        }
        Scenario::Direct => {
            let first = topology
                .server(topology.server_slots()[0])
                .expect("a server")
                .ip;
            (SocketAddr::new(first.into(), SERVER_UDP_PORT), None)
        }
        Scenario::DockerIpcs
        | Scenario::DockerNginx { .. }
        | Scenario::TwoHosts
        | Scenario::Swarm => {
            anyhow::bail!("{key} does not run on the shared netns topology")
        }
    };
    let pid = process.map(|i| topology.process(i).pid());
    let row = measure_target(loadgen, config, key, scenario, target, pid.as_slice(), &[]);
    if let Some(i) = process {
        topology.process_mut(i).stop(Duration::from_secs(3));
    }
    row
}

/// Scenarios G and H: loadgen in the host's namespace against the Docker
/// deployment's LB, or against nginx started here in front of its servers.
fn measure_docker(
    docker: &DockerTarget,
    loadgen: &Loadgen,
    config: &BenchConfig,
    key: &str,
    scenario: Scenario,
) -> anyhow::Result<Row> {
    match scenario {
        Scenario::DockerIpcs => measure_target(
            loadgen,
            config,
            key,
            scenario,
            docker.lb,
            &docker.lb_pids,
            &docker.admins,
        ),
        Scenario::DockerNginx { workers } => {
            anyhow::ensure!(
                !docker.upstreams.is_empty(),
                "no server containers to put nginx in front of (--docker-upstreams)"
            );
            let program = nginx::nginx_binary().ok_or_else(|| {
                anyhow::anyhow!("nginx is not installed (deploy/bench.sh installs it)")
            })?;
            let listen = docker.nginx;
            let dir = config.out_dir.join(format!("nginx-{key}"));
            std::fs::create_dir_all(&dir)?;
            let dir = std::fs::canonicalize(&dir)?;
            let conf = dir.join("nginx.conf");
            std::fs::write(
                &conf,
                nginx::config(&dir, listen, &docker.upstreams, workers),
            )?;
            let args = vec![
                "-c".to_owned(),
                conf.display().to_string(),
                "-p".to_owned(),
                dir.display().to_string(),
            ];
            let mut process = ChildProcess::spawn(
                &format!("nginx-{key}"),
                None,
                &program,
                &args,
                dir.join("stdout.log"),
                false,
            )?;
            let row = measure_target(
                loadgen,
                config,
                key,
                scenario,
                listen,
                &[process.pid()],
                &[],
            );
            process.stop(Duration::from_secs(3));
            row
        }
        _ => anyhow::bail!("{key} is not a Docker scenario"),
    }
}

/// Scenario I: a two-host topology of its own, every server on the far
/// host, the registry and the LB on the near one; loadgen in its core.
/// The arguments every netns scenario's LB starts with. The LB leaves its
/// priority alone by default; the published figures (docs/BENCHMARKS.md)
/// were measured with its workers at nice -10 on cores shared with the
/// servers and loadgen.
const LB_ARGS: &[&str] = &[
    "--listen",
    BALANCER_ADDR,
    "--admin",
    "127.0.0.1:0",
    "--nice",
    "-10",
];

fn measure_two_hosts(loadgen: &Loadgen, config: &BenchConfig, key: &str) -> anyhow::Result<Row> {
    let mut topology = Topology::builder().far_servers(config.servers).build()?;
    topology.start_registry(&[])?;
    for slot in topology.server_slots() {
        topology.start_server(slot, &[])?;
    }
    // As scenario A's LB, so that I/A compares the tunnel and nothing else.
    let lb = topology.start_lb(LB_ARGS)?;
    let loadgen = Loadgen {
        netns: topology.core_netns().map(str::to_owned),
        ..loadgen.clone()
    };
    let pid = topology.process(lb).pid();
    let target = BALANCER_ADDR.parse()?;
    measure_target(
        &loadgen,
        config,
        key,
        Scenario::TwoHosts,
        target,
        &[pid],
        &[],
    )
}

/// Scenario J: `hook up` stands the swarm deployment up and says where it
/// listens; `hook down` takes it away again, whatever the measurement did.
fn measure_swarm(
    hook: &Path,
    loadgen: &Loadgen,
    config: &BenchConfig,
    key: &str,
) -> anyhow::Result<Row> {
    let run = |step: &str| -> anyhow::Result<String> {
        let out = std::process::Command::new(hook)
            .arg(step)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| anyhow::anyhow!("running {} {step}: {e}", hook.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "{} {step} failed ({})",
            hook.display(),
            out.status
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let row = run("up")
        .and_then(|text| SwarmTarget::from_hook_output(&text))
        .and_then(|target| {
            measure_target(
                loadgen,
                config,
                key,
                Scenario::Swarm,
                target.lb,
                target.lb_pid.as_slice(),
                &[],
            )
        });
    if let Err(e) = run("down") {
        eprintln!("ipcs-bench: {key}: {e}");
    }
    row
}

/// Warm-up, find-max and the fixed-rate run against `target`, with the CPU
/// time of `pids` (and their children) and the LB counters from `admins`
/// over the fixed-rate run, each added up over the LBs (none given: none
/// shown).
fn measure_target(
    loadgen: &Loadgen,
    config: &BenchConfig,
    key: &str,
    scenario: Scenario,
    target: SocketAddr,
    pids: &[u32],
    admins: &[SocketAddr],
) -> anyhow::Result<Row> {
    wait_until_answering(loadgen, target, &config.out_dir)?;
    // Warm up at the search's start rate before measuring anything: the
    // first seconds of load after a start are slower (one run's first
    // 20,000 rps step missed p99 twice right after start-up, and held
    // 15 s later), and a failed start caps the search below it.
    let warm = config.out_dir.join("warm-up.hgrm");
    let _ = loadgen.fixed(target, config.find_max_start, WARM_UP, &warm)?;
    let steps = config.out_dir.join(format!("{key}-find-max.json"));
    let max_clean_rps = loadgen.find_max(
        target,
        config.find_max_start,
        config.find_max_ceiling,
        config.p99_max,
        &steps,
    )?;
    let cpu = || -> Option<Duration> {
        (!pids.is_empty()).then(|| pids.iter().map(|&p| cpu_time_of_tree(p)).sum())
    };
    let cpu_before = cpu();
    let events_before = tier_events(admins);
    let hgrm = config.out_dir.join(format!("{key}.hgrm"));
    let fixed = loadgen.fixed(target, config.fixed_rps, config.duration, &hgrm)?;
    let balancer_cpu_s = cpu_before
        .zip(cpu())
        .map(|(before, after)| after.saturating_sub(before).as_secs_f64());
    let lb_events = events_before
        .zip(tier_events(admins))
        .map(|(before, after)| before.until(after));
    Ok(Row {
        key: key.to_owned(),
        name: scenario.name(),
        max_clean_rps: Some(max_clean_rps),
        fixed: Some(fixed),
        balancer_cpu_s,
        failure: None,
        not_run: None,
        lb_events,
    })
}

/// The ejection and retry counters of every LB in `admins`, added up, or
/// `None` when there is none or one cannot be read (the row then shows
/// none rather than a part of the tier).
fn tier_events(admins: &[SocketAddr]) -> Option<LbEvents> {
    if admins.is_empty() {
        return None;
    }
    admins
        .iter()
        .try_fold(LbEvents::default(), |sum, &a| Some(sum.plus(lb_events(a)?)))
}

/// The LB's ejection and retry counters from its admin endpoint, or `None`
/// if it cannot be read.
fn lb_events(admin: SocketAddr) -> Option<LbEvents> {
    let page = ipcs_common::admin_http::get(admin, "/metrics", Duration::from_secs(2)).and_then(
        |(status, body)| match status {
            200 => Ok(body),
            _ => Err(std::io::Error::other(format!("status {status}"))),
        },
    );
    match page {
        Ok(body) => LbEvents::from_metrics(&body),
        Err(e) => {
            eprintln!("ipcs-bench: could not read http://{admin}/metrics: {e}");
            None
        }
    }
}

/// Polls with a tiny fixed-rate run until every request is answered (the
/// balancer has loaded its server list), for at most 15 s.
/// Load before each scenario's search, results discarded.
const WARM_UP: Duration = Duration::from_secs(3);

fn wait_until_answering(loadgen: &Loadgen, target: SocketAddr, dir: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let probe = dir.join("probe.hgrm");
    loop {
        if let Ok(m) = loadgen.fixed(target, 200, Duration::from_secs(1), &probe) {
            if m.sent > 0 && m.answered == m.sent {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("{target} did not answer every probe within 15 s");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Serves one HTTP response on a loopback port, as the LB's admin
    /// endpoint does.
    fn serve_once(response: &'static str) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // The whole request head first: answering and closing before
            // the client has written it breaks its write (EPIPE).
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(response.as_bytes());
        });
        addr
    }

    #[test]
    fn lb_counters_come_from_the_admin_endpoint() {
        let addr = serve_once(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n\
             ipcs_lb_retries_total 4\nipcs_lb_ejections_total 0\n",
        );
        assert_eq!(
            lb_events(addr),
            Some(LbEvents {
                ejections: 0,
                retries: 4
            })
        );
        let addr = serve_once("HTTP/1.0 404 Not Found\r\n\r\nipcs_lb_retries_total 4\n");
        assert_eq!(lb_events(addr), None);
    }

    #[test]
    fn tier_counters_add_up_every_node_or_show_none() {
        let page = |r: u32, e: u32| -> &'static str {
            Box::leak(
                format!(
                    "HTTP/1.0 200 OK\r\n\r\nipcs_lb_retries_total {r}\nipcs_lb_ejections_total {e}\n"
                )
                .into_boxed_str(),
            )
        };
        // The active node and the standby: the tier's figure is the sum.
        let nodes = [serve_once(page(7, 1)), serve_once(page(2, 0))];
        assert_eq!(
            tier_events(&nodes),
            Some(LbEvents {
                ejections: 1,
                retries: 9
            })
        );
        // One node unreadable: no figure rather than half of one.
        let nodes = [
            serve_once(page(7, 1)),
            serve_once("HTTP/1.0 500 Oops\r\n\r\n"),
        ];
        assert_eq!(tier_events(&nodes), None);
        assert_eq!(tier_events(&[]), None);
    }

    #[test]
    fn swarm_hook_output_names_the_target_and_the_lb() {
        let t =
            SwarmTarget::from_hook_output("noise\ntarget=192.0.2.2:8080\nlb_pid=4242\n").unwrap();
        assert_eq!(t.lb, "192.0.2.2:8080".parse().unwrap());
        assert_eq!(t.lb_pid, Some(4242));
        let t = SwarmTarget::from_hook_output("target=10.0.0.1:8080").unwrap();
        assert_eq!(t.lb_pid, None);
        assert!(SwarmTarget::from_hook_output("lb_pid=1\n").is_err());
        assert!(SwarmTarget::from_hook_output("target=somewhere\n").is_err());
        assert!(SwarmTarget::from_hook_output("target=10.0.0.1:8080\nlb_pid=x\n").is_err());
        assert!(!Scenario::Swarm.on_topology() && !Scenario::TwoHosts.on_topology());
    }

    #[test]
    fn docker_scenarios_are_told_apart() {
        assert!(Scenario::DockerIpcs.is_docker());
        assert!(Scenario::DockerNginx { workers: 1 }.is_docker());
        assert!(!Scenario::Direct.is_docker());
        assert!(Scenario::DockerNginx { workers: 1 }
            .name()
            .contains("1 worker(s)"));
    }
}
