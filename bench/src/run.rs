//! Orchestrating the scenarios on one topology.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipcs_testbed::{binary, Topology};

use crate::cpu::cpu_time_of_tree;
use crate::loadgen::Loadgen;
use crate::nginx;
use crate::report::Row;

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
    pub out_dir: PathBuf,
    pub loadgen_sockets: u32,
    pub loadgen_threads: u32,
}

/// One balancer set-up to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `coalesce: false` runs the LB with `--no-reply-gso --frame-records 1`
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
        }
    }
}

/// Measures every scenario in order; a scenario that fails is reported as
/// such and the others still run.
pub fn run_all(config: &BenchConfig, scenarios: &[(&str, Scenario)]) -> anyhow::Result<Vec<Row>> {
    if scenarios.is_empty() {
        anyhow::bail!("no scenario to measure");
    }
    std::fs::create_dir_all(&config.out_dir)?;
    let mut topology = Topology::builder().servers(config.servers).build()?;
    topology.start_registry(&[])?;
    let udp = format!("0.0.0.0:{SERVER_UDP_PORT}");
    for slot in topology.server_slots() {
        topology.start_server(slot, &["--udp", &udp])?;
    }
    let loadgen = Loadgen {
        program: binary("loadgen"),
        netns: topology.core_netns().map(str::to_owned),
        sockets: config.loadgen_sockets,
        threads: config.loadgen_threads,
    };
    let mut rows = Vec::new();
    for (key, scenario) in scenarios {
        eprintln!("ipcs-bench: measuring {key}: {}", scenario.name());
        let row = match measure(&mut topology, &loadgen, config, key, *scenario) {
            Ok(row) => row,
            Err(e) => Row {
                key: (*key).to_owned(),
                name: scenario.name(),
                max_clean_rps: None,
                fixed: None,
                balancer_cpu_s: None,
                failure: Some(format!("{e:#}")),
            },
        };
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
            let mut args = vec![
                "--listen",
                BALANCER_ADDR,
                "--workers",
                &workers,
                "--admin",
                "127.0.0.1:0",
            ];
            if !coalesce {
                args.extend(["--no-reply-gso", "--frame-records", "1"]);
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
    };
    wait_until_answering(loadgen, target, &config.out_dir)?;
    // Warm up at the search's start rate before measuring anything: the
    // first seconds of load after a start are slower (one run's first
    // 20,000 rps step missed p99 twice right after start-up, and held
    // 15 s later), and a failed start caps the search below it.
    let warm = config.out_dir.join("warm-up.hgrm");
    let _ = loadgen.fixed(target, config.find_max_start, WARM_UP, &warm)?;
    let steps = config.out_dir.join(format!("{key}-find-max.json"));
    let max_clean_rps = loadgen.find_max(target, config.find_max_start, config.p99_max, &steps)?;
    let pid = process.map(|i| topology.process(i).pid());
    let cpu_before = pid.map(cpu_time_of_tree);
    let hgrm = config.out_dir.join(format!("{key}.hgrm"));
    let fixed = loadgen.fixed(target, config.fixed_rps, config.duration, &hgrm)?;
    let balancer_cpu_s = pid
        .zip(cpu_before)
        .map(|(p, before)| (cpu_time_of_tree(p) - before).as_secs_f64());
    if let Some(i) = process {
        topology.process_mut(i).stop(Duration::from_secs(3));
    }
    Ok(Row {
        key: key.to_owned(),
        name: scenario.name(),
        max_clean_rps: Some(max_clean_rps),
        fixed: Some(fixed),
        balancer_cpu_s,
        failure: None,
    })
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
