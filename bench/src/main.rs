//! `ipcs-bench`: IPCS vs nginx vs the direct path, side by side in one run,
//! on the netns topology and on the Docker deployment as a user runs it.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use ipcs_bench::plot::{draw, read_hgrm};
use ipcs_bench::report::{block, markdown, write_into_markdown, Row};
use ipcs_bench::run::{run_all, BenchConfig, DockerTarget, Scenario};

#[derive(Parser)]
#[command(
    version,
    about = "Benchmark IPCS against nginx's UDP proxy and the direct path on a netns topology \
             and on the Docker deployment (run as root)"
)]
struct Cli {
    /// Rate of the fixed-rate run of every scenario, requests per second.
    #[arg(long, default_value_t = 100_000)]
    rps: u64,
    /// Length of each fixed-rate run, in seconds.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// p99 bound of a "clean" rate for --find-max, in microseconds.
    #[arg(long, default_value_t = 1000)]
    p99_max_us: u64,
    /// Rate at which --find-max starts stepping up.
    #[arg(long, default_value_t = 20_000)]
    find_max_start: u64,
    /// The highest rate --find-max may offer (loadgen's --max-rps; default:
    /// loadgen's own), to keep a short run short.
    #[arg(long, value_name = "RPS")]
    find_max_ceiling: Option<u64>,
    /// How many servers the netns topology runs.
    #[arg(long, default_value_t = 3)]
    servers: usize,
    /// loadgen's --sockets.
    #[arg(long, default_value_t = 8)]
    sockets: u32,
    /// loadgen's --threads.
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// Where the results go: BENCHMARKS.md (the table), bench-latency.svg
    /// (the plot), the .hgrm files, find-max steps and nginx configs.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
    /// Also write the table into --markdown (between its BENCH-TABLE
    /// markers) and the plot to --plot, the tracked docs; only with every
    /// scenario (no --only).
    #[arg(long)]
    update_docs: bool,
    /// With --update-docs: the Markdown file the table is written into.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    markdown: PathBuf,
    /// With --update-docs: where the latency plot (SVG) goes.
    #[arg(long, default_value = "docs/bench-latency.svg")]
    plot: PathBuf,
    /// Only these scenarios (keys A-J, comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// G: where the Docker deployment's LB listens, as the host reaches it
    /// (calc.batata's address and the LB's port: the LB tier's VIP, or
    /// IPCS_GATEWAY with one LB; deploy/bench.sh passes it). Without it (or
    /// with --docker-unavailable) G and H are reported as not run.
    #[arg(long, value_name = "ADDR")]
    docker_target: Option<SocketAddr>,
    /// H: the Docker server containers' plain-UDP endpoints (ip:port,...),
    /// which nginx on the host proxies to.
    #[arg(long, value_name = "ADDRS", value_delimiter = ',')]
    docker_upstreams: Vec<SocketAddr>,
    /// G: the pid of every LB (each node of the LB tier, or the one LB) as
    /// the host sees it (pid,...): their CPU time is added up, so the
    /// figure is the tier's wherever the VIP is during the run.
    #[arg(long, value_name = "PIDS", value_delimiter = ',')]
    docker_lb_pid: Vec<u32>,
    /// G: the admin endpoint of every LB (addr,...), for their ejections and
    /// retries during the fixed-rate run, added up as the CPU time is.
    #[arg(long, value_name = "ADDRS", value_delimiter = ',')]
    docker_admin: Vec<SocketAddr>,
    /// H: the port nginx listens on, at --docker-nginx-addr.
    #[arg(long, default_value_t = 8081)]
    docker_nginx_port: u16,
    /// H: the host address nginx listens on (IPCS_GATEWAY, the host's
    /// address on the bridge; deploy/bench.sh passes it). Default:
    /// --docker-target's address, which must then be the host's (with the
    /// LB tier it is the VIP, held by a container).
    #[arg(long, value_name = "IP")]
    docker_nginx_addr: Option<std::net::IpAddr>,
    /// Why there is no Docker deployment to measure: G and H are reported
    /// as not run for this reason.
    #[arg(long, value_name = "REASON", conflicts_with = "docker_target")]
    docker_unavailable: Option<String>,
    /// J: a program run as `PROGRAM up` before scenario J, which stands the
    /// swarm deployment up and prints `target=IP:PORT` (and optionally
    /// `lb_pid=N`) on stdout, and as `PROGRAM down` after it
    /// (deploy/bench.sh passes deploy/bench-swarm.sh). Without it J is
    /// reported as not run.
    #[arg(long, value_name = "PROGRAM")]
    swarm_hook: Option<PathBuf>,
    /// Why there is no swarm deployment to measure: J is reported as not
    /// run for this reason.
    #[arg(long, value_name = "REASON", conflicts_with = "swarm_hook")]
    swarm_unavailable: Option<String>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let docker = match (&cli.docker_target, &cli.docker_unavailable) {
        (_, Some(why)) => Err(why.clone()),
        (Some(lb), None) => {
            anyhow::ensure!(
                cli.docker_nginx_addr.is_some_and(|ip| ip != lb.ip())
                    || lb.port() != cli.docker_nginx_port,
                "--docker-nginx-port {} is the LB's port",
                cli.docker_nginx_port
            );
            Ok(DockerTarget {
                lb: *lb,
                upstreams: cli.docker_upstreams.clone(),
                lb_pids: cli.docker_lb_pid.clone(),
                admins: cli.docker_admin.clone(),
                nginx: SocketAddr::new(
                    cli.docker_nginx_addr.unwrap_or(lb.ip()),
                    cli.docker_nginx_port,
                ),
            })
        }
        (None, None) => Err("no Docker deployment given (--docker-target)".to_owned()),
    };
    let config = BenchConfig {
        servers: cli.servers,
        fixed_rps: cli.rps,
        duration: Duration::from_secs(cli.duration_s),
        p99_max: Duration::from_micros(cli.p99_max_us),
        find_max_start: cli.find_max_start,
        find_max_ceiling: cli.find_max_ceiling,
        out_dir: cli.out_dir.clone(),
        loadgen_sockets: cli.sockets,
        loadgen_threads: cli.threads,
        docker,
        swarm_hook: match (&cli.swarm_hook, &cli.swarm_unavailable) {
            (_, Some(why)) => Err(why.clone()),
            (Some(hook), None) => Ok(hook.clone()),
            (None, None) => Err("no swarm hook given (--swarm-hook)".to_owned()),
        },
    };
    let scenarios = [
        (
            "A",
            Scenario::Ipcs {
                workers: 1,
                coalesce: true,
            },
        ),
        ("B", Scenario::Nginx { workers: 1 }),
        ("C", Scenario::Direct),
        (
            "D",
            Scenario::Ipcs {
                workers: 2,
                coalesce: true,
            },
        ),
        ("E", Scenario::Nginx { workers: 2 }),
        (
            "F",
            Scenario::Ipcs {
                workers: 1,
                coalesce: false,
            },
        ),
        ("G", Scenario::DockerIpcs),
        ("H", Scenario::DockerNginx { workers: 1 }),
        ("I", Scenario::TwoHosts),
        ("J", Scenario::Swarm),
    ];
    if let Some(unknown) = cli
        .only
        .iter()
        .find(|o| !scenarios.iter().any(|(k, _)| k == o))
    {
        anyhow::bail!("--only: no scenario {unknown} (keys A-J)");
    }
    let chosen: Vec<_> = scenarios
        .iter()
        .filter(|(k, _)| cli.only.is_empty() || cli.only.iter().any(|o| o == k))
        .copied()
        .collect();
    // The tracked docs only ever get a whole run's table.
    anyhow::ensure!(
        !cli.update_docs || chosen.len() == scenarios.len(),
        "--update-docs writes the whole table into {}: run every scenario (no --only)",
        cli.markdown.display()
    );
    let rows = run_all(&config, &chosen)?;
    let table = markdown(&rows, cli.rps);
    println!("{table}");

    let results = block(&config_summary(&cli), &table);
    let out_md = cli.out_dir.join("BENCHMARKS.md");
    std::fs::write(&out_md, format!("# ipcs-bench results\n\n{results}\n"))?;
    println!("table written to {}", out_md.display());
    let out_plot = cli.out_dir.join("bench-latency.svg");
    if plot(&rows, &cli.out_dir, cli.rps, &out_plot)? {
        println!("plot: {}", out_plot.display());
    }
    if cli.update_docs {
        write_into_markdown(&cli.markdown, &results)?;
        println!("table written to {}", cli.markdown.display());
        if out_plot.is_file() {
            std::fs::copy(&out_plot, &cli.plot)?;
            println!("plot: {}", cli.plot.display());
        }
    }
    Ok(())
}

/// Draws the latency curves of the rows that have a fixed-rate run into
/// `out`; false when there is none to draw.
fn plot(rows: &[Row], dir: &Path, rps: u64, out: &Path) -> Result<bool> {
    let curves: Vec<_> = rows
        .iter()
        .filter(|r| r.fixed.is_some())
        .filter_map(|r| {
            read_hgrm(
                &dir.join(format!("{}.hgrm", r.key)),
                &format!("{}: {}", r.key, r.name),
            )
            .ok()
        })
        .collect();
    if curves.is_empty() {
        // No stale plot of an earlier run beside this run's table.
        let _ = std::fs::remove_file(out);
        return Ok(false);
    }
    draw(&curves, &format!("Latency at {rps} rps offered"), out)?;
    Ok(true)
}

fn config_summary(cli: &Cli) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut flags = format!(
        "--rps {} --duration-s {} --p99-max-us {} --sockets {} --threads {}",
        cli.rps, cli.duration_s, cli.p99_max_us, cli.sockets, cli.threads
    );
    if let Some(max) = cli.find_max_ceiling {
        flags.push_str(&format!(" --find-max-ceiling {max}"));
    }
    if !cli.only.is_empty() {
        flags.push_str(&format!(" --only {}", cli.only.join(",")));
    }
    let docker = match (&cli.docker_target, &cli.docker_unavailable) {
        (Some(lb), None) => format!(
            "; G and H: the Docker deployment, {} servers, loadgen on the host against {lb} \
             (G) and nginx at {}:{} (H)",
            cli.docker_upstreams.len(),
            cli.docker_nginx_addr.unwrap_or(lb.ip()),
            cli.docker_nginx_port
        ),
        _ => String::new(),
    };
    let swarm = if cli.swarm_hook.is_some() && cli.swarm_unavailable.is_none() {
        "; J: the swarm deployment, loadgen on the host against the node's address"
    } else {
        ""
    };
    format!(
        "Run {date} on {cores} cores, kernel {}, {} servers (netns){docker}{swarm}; command: \
         `deploy/bench.sh` (`ipcs-bench {flags}`).",
        kernel.trim(),
        cli.servers,
    )
}
